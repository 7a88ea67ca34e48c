"""Trial-to-trial variability of trained stochastic networks, and "other mode" evaluation.

A network trained with escape noise keeps its variability: one input repeated many times gives
different spike trains, quantified by the Fano factor (variance over mean across trials) of
spike counts in sliding windows (Gygax & Zenke, 2025, measured it in 20 ms windows over 400
repetitions). The same trained weights can be run at another noise temperature: a model
trained stochastically and evaluated deterministically, and vice versa.

Changing ``noise_temperature`` with ``set_params`` after ``fit`` does not change a fitted
estimator: the neuron constants are built into ``module_.lif`` when it is fitted.
:func:`with_noise_temperature` returns a copy whose fitted network runs at another temperature.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._common import check_int

__all__ = ["cross_mode_scores", "estimator_fano_factors", "fano_factors", "with_noise_temperature"]


def fano_factors(spikes, window: int, stride: int | None = None, *, ddof: int = 1) -> np.ndarray:
    """Fano factors of spike counts in sliding windows, across trials.

    Parameters
    ----------
    spikes : array-like, shape (n_trials, ..., n_steps, n_units)
        Trials first, time second to last (the layout of ``simulate(X, n_trials).spikes[l]``:
        (n_trials, n_samples, n_steps, n_units)).
    window : int
        Window length in steps (e.g. 10 steps of 2 ms for the paper's 20 ms).
    stride : int, optional
        Step between window starts; default ``window`` (non-overlapping windows).
    ddof : int, default=1
        Delta degrees of freedom of the variance across trials (1: unbiased).

    Returns
    -------
    ndarray, shape (..., n_windows, n_units)
        ``var / mean`` of the counts over trials; NaN where the mean count is 0 (a neuron that
        never fires in that window).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.random((2000, 50, 1)) < 0.1          # Bernoulli(0.1) per step
    >>> f = fano_factors(s, window=10)                # binomial counts: Fano = 1 - p
    >>> f.shape, bool(abs(f.mean() - 0.9) < 0.05)
    ((5, 1), True)
    """
    s = np.asarray(spikes)
    if s.ndim < 3:
        raise ValueError(
            f"spikes must have shape (n_trials, ..., n_steps, n_units), got {s.shape}."
        )
    n_trials, n_steps = s.shape[0], s.shape[-2]
    window = check_int(window, "window")
    ddof = check_int(ddof, "ddof", low=0)
    if n_trials < ddof + 1:
        raise ValueError(f"Need more than {ddof} trials, got {n_trials}.")
    if not 1 <= window <= n_steps:
        raise ValueError(f"window must be between 1 and n_steps={n_steps}, got {window}.")
    stride = window if stride is None else check_int(stride, "stride")
    csum = np.cumsum(s, axis=-2, dtype=np.int64)
    csum = np.concatenate([np.zeros_like(csum[..., :1, :]), csum], axis=-2)
    starts = np.arange(0, n_steps - window + 1, stride)
    counts = (csum[..., starts + window, :] - csum[..., starts, :]).astype(np.float64)
    mean = counts.mean(axis=0)
    var = counts.var(axis=0, ddof=ddof)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, var / mean, np.nan)


def estimator_fano_factors(
    estimator,
    X,
    *,
    n_trials: int = 400,
    window: int = 10,
    stride: int | None = None,
    layer: int = 0,
) -> np.ndarray:
    """Fano factors of a fitted estimator's hidden spike counts, each input repeated.

    Parameters
    ----------
    estimator : SpikingClassifier or SpikingRegressor
        Fitted.
    X : array-like, shape (n_samples, ...)
        Inputs; each is presented ``n_trials`` times with independent spike noise
        (``estimator.simulate(X, n_trials)``).
    n_trials : int, default=400
    window : int, default=10
        Steps per window (10 steps of the default ``dt = 2 ms``: 20 ms).
    stride : int, optional
        Default ``window``.
    layer : int, default=0
        Hidden layer.

    Returns
    -------
    ndarray, shape (n_samples, n_windows, n_units)
        NaN where a neuron never fires in a window.
    """
    check_is_fitted(estimator)
    n_layers = len(estimator.module_.hidden_layer_sizes)
    layer = check_int(layer, "layer", low=0)
    if layer >= n_layers:
        raise ValueError(f"layer must be below the {n_layers} hidden layers, got {layer}.")
    window = check_int(window, "window")
    sim = estimator.simulate(X, n_trials=check_int(n_trials, "n_trials", low=2))
    return fano_factors(sim.spikes[layer], window, stride)


def with_noise_temperature(estimator, temperature: float, *, predict_trials: int | None = None):
    """A copy of a fitted estimator whose network runs at another escape-noise temperature.

    The fitted weights are unchanged; ``module_.lif.temperature`` and the ``noise_temperature``
    parameter are replaced (``temperature=0`` gives the deterministic network). The surrogate
    is left as it is: it only matters for further training, which would rebuild it from the
    parameters anyway.

    Parameters
    ----------
    estimator : SpikingClassifier or SpikingRegressor
        Fitted; it is not modified.
    temperature : float
        ``T >= 0``.
    predict_trials : int, optional
        Stochastic trials averaged by ``predict``/``score`` (default: the estimator's own).

    Returns
    -------
    estimator
        A deep copy.

    Examples
    --------
    >>> from sksnn import SpikingClassifier
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    >>> clf = SpikingClassifier((8,), n_steps=10, max_iter=2, random_state=0).fit(X, y)
    ... # doctest: +SKIP
    >>> with_noise_temperature(clf, 0.0).module_.lif.temperature  # doctest: +SKIP
    0.0
    """
    if not (temperature >= 0):
        raise ValueError(f"temperature must be >= 0, got {temperature!r}.")
    if not hasattr(estimator, "module_"):
        raise ValueError("with_noise_temperature needs a fitted estimator.")
    other = copy.deepcopy(estimator)
    other.module_.lif = replace(other.module_.lif, temperature=float(temperature))
    params = {"noise_temperature": float(temperature)}
    if predict_trials is not None:
        params["predict_trials"] = int(predict_trials)
    other.set_params(**params)
    return other


def cross_mode_scores(
    estimator,
    X,
    y,
    temperatures: Sequence[float] = (0.0, 0.1),
    *,
    predict_trials: int | None = None,
) -> dict[float, float]:
    """``score(X, y)`` of a fitted estimator run at each of several noise temperatures.

    Parameters
    ----------
    estimator : SpikingClassifier or SpikingRegressor
        Fitted; it is not modified.
    X, y : array-like
    temperatures : sequence of float, default=(0.0, 0.1)
    predict_trials : int, optional
        As for :func:`with_noise_temperature`.

    Returns
    -------
    dict of float to float
    """
    return {
        float(t): float(
            with_noise_temperature(estimator, t, predict_trials=predict_trials).score(X, y)
        )
        for t in temperatures
    }
