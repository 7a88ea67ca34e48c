"""Validation of the estimators' inputs: 2-D tabular or 3-D sequences, converted to float32,
or :class:`~sksnn.spikes.SpikeTrains`, kept as events."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.utils import check_array
from sklearn.utils.validation import _check_y, check_consistent_length, validate_data

from .spikes import SpikeTrains

__all__ = ["InputMixin", "as_tensor", "dense_samples", "ndim"]


class InputMixin:
    """``_validate_X``: scikit-learn's checks for 2-D ``X``, the same by hand for 3-D ``X``."""

    def _validate_X(self, X, *, reset: bool, y="no_validation"):
        """Validate X (2-D tabular or 3-D sequences), optionally with y; returns float32 X,
        or X itself when it is a :class:`~sksnn.spikes.SpikeTrains`."""
        if isinstance(X, SpikeTrains):
            return self._validate_spike_trains(X, reset=reset, y=y)
        n_dims = ndim(X)
        if n_dims > 3:
            raise ValueError(
                "X must be 2-D (n_samples, n_features) or 3-D (n_samples, n_steps, n_inputs); "
                f"got an array with dim {n_dims}."
            )
        is_3d = n_dims == 3
        check = {
            "dtype": [np.float64, np.float32],
            "ensure_min_samples": 1,
            "allow_nd": is_3d,
            "ensure_all_finite": True,
        }
        multi_output = not is_classifier(self)
        if is_3d:
            # validate_data would take the time axis for the features; check the array here.
            X = check_array(X, **check)
            if X.shape[1] < 1 or X.shape[2] < 1:
                raise ValueError(f"3-D X needs at least one step and one input, got {X.shape}.")
            y = self._check_sequences(X, reset=reset, y=y)
        elif is_no_validation(y):
            X = validate_data(self, X, reset=reset, **check)
        else:
            X, y = validate_data(
                self,
                X,
                y,
                reset=reset,
                multi_output=multi_output,
                y_numeric=multi_output,
                **check,
            )
        self._check_ndim(X, reset)
        with np.errstate(over="ignore"):  # overflow is detected just below
            X32 = X.astype(np.float32, copy=False)
        if not np.isfinite(X32).all():
            raise ValueError("X contains values too large in magnitude for float32.")
        return X32 if is_no_validation(y) else (X32, y)

    def _validate_spike_trains(self, X: SpikeTrains, *, reset: bool, y):
        """The checks of 3-D X for spike trains; they stay events."""
        self._check_ndim(X, reset)
        if len(X) < 1:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required."
            )
        y = self._check_sequences(X, reset=reset, y=y)
        return X if is_no_validation(y) else (X, y)

    def _check_sequences(self, X, *, reset: bool, y):
        """y and the number of inputs of 3-D X; returns the checked y."""
        if y is None:
            raise ValueError(
                f"This {type(self).__name__} estimator requires y to be passed, but the "
                "target y is None."
            )
        if not is_no_validation(y):
            y = _check_y(
                y, multi_output=not is_classifier(self), y_numeric=not is_classifier(self)
            )
            check_consistent_length(X, y)
        if reset:
            self.n_features_in_ = X.shape[2]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif X.shape[2] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[2]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return y

    def _check_ndim(self, X, reset: bool) -> None:
        """The number of dimensions is fixed by the first fit (tabular or sequences)."""
        if reset:
            self._input_ndim = X.ndim
        elif X.ndim != self._input_ndim:
            kind = "SpikeTrains (3-D)" if isinstance(X, SpikeTrains) else f"{X.ndim}-D"
            raise ValueError(
                f"X is {kind} but {type(self).__name__} was fitted on {self._input_ndim}-D input."
            )


def dense_samples(X: np.ndarray | SpikeTrains, key) -> np.ndarray:
    """``X[key]`` as a dense array, for a validated X (array or spike trains)."""
    return X.dense_samples(key) if isinstance(X, SpikeTrains) else X[key]


def ndim(X) -> int:
    """Number of dimensions of array-like X without converting DataFrames or sparse matrices."""
    shape = getattr(X, "shape", None)
    if shape is not None:
        return len(shape)
    try:
        return np.asarray(X).ndim
    except (ValueError, TypeError):
        return 2  # ragged or odd input: let the 2-D validation report it


def as_tensor(X: np.ndarray) -> torch.Tensor:
    """A tensor sharing X's memory; X may be read-only (a joblib memmap): it is never written."""
    X = np.ascontiguousarray(X)
    if X.flags.writeable:
        return torch.from_numpy(X)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(X)


def is_no_validation(y) -> bool:
    return isinstance(y, str) and y == "no_validation"
