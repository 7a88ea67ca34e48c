"""Warnings and errors raised by sksnn."""

__all__ = ["InconsistentVersionWarning", "TrainingDivergedError"]


class InconsistentVersionWarning(UserWarning):
    """A pickled sksnn estimator is loaded by a different sksnn version than saved it."""


class TrainingDivergedError(FloatingPointError):
    """The training loss or the weights became NaN or infinite.

    The estimator keeps the weights of the last completed epoch, so it can still predict;
    a smaller ``learning_rate_init`` or standardised inputs usually avoid the divergence.
    """
