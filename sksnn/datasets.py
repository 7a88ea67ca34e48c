"""Spike-train data sets: synthetic random-manifold data and a reader for the Heidelberg files.

Both functions return arrays ``X`` of shape ``(n_samples, n_steps, n_units)`` (``load_shd`` also
as :class:`~sksnn.spikes.SpikeTrains`) and integer labels ``y``, the layouts every estimator in
this package takes. At module level this module depends on numpy and scikit-learn only (no
torch, nothing else from ``sksnn``), and it never downloads anything.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from sklearn.utils import check_random_state

__all__ = ["load_shd", "make_randman"]

# Frequency cut-off rule of the reference ``randman`` package: keep modes until the spectral
# weight k**-alpha falls below _RANDMAN_PREC, but never more than _RANDMAN_MAX_MODES of them.
_RANDMAN_PREC = 1e-3
_RANDMAN_MAX_MODES = 1000

# Bound on the size of the (samples x units x modes) temporary in _eval_manifold; about 32 MiB
# of float64, so memory stays flat however many samples are requested.
_CHUNK_ELEMENTS = 1 << 22


def _check_int(value: object, name: str, minimum: int) -> int:
    # bool is an Integral, but make_randman(n_classes=True) is a bug, not a request for 1 class.
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_real(value: object, name: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    return float(value)


def _n_modes(alpha: float) -> int:
    n = math.ceil(_RANDMAN_PREC ** (-1.0 / alpha))
    # Mode 0 is a constant whose amplitude is zeroed (see _random_manifold), so at least one
    # oscillating mode is needed or every unit would be constant on the manifold.
    return int(min(max(n, 2), _RANDMAN_MAX_MODES))


def _random_manifold(
    rng: np.random.RandomState, n_units: int, dim_manifold: int, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the parameters of one smooth random manifold (amplitudes, frequencies, phases)."""
    n_modes = _n_modes(alpha)
    amplitude, frequency, phase = rng.uniform(size=(3, n_units, dim_manifold, n_modes))
    # Mode 0 contributes A * sin(2 pi phase), a pure offset; randman drops it (use_bias=False)
    # so that a manifold's position carries no information beyond its shape.
    amplitude[..., 0] = 0.0
    # Spectrum 1 / (k**alpha + 1) with k = 1..n_modes, the default (torch) backend of randman:
    # larger alpha damps high frequencies faster and so gives smoother manifolds.
    k = np.arange(1, n_modes + 1, dtype=np.float64)
    amplitude = amplitude / (k**alpha + 1.0)
    # Mode i oscillates at a random frequency in [0, i) cycles per unit of manifold coordinate.
    frequency = frequency * np.arange(n_modes, dtype=np.float64)
    return amplitude, frequency, phase


