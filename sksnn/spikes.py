"""Binary spike data stored as events: :class:`SpikeTrains`, and :class:`SpikeTimeBinner`.

A data set of spike trains ``(n_samples, n_steps, n_units)`` is mostly zeros: the Spiking
Heidelberg Digits are about 1.5 % active at 100 steps, and the Spiking Speech Commands would
take about 21 GB as a dense float32 array for 1-2 % of that in events. A :class:`SpikeTrains`
keeps only the active entries, per sample, and hands the estimators dense batches or the event
index they train from, so the whole dense array never exists.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._sparse import SampleEvents, range_positions, sampled_rows
from .datasets import spike_bins

__all__ = ["SpikeTimeBinner", "SpikeTrains"]


class SpikeTrains:
    """Binary spike trains of shape ``(n_samples, n_steps, n_units)``, stored as events.

    Each sample keeps the sorted flat indices ``step * n_units + unit`` of its active bins; a
    bin holds at most one spike. The object is immutable (its arrays are read-only), pickles
    without a dense copy, and indexes over samples like an array, so scikit-learn's splitters,
    searches and pipelines handle it as they handle ``X``. The estimators accept it wherever
    they accept a 3-D array and give results identical to that dense array's, streaming dense
    batches or events from it.

    Build one with :meth:`from_events`, :meth:`from_dense` or :meth:`from_spike_times` (or
    :class:`SpikeTimeBinner` in a pipeline, or :func:`sksnn.datasets.load_shd` with
    ``sparse=True``).

    Attributes
    ----------
    shape : tuple of int
        ``(n_samples, n_steps, n_units)``.
    ndim : int
        Always 3.
    n_events : int
        Number of spikes (active bins).
    density : float
        Fraction of active bins.

    Examples
    --------
    >>> import numpy as np
    >>> from sksnn import SpikeTrains
    >>> st = SpikeTrains.from_events(
    ...     sample=[0, 0, 1], step=[0, 2, 1], unit=[1, 0, 1], shape=(2, 3, 2)
    ... )
    >>> st
    SpikeTrains(shape=(2, 3, 2), n_events=3)
    >>> st.to_dense()[0]
    array([[0., 1.],
           [0., 0.],
           [1., 0.]], dtype=float32)
    >>> st[np.array([1])].shape
    (1, 3, 2)
    """

    __slots__ = ("_cells", "_offsets", "_shape")
    ndim = 3

    def __init__(self, offsets: np.ndarray, cells: np.ndarray, shape: tuple[int, int, int]):
        """Wrap already-validated arrays; use the ``from_*`` constructors instead."""
        offsets = _readonly(np.asarray(offsets, dtype=np.int64))
        cells = _readonly(np.asarray(cells, dtype=_cell_dtype(shape[1] * shape[2])))
        if offsets.shape != (shape[0] + 1,) or offsets[0] != 0 or offsets[-1] != len(cells):
            raise ValueError("offsets must run from 0 to the number of events, one per sample.")
        object.__setattr__(self, "_shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_cells", cells)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_events(
        cls,
        sample: ArrayLike,
        step: ArrayLike,
        unit: ArrayLike,
        shape: tuple[int, int, int],
    ) -> SpikeTrains:
        """Spike trains from one entry per spike: its sample, step and unit.

        Parameters
        ----------
        sample, step, unit : array-like of int, shape (n_events,)
            Indices of each spike; in any order.
        shape : tuple of int
            ``(n_samples, n_steps, n_units)``; every index must lie inside it.

        Raises
        ------
        ValueError
            If the arrays differ in length, are not integers, an index lies outside ``shape``,
            or two entries name the same bin (a bin holds one spike: bin spike times with
            :meth:`from_spike_times`, where spikes sharing a bin count once).
        """
        n_samples, n_steps, n_units = _check_shape(shape)
        arrays = [
            _index_array(a, name)
            for a, name in ((sample, "sample"), (step, "step"), (unit, "unit"))
        ]
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(
                "sample, step and unit must have the same length, got "
                f"{', '.join(str(a.shape[0]) for a in arrays)}."
            )
        for a, name, n in zip(arrays, ("sample", "step", "unit"), shape, strict=True):
            if a.size and (a.min() < 0 or a.max() >= n):
                raise ValueError(
                    f"{name} indices must lie in [0, {n}) for shape {tuple(shape)}, found "
                    f"{a.min()}..{a.max()}."
                )
        sample, step, unit = arrays
        per_sample = n_steps * n_units
        if n_samples * per_sample > np.iinfo(np.int64).max:
            raise ValueError(f"shape {tuple(shape)} has more bins than int64 can index.")
        key = sample.astype(np.int64) * per_sample
        key += step.astype(np.int64) * n_units
        key += unit
        del arrays
        if key.size > 1 and not bool(np.all(key[1:] > key[:-1])):
            key.sort()
            repeated = np.flatnonzero(key[1:] == key[:-1])
            if repeated.size:
                s, rest = divmod(int(key[repeated[0]]), per_sample)
                t, u = divmod(rest, n_units)
                raise ValueError(
                    f"{repeated.size} duplicate event(s), e.g. sample {s}, step {t}, unit {u}: "
                    "a bin holds at most one spike. Drop the duplicates (np.unique) or bin "
                    "spike times with SpikeTrains.from_spike_times, which counts spikes "
                    "sharing a bin once."
                )
        offsets = np.searchsorted(key, np.arange(n_samples + 1, dtype=np.int64) * per_sample)
        np.remainder(key, per_sample, out=key)
        return cls(offsets, key, (n_samples, n_steps, n_units))

    @classmethod
    def from_dense(cls, X: ArrayLike) -> SpikeTrains:
        """Spike trains from a dense 0/1 array of shape ``(n_samples, n_steps, n_units)``.

        Raises
        ------
        ValueError
            If ``X`` is not 3-D or holds a value other than 0 and 1.
        """
        X = np.asarray(X)
        if X.ndim != 3:
            raise ValueError(f"X must be 3-D (n_samples, n_steps, n_units), got shape {X.shape}.")
        shape = _check_shape(X.shape, allow_empty=True)
        per_sample = shape[1] * shape[2]
        flat = X.reshape(shape[0], per_sample)
        chunk = max(1, (1 << 22) // max(1, per_sample))
        cells, counts = [], []
        for start in range(0, shape[0], chunk):
            block = flat[start : start + chunk]
            rows, cols = np.nonzero(block)
            if not bool(np.all(block[rows, cols] == 1)):
                bad = block[rows, cols][block[rows, cols] != 1][0]
                raise ValueError(f"X must hold only 0 and 1 (spikes), found {bad!r}.")
            cells.append(cols)
            counts.append(np.bincount(rows, minlength=len(block)))
        offsets = np.zeros(shape[0] + 1, dtype=np.int64)
        if counts:
            np.cumsum(np.concatenate(counts), out=offsets[1:])
        cells = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
        return cls(offsets, cells, shape)

    @classmethod
    def from_spike_times(
        cls,
        times: Sequence[ArrayLike],
        units: Sequence[ArrayLike],
        n_steps: int,
        n_units: int,
        max_time: float,
    ) -> SpikeTrains:
        """Spike trains from per-sample spike times and units, binned into ``n_steps`` steps.

        Bin ``k`` covers ``[k * max_time / n_steps, (k + 1) * max_time / n_steps)``. Spikes at
        or after ``max_time`` are dropped; spikes of one unit that share a bin count once.
        The order of the spikes within a sample does not matter.

        Parameters
        ----------
        times : sequence of array-like of float
            One array per sample: spike times, in the unit of ``max_time`` (e.g. seconds).
        units : sequence of array-like of int
            One array per sample: the unit of each spike, in ``[0, n_units)``.
        n_steps, n_units : int
        max_time : float
            End of the binned window, > 0.

        Raises
        ------
        ValueError
            If ``times`` and ``units`` differ in length (overall or for a sample), a time is
            negative or not finite, or a unit lies outside ``[0, n_units)``.
        """
        shape = _check_shape((len(times), n_steps, n_units), allow_empty=True)
        max_time = _check_max_time(max_time)
        if len(units) != len(times):
            raise ValueError(f"times has {len(times)} samples but units has {len(units)}.")
        binner = _Binner(n_steps, n_units, max_time)
        cells = [binner(t, u, i) for i, (t, u) in enumerate(zip(times, units, strict=True))]
        return cls._from_cells(cells, shape)

    @classmethod
    def _from_cells(cls, cells: list[np.ndarray], shape: tuple[int, int, int]) -> SpikeTrains:
        """From one sorted, duplicate-free array of flat bin indices per sample."""
        offsets = np.zeros(len(cells) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in cells], out=offsets[1:])
        dtype = _cell_dtype(shape[1] * shape[2])
        flat = np.concatenate(cells).astype(dtype) if cells else np.zeros(0, dtype)
        return cls(offsets, flat, shape)

    # -- array-like behaviour --------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def n_events(self) -> int:
        return int(self._cells.shape[0])

    @property
    def density(self) -> float:
        size = math.prod(self._shape)  # Python ints: the same division as for a dense array
        return self.n_events / size if size else 0.0

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, key) -> SpikeTrains:
        """The samples selected by an int, a slice, an integer array or a boolean mask."""
        if isinstance(key, tuple):
            # scikit-learn indexes arrays as X[key, ...]
            if len(key) == 2 and key[1] is Ellipsis:
                key = key[0]
            else:
                raise IndexError("SpikeTrains index samples only: st[key] or st[key, ...].")
        index = self._sample_index(key)
        if isinstance(index, slice):
            begin, end = self._offsets[index.start], self._offsets[index.stop]
            offsets = self._offsets[index.start : index.stop + 1] - begin
            return SpikeTrains(
                offsets, self._cells[begin:end], self._sample_shape(len(offsets) - 1)
            )
        positions, offsets = self._positions(index)
        return SpikeTrains(offsets, self._cells[positions], self._sample_shape(len(index)))

    def __repr__(self) -> str:
        return f"SpikeTrains(shape={self._shape}, n_events={self.n_events})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpikeTrains):
            return NotImplemented
        return (
            self._shape == other._shape
            and np.array_equal(self._offsets, other._offsets)
            and np.array_equal(self._cells, other._cells)
        )

    __hash__ = None  # mutable-looking containers (arrays) are not hashed, as in NumPy

    def __setattr__(self, name, value):
        raise AttributeError("SpikeTrains is immutable.")

    def __getstate__(self) -> dict:
        return {"shape": self._shape, "offsets": self._offsets, "cells": self._cells}

    def __setstate__(self, state: dict) -> None:
        SpikeTrains.__init__(self, state["offsets"], state["cells"], state["shape"])

    # -- dense views -----------------------------------------------------------------------
    def to_dense(self, dtype: DTypeLike = np.float32) -> np.ndarray:
        """The dense array ``(n_samples, n_steps, n_units)``: 1 where a spike is, else 0."""
        return self.dense_samples(slice(0, len(self)), dtype)

    def dense_samples(self, key, dtype: DTypeLike = np.float32) -> np.ndarray:
        """``self[key].to_dense(dtype)`` without building the intermediate SpikeTrains."""
        index = self._sample_index(key)
        if isinstance(index, slice):
            n = index.stop - index.start
            begin, end = self._offsets[index.start], self._offsets[index.stop]
            cells = self._cells[begin:end]
            counts = np.diff(self._offsets[index.start : index.stop + 1])
        else:
            n = len(index)
            positions, offsets = self._positions(index)
            cells, counts = self._cells[positions], np.diff(offsets)
        per_sample = self._shape[1] * self._shape[2]
        out = np.zeros((n, *self._shape[1:]), dtype=dtype)
        flat = cells.astype(np.int64)
        flat += np.repeat(np.arange(n, dtype=np.int64) * per_sample, counts)
        out.reshape(-1)[flat] = 1
        return out

    # -- what training needs -----------------------------------------------------------------
    def sampled_density(self) -> float:
        """The density that :func:`sksnn._sparse.binary_pattern` estimates for the dense
        array seen as ``(n_samples * n_steps, n_units)``, from the same rows."""
        row_offsets = self.row_offsets()
        runs = sampled_rows(len(row_offsets) - 1)
        if runs is None:
            return self.density
        active = sum(int(row_offsets[b] - row_offsets[a]) for a, b in runs)
        return active / (sum(b - a for a, b in runs) * self._shape[2])

    def row_offsets(self) -> np.ndarray:
        """Start of every (sample, step) row's events in sample-major order, and the end."""
        n_samples, n_steps, n_units = self._shape
        rows = self._cells // n_units
        rows = rows.astype(np.int64, copy=False)
        rows += np.repeat(np.arange(n_samples, dtype=np.int64) * n_steps, np.diff(self._offsets))
        offsets = np.zeros(n_samples * n_steps + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_samples * n_steps), out=offsets[1:])
        return offsets

    def sample_events(self) -> SampleEvents:
        """The event index training gathers batches from (the same as a dense array's)."""
        n_units = self._shape[2]
        cols = (self._cells % n_units).astype(np.int32)
        return SampleEvents.from_arrays(cols, self.row_offsets(), self._shape[1], n_units)

    # -- helpers -----------------------------------------------------------------------------
    def _sample_shape(self, n: int) -> tuple[int, int, int]:
        return (n, *self._shape[1:])

    def _sample_index(self, key) -> slice | np.ndarray:
        """A contiguous slice (step 1, bounds resolved) or an int64 array of sample indices."""
        n = len(self)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"Sample index {k} is out of range for {n} samples.")
            k %= n
            return slice(k, k + 1)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return slice(start, max(start, stop))
            return np.arange(start, stop, step, dtype=np.int64)
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (n,):
                raise IndexError(
                    f"A boolean mask must have shape ({n},), one entry per sample; got "
                    f"{key.shape}."
                )
            return np.flatnonzero(key)
        if key.size == 0:
            return np.zeros(0, dtype=np.int64)
        if key.ndim != 1 or not np.issubdtype(key.dtype, np.integer):
            raise IndexError(
                "SpikeTrains are indexed by an int, a slice, a 1-D integer array or a boolean "
                f"mask over samples; got {key.dtype} of shape {key.shape}."
            )
        if key.min() < -n or key.max() >= n:
            raise IndexError(
                f"Sample indices must lie in [-{n}, {n}), found {key.min()}..{key.max()}."
            )
        return np.where(key < 0, key + n, key).astype(np.int64)

    def _positions(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``_cells`` of the selected samples' events, and their new offsets."""
        starts = self._offsets[index]
        counts = self._offsets[index + 1] - starts
        positions, ends = range_positions(starts, counts)
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        offsets[1:] = ends
        return positions, offsets


class SpikeTimeBinner(TransformerMixin, BaseEstimator):
    """Bin raw per-sample spike events into :class:`SpikeTrains` (a pipeline's first step).

    Each sample is either a pair ``(times, units)`` of equal-length arrays, or a NumPy
    structured array with fields ``"t"`` (times) and ``"x"`` (units), as event-camera and
    audio-event libraries such as tonic store them. Binning is that of
    :meth:`SpikeTrains.from_spike_times`: ``n_steps`` bins over ``[0, max_time)``, spikes at
    or after ``max_time`` dropped, spikes of one unit sharing a bin counted once. ``n_steps``
    and ``max_time`` are ordinary parameters,
    so a grid search can tune the binning together with the network.

    Parameters
    ----------
    n_steps : int, default=100
        Number of time bins.
    max_time : float, default=1.0
        End of the binned window, in the unit of the spike times.
    n_units : int or None, default=None
        Number of input units. None: one more than the largest unit index seen in ``fit``;
        a larger index in ``transform`` is then an error.

    Attributes
    ----------
    n_units_ : int
        Number of input units of the output.

    Examples
    --------
    >>> import numpy as np
    >>> from sksnn import SpikeTimeBinner
    >>> X = [(np.array([0.05, 0.5]), np.array([0, 2])), (np.array([0.9]), np.array([1]))]
    >>> SpikeTimeBinner(n_steps=10, max_time=1.0).fit_transform(X)
    SpikeTrains(shape=(2, 10, 3), n_events=3)
    """

    _parameter_constraints: dict = {
        "n_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_time": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_units": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    def __init__(self, n_steps: int = 100, max_time: float = 1.0, n_units: int | None = None):
        self.n_steps = n_steps
        self.max_time = max_time
        self.n_units = n_units

    def fit(self, X, y=None):
        """Check the parameters and the events; learn ``n_units_`` when ``n_units`` is None."""
        self._validate_params()
        _check_max_time(self.max_time)
        _, units = _split_events(X)
        if self.n_units is not None:
            self.n_units_ = int(self.n_units)
        else:
            largest = max((int(np.max(u)) for u in units if np.size(u)), default=-1)
            self.n_units_ = largest + 1
            if self.n_units_ < 1:
                raise ValueError("No spikes in X to learn n_units from; pass n_units.")
        return self

    def transform(self, X) -> SpikeTrains:
        """The binned spike trains, shape ``(n_samples, n_steps, n_units_)``."""
        check_is_fitted(self)
        times, units = _split_events(X)
        return SpikeTrains.from_spike_times(
            times, units, self.n_steps, self.n_units_, self.max_time
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags


class _Binner:
    """Flat bin indices of one sample's spikes (sorted, each bin once)."""

    def __init__(self, n_steps: int, n_units: int, max_time: float) -> None:
        self.n_steps, self.n_units, self.max_time = n_steps, n_units, max_time

    def __call__(self, times: ArrayLike, units: ArrayLike, sample: int) -> np.ndarray:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        u = np.asarray(units).reshape(-1)
        if u.size and not np.issubdtype(u.dtype, np.integer):
            raise ValueError(f"Sample {sample}: unit indices must be integers, got {u.dtype}.")
        if not np.all(np.isfinite(t)):
            raise ValueError(f"Sample {sample}: spike times must be finite.")
        if t.size and t.min() < 0:
            raise ValueError(f"Sample {sample}: spike times must be >= 0, found {t.min()}.")
        flat = spike_bins(t, u, sample, self.n_steps, self.n_units, self.max_time)
        return np.unique(flat)


def _split_events(X) -> tuple[list, list]:
    """Per-sample times and units from pairs or structured arrays with fields t and x."""
    if isinstance(X, SpikeTrains) or (hasattr(X, "ndim") and X.ndim >= 2 and X.dtype != object):
        raise ValueError(
            "SpikeTimeBinner takes raw events, one (times, units) pair or structured array "
            "with fields 't' and 'x' per sample; got an array of shape "
            f"{getattr(X, 'shape', None)}."
        )
    times, units = [], []
    for i, sample in enumerate(X):
        names = getattr(getattr(sample, "dtype", None), "names", None)
        if names is not None:
            if "t" not in names or "x" not in names:
                raise ValueError(f"Sample {i}: a structured array needs fields 't' and 'x'.")
            times.append(sample["t"])
            units.append(sample["x"])
        elif isinstance(sample, (tuple, list)) and len(sample) == 2:
            times.append(sample[0])
            units.append(sample[1])
        else:
            raise ValueError(
                f"Sample {i}: expected a (times, units) pair or a structured array with fields "
                f"'t' and 'x', got {type(sample).__name__}."
            )
    if not times:
        raise ValueError("X holds no samples.")
    return times, units


def _check_shape(shape, allow_empty: bool = False) -> tuple[int, int, int]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims
    ):
        raise ValueError(
            f"shape must be three integers (n_samples, n_steps, n_units), got {shape!r}."
        )
    if min(dims[1:]) < 1 or dims[0] < (0 if allow_empty else 1):
        raise ValueError(f"shape needs at least one sample, step and unit, got {tuple(dims)}.")
    return tuple(int(d) for d in dims)


def _check_max_time(max_time) -> float:
    if not isinstance(max_time, numbers.Real) or not np.isfinite(max_time) or max_time <= 0:
        raise ValueError(f"max_time must be a finite number > 0, got {max_time!r}.")
    return float(max_time)


def _index_array(values: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}.")
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}.")
    return a


def _cell_dtype(per_sample: int) -> type:
    return np.int32 if per_sample <= np.iinfo(np.int32).max else np.int64


def _readonly(a: np.ndarray) -> np.ndarray:
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a
