"""Per-epoch progress reporting for ``verbose`` fits: a tqdm bar when available, else text."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["EpochReporter", "load_tqdm"]


def load_tqdm():
    """Return ``tqdm.tqdm`` when the optional ``progress`` extra is installed, else None."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class EpochReporter:
    """Reports one epoch: a progress bar over its batches that ends as one summary line.

    Without tqdm, only the summary line is printed (to stdout, like scikit-learn's MLP).

    Parameters
    ----------
    epoch : int
        1-based epoch number.
    n_batches : int
    """

    def __init__(self, epoch: int, n_batches: int) -> None:
        self.epoch = epoch
        tqdm = load_tqdm()
        self._bar = (
            None
            if tqdm is None
            else tqdm(
                total=n_batches,
                desc=f"Epoch {epoch}",
                unit="batch",
                leave=True,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        )

    def batch(self, loss: float) -> None:
        """Advance by one batch with its loss."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)
            self._bar.update(1)

    def close(
        self,
        loss: float,
        firing_rates: np.ndarray,
        seconds: float,
        validation_score: float | None = None,
    ) -> None:
        """Finish the epoch with its summary: loss, validation score, firing rates, time."""
        val = "" if validation_score is None else f", validation score = {validation_score:.4f}"
        rates = ", ".join(f"{r:.4f}" for r in firing_rates)
        if self._bar is not None:
            val_short = "" if validation_score is None else f", val={validation_score:.4f}"
            self._bar.set_postfix_str(f"loss={loss:.4f}{val_short}, rate=[{rates}]")
            self._bar.close()
        else:
            print(
                f"Epoch {self.epoch}, loss = {loss:.6f}{val}, firing rate = [{rates}], "
                f"{seconds:.2f} s",
                flush=True,
            )