def _eval_manifold(
    coords: np.ndarray, amplitude: np.ndarray, frequency: np.ndarray, phase: np.ndarray
) -> np.ndarray:
    """Embedding coordinates, shape (n_points, n_units), of manifold points ``coords``."""
    n_points, dim_manifold = coords.shape
    n_units, _, n_modes = amplitude.shape
    out = np.ones((n_points, n_units))
    chunk = max(1, _CHUNK_ELEMENTS // (n_units * n_modes))
    for start in range(0, n_points, chunk):
        stop = min(start + chunk, n_points)
        for d in range(dim_manifold):
            # Each unit is a product over manifold dimensions of 1-D random Fourier series.
            arg = coords[start:stop, d, None, None] * frequency[None, :, d] + phase[None, :, d]
            out[start:stop] *= np.einsum("pum,um->pu", np.sin(2.0 * np.pi * arg), amplitude[:, d])
    return out


def make_randman(
    n_samples: int = 1000,
    n_classes: int = 10,
    n_units: int = 20,
    n_steps: int = 100,
    dim_manifold: int = 1,
    alpha: float = 1.0,
    step_frac: float = 0.5,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a random-manifold spike-timing classification data set.

    Each class is a smooth random ``dim_manifold``-dimensional manifold embedded in ``n_units``
    dimensions, as in the ``randman`` package of Zenke & Vogels (2021). A sample is a uniformly
    random point on its class's manifold, encoded as one spike per input unit whose timing is
    that unit's embedding coordinate. Spike counts carry no information; only the relative
    spike times do, which is what makes the task hard for rate-based readouts.

    Embedding coordinate ``u`` of a class's manifold at the point ``x`` in ``[0, 1)^D`` is::

        f_u(x) = prod_d sum_{i=1}^{M-1} a_udi * s_i * sin(2 pi (i r_udi x_d + p_udi)),
        s_i = 1 / ((i + 1)**alpha + 1),

    with ``a``, ``r`` and ``p`` drawn uniformly from ``[0, 1)`` once per class, and ``M`` the
    number of Fourier modes, ``ceil(1000**(1/alpha))`` capped at 1000 (at least 2). Within each
    class, ``f_u`` is min-max normalised per unit over that class's samples to ``[0, 1]`` and
    mapped linearly onto the first ``ceil(step_frac * n_steps)`` time steps; the unit fires
    exactly once, in that step.

    Parameters
    ----------
    n_samples : int, default=1000
        Total number of samples, split as evenly as possible over the classes. When it is not
        a multiple of ``n_classes``, the first ``n_samples % n_classes`` classes get one sample
        more than the others. Must be at least ``n_classes``.
    n_classes : int, default=10
        Number of classes (manifolds), at least 2.
    n_units : int, default=20
        Number of input units, i.e. the embedding dimension, at least 1.
    n_steps : int, default=100
        Number of time steps per sample, at least 1.
    dim_manifold : int, default=1
        Intrinsic dimension of each class manifold, at least 1. Higher values make the task
        harder.
    alpha : float, default=1.0
        Power-law exponent of the spectrum of the random Fourier series, > 0: mode ``i`` has
        amplitude scale ``1 / ((i + 1)**alpha + 1)``. Larger values give smoother manifolds
        (and fewer modes); smaller values give rougher ones.
    step_frac : float, default=0.5
        Fraction of the ``n_steps`` time steps, from the start, in which the spikes fall; in
        ``(0, 1]``. The remaining steps are silent, leaving the network time to respond.
    random_state : int, numpy.random.RandomState or None, default=None
        Seed or generator for the manifolds, the sample points and the shuffle. An int gives
        reproducible data.

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, n_steps, n_units), dtype float32
        Spike trains: 0/1 with exactly one 1 per (sample, unit).
    y : numpy.ndarray of shape (n_samples,), dtype int64
        Class labels ``0 .. n_classes - 1``. Samples are shuffled.

    Raises
    ------
    ValueError
        If an argument is out of range; the message names the argument.

    References
    ----------
    F. Zenke and T. P. Vogels, "The remarkable robustness of surrogate gradient learning for
    instilling complex function in spiking neural networks", Neural Computation 33(4),
    899-925, 2021. Reference code: https://github.com/fzenke/randman

    Examples
    --------
    >>> from sksnn.datasets import make_randman
    >>> X, y = make_randman(n_samples=100, n_classes=4, n_units=10, n_steps=50, random_state=0)
    >>> X.shape, X.dtype, y.dtype
    ((100, 50, 10), dtype('float32'), dtype('int64'))
    >>> bool((X.sum(axis=1) == 1).all())
    True
    >>> np.bincount(y).tolist()
    [25, 25, 25, 25]
    """
    n_classes = _check_int(n_classes, "n_classes", 2)
    n_samples = _check_int(n_samples, "n_samples", n_classes)
    n_units = _check_int(n_units, "n_units", 1)
    n_steps = _check_int(n_steps, "n_steps", 1)
    dim_manifold = _check_int(dim_manifold, "dim_manifold", 1)
    alpha = _check_real(alpha, "alpha")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")
    step_frac = _check_real(step_frac, "step_frac")
    if not 0 < step_frac <= 1:
        raise ValueError(f"step_frac must be in (0, 1], got {step_frac}.")
    rng = check_random_state(random_state)

    # Rounding first keeps e.g. 0.3 * 10 = 3.0000000000000004 from opening a fourth step.
    n_active = max(1, math.ceil(round(step_frac * n_steps, 9)))
    counts = np.full(n_classes, n_samples // n_classes)
    counts[: n_samples % n_classes] += 1

    spike_steps = np.empty((n_samples, n_units), dtype=np.int64)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    start = 0
    for n_class_samples in counts:
        params = _random_manifold(rng, n_units, dim_manifold, alpha)
        coords = rng.uniform(size=(n_class_samples, dim_manifold))
        values = _eval_manifold(coords, *params)
        low = values.min(axis=0)
        span = values.max(axis=0) - low
        # A unit can be constant over a class only with a single sample; it then fires at step 0.
        span[span == 0] = 1.0
        times = (values - low) / span
        steps = np.minimum(np.floor(times * n_active).astype(np.int64), n_active - 1)
        spike_steps[start : start + n_class_samples] = steps
        start += n_class_samples

    order = rng.permutation(n_samples)
    spike_steps = spike_steps[order]
    y = y[order]

    X = np.zeros((n_samples, n_steps, n_units), dtype=np.float32)
    sample_idx, unit_idx = np.indices((n_samples, n_units))
    X[sample_idx, spike_steps, unit_idx] = 1.0
    return X, y


def load_shd(
    path: str | os.PathLike[str],
    n_steps: int = 100,
    max_time: float = 1.4,
    n_units: int = 700,
    dtype: DTypeLike = np.float32,
    *,
    binary: bool = True,
    sparse: bool = False,
):
    """Read a Spiking Heidelberg Digits (SHD) or Spiking Speech Commands (SSC) HDF5 file.

    The files are not shipped with this package and nothing is downloaded: get them yourself
    from the Zenke lab data set page, https://zenkelab.org/datasets/ (SHD: ``shd_train.h5``,
    ``shd_test.h5``; SSC: ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``; the page serves
    them gzip-compressed, so decompress first). Both data sets have 700 input units; SHD has
    20 classes and SSC 35. Reading needs h5py (``pip install sksnn[data]``).

    A file holds ragged per-sample arrays ``spikes/times`` (spike times in seconds) and
    ``spikes/units`` (the index of the unit that fired each spike), and the integer ``labels``.
    Spikes are binned into ``n_steps`` equal bins over ``[0, max_time)``; bin ``k`` covers
    ``[k * max_time / n_steps, (k + 1) * max_time / n_steps)``. Spikes outside ``[0, max_time)``
    are dropped. The file is read in chunks of samples.

    Parameters
    ----------
    path : str or os.PathLike
        Path to a decompressed ``.h5`` file.
    n_steps : int, default=100
        Number of time bins, at least 1.
    max_time : float, default=1.4
        End of the binned window in seconds, > 0. Almost all SHD spikes fall before 1.4 s.
    n_units : int, default=700
        Number of input units; every unit index in the file must be below it.
    dtype : numpy dtype, default=numpy.float32
        Data type of a dense ``X``. With ``binary=False`` an integer type narrower than the
        largest count wraps around, so keep the default unless memory forces otherwise.
    binary : bool, default=True
        If True, a bin holding one or more spikes of a unit is 1; if False, it holds the spike
        count (dense ``X`` only).
    sparse : bool, default=False
        Return ``X`` as :class:`~sksnn.spikes.SpikeTrains` (events only, never dense): SHD's
        training set then takes about 1 % of its dense size, and SSC fits in memory.

    Returns
    -------
    X : numpy.ndarray or SpikeTrains of shape (n_samples, n_steps, n_units)
        Binned spikes (0/1, or counts with ``binary=False``). A dense ``X`` holds the whole
        file in memory: SHD's training set is about 2.3 GB at the defaults.
    y : numpy.ndarray of shape (n_samples,), dtype int64
        Labels as stored in the file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImportError
        If h5py is not installed.
    ValueError
        If an argument is out of range, a required key is missing, the ragged arrays disagree
        in length, or a unit index is negative or not below ``n_units``.

    References
    ----------
    B. Cramer, Y. Stradmann, J. Schemmel and F. Zenke, "The Heidelberg spiking data sets for the
    systematic evaluation of spiking neural networks", IEEE Transactions on Neural Networks and
    Learning Systems 33(7), 2744-2757, 2022 (online 2020).

    Examples
    --------
    >>> from sksnn.datasets import load_shd
    >>> X, y = load_shd("shd_test.h5")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((2264, 100, 700), (2264,))
    >>> X, y = load_shd("ssc_train.h5", sparse=True)  # doctest: +SKIP
    """
    n_steps = _check_int(n_steps, "n_steps", 1)
    n_units = _check_int(n_units, "n_units", 1)
    max_time = _check_real(max_time, "max_time")
    if max_time <= 0:
        raise ValueError(f"max_time must be > 0, got {max_time}.")
    if sparse and not binary:
        raise ValueError("sparse=True holds spikes, not counts; use binary=True or sparse=False.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No such file: {path!r}. Download the SHD/SSC files from "
            "https://zenkelab.org/datasets/ and decompress them; sksnn never downloads data."
        )
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "load_shd needs h5py; install it with `pip install sksnn[data]` (or `pip install "
            "h5py`)."
        ) from exc

    with h5py.File(path, "r") as f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise ValueError(f"{path!r} has no '{key}' dataset; is it an SHD/SSC file?")
        y = np.asarray(f["labels"][()], dtype=np.int64).reshape(-1)
        n_samples = len(y)
        n_times, n_units_rows = len(f["spikes/times"]), len(f["spikes/units"])
        if n_times != n_samples or n_units_rows != n_samples:
            raise ValueError(
                f"'spikes/times' ({n_times}), 'spikes/units' ({n_units_rows}) and 'labels' "
                f"({n_samples}) must have the same number of samples."
            )
        X = None if sparse else np.zeros((n_samples, n_steps, n_units), dtype=dtype)
        cells = []
        # Chunks of samples: one read per chunk (reading each vlen row alone hits the file
        # once per sample, orders of magnitude slower), and memory bounded by the chunk.
        for start in range(0, n_samples, _SHD_CHUNK):
            stop = min(start + _SHD_CHUNK, n_samples)
            times = f["spikes/times"][start:stop]
            units = f["spikes/units"][start:stop]
            for i in range(start, stop):
                flat = spike_bins(
                    times[i - start], units[i - start], i, n_steps, n_units, max_time
                )
                if sparse:
                    cells.append(np.unique(flat))
                elif binary:
                    X[i].reshape(-1)[flat] = 1
                else:
                    X[i] = np.bincount(flat, minlength=n_steps * n_units).reshape(n_steps, n_units)
    if sparse:
        from .spikes import SpikeTrains  # torch and the simulator only when asked for

        return SpikeTrains._from_cells(cells, (n_samples, n_steps, n_units)), y
    return X, y


# Samples read from an SHD/SSC file at a time.
_SHD_CHUNK = 1024


def spike_bins(
    times: ArrayLike, units: ArrayLike, sample: int, n_steps: int, n_units: int, max_time: float
) -> np.ndarray:
    """Flat bin indices ``step * n_units + unit`` of one sample's spikes in ``[0, max_time)``
    (a spike per entry, repeats included); the binning of :func:`load_shd` and
    :meth:`sksnn.spikes.SpikeTrains.from_spike_times`."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    u = np.asarray(units).reshape(-1)
    if t.shape != u.shape:
        raise ValueError(f"Sample {sample}: {t.size} spike times but {u.size} unit indices.")
    if u.size and (u.min() < 0 or u.max() >= n_units):
        raise ValueError(
            f"Sample {sample}: unit indices must lie in [0, n_units={n_units}), found "
            f"{u.min()}..{u.max()}; pass a larger n_units."
        )
    keep = (t >= 0) & (t < max_time)
    # Rounding in t * (n_steps / max_time) can push a spike just below max_time into bin
    # n_steps, one past the end.
    step = np.minimum((t[keep] * (n_steps / max_time)).astype(np.int64), n_steps - 1)
    return step * n_units + u[keep].astype(np.int64)
