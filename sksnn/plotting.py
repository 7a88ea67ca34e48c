"""Plots of recorded activity, training curves and surrogate shapes (needs matplotlib).

matplotlib is an optional dependency (``pip install "sksnn[plot]"``); it is imported inside the
functions, so importing this module works without it. Single-panel functions take an optional
``ax`` and return the Axes they drew on; multi-panel functions return the Figure.

The activity plots take the :class:`~sksnn.SimulationResult` returned by the estimators'
``simulate(X, n_trials, record_membrane)`` method.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from sksnn.plotting import plot_surrogates
>>> fig = plot_surrogates(["matched", "superspike", "atan"], beta=5.0)
>>> [len(ax.lines) for ax in fig.axes]
[3, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .surrogates import ESCAPE_NOISE, Surrogate, get_escape_noise, get_surrogate

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_loss_curve",
    "plot_membrane",
    "plot_raster",
    "plot_simulation",
    "plot_surrogates",
]

DEFAULT_SURROGATES = ("matched", "superspike", "atan", "triangle", "gaussian", "boxcar")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            'sksnn.plotting needs matplotlib; install it with: pip install "sksnn[plot]"'
        ) from exc
    return plt


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots()
    return ax


def _index(value: Any, size: int, what: str) -> int:
    """A valid (possibly negative) index into an axis of length ``size``, as non-negative int."""
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}.")
    if not -size <= value < size:
        raise ValueError(f"{what}={value} is out of range for {size} {what}s.")
    return int(value) % size


def _check_result(result: Any) -> None:
    if not (hasattr(result, "spikes") and hasattr(result, "output")):
        raise TypeError(
            "Expected the SimulationResult returned by an estimator's simulate(), got "
            f"{type(result).__name__}."
        )


def _time_axis(n_steps: int, dt: float | None) -> tuple[np.ndarray, str]:
    if dt is None:
        return np.arange(n_steps), "Time step"
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}.")
    return np.arange(n_steps) * dt * 1e3, "Time (ms)"


def plot_raster(
    result,
    *,
    sample: int = 0,
    trial: int = 0,
    layer: int = 0,
    dt: float | None = None,
    ax: Axes | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Spike raster of one hidden layer for one sample and trial.

    Parameters
    ----------
    result : SimulationResult
        From ``estimator.simulate(X, n_trials)``.
    sample, trial, layer : int, default=0
        Which sample, stochastic trial and hidden layer; negative values count from the end.
    dt : float, optional
        Time step in seconds (the estimator's ``dt``); the time axis is then in ms, otherwise
        in steps.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **scatter_kwargs
        Passed to ``Axes.scatter`` (defaults: black vertical ticks).

    Returns
    -------
    matplotlib.axes.Axes
        One scatter point per spike, at (time, neuron index).

    Examples
    --------
    >>> ax = plot_raster(clf.simulate(X[:1]), layer=0, dt=clf.dt)  # doctest: +SKIP
    """
    _check_result(result)
    layer = _index(layer, len(result.spikes), "layer")
    spikes = np.asarray(result.spikes[layer])
    trial = _index(trial, spikes.shape[0], "trial")
    sample = _index(sample, spikes.shape[1], "sample")
    ax = _draw_raster(_new_axes(ax), spikes[trial, sample], dt, scatter_kwargs)
    ax.set_title(f"Hidden layer {layer}: sample {sample}, trial {trial}")
    return ax


def _draw_raster(ax: Axes, grid: np.ndarray, dt: float | None, scatter_kwargs: dict) -> Axes:
    """Scatter the nonzero entries of a (n_steps, n_units) array as spikes."""
    steps, units = np.nonzero(grid)
    time, xlabel = _time_axis(grid.shape[0], dt)
    style = {"marker": "|", "s": 30, "linewidths": 1.0, "color": "k", **scatter_kwargs}
    ax.scatter(time[steps], units, **style)
    half_step = 0.5 * (1.0 if dt is None else dt * 1e3)
    ax.set_xlim(time[0] - half_step, time[-1] + half_step)
    ax.set_ylim(-0.5, grid.shape[1] - 0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Neuron")
    return ax


def plot_membrane(
    result,
    *,
    sample: int = 0,
    trial: int = 0,
    layer: int | str = 0,
    units: Sequence[int] | None = None,
    threshold: float | None = None,
    dt: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Membrane potentials over time of a few neurons of one layer.

    Parameters
    ----------
    result : SimulationResult
        From ``estimator.simulate(X, n_trials, record_membrane=True)``; for ``layer="output"``
        the readout potentials, which are always recorded.
    sample, trial : int, default=0
    layer : int or "output", default=0
        Hidden layer index, or "output" for the leaky-integrator readout.
    units : sequence of int, optional
        Neurons to draw, one line each; default the first (up to) five.
    threshold : float, optional
        Draws the firing threshold as a dashed horizontal line (one extra line).
    dt : float, optional
        Time step in seconds; the time axis is then in ms.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_result(result)
    if isinstance(layer, str):
        if layer != "output":
            raise ValueError(f'layer must be an integer or "output", got {layer!r}.')
        values, name = np.asarray(result.output), "Readout"
    else:
        if result.membranes is None:
            raise ValueError(
                "This SimulationResult has no membrane potentials; call "
                "simulate(X, record_membrane=True)."
            )
        index = _index(layer, len(result.membranes), "layer")
        values, name = np.asarray(result.membranes[index]), f"Hidden layer {index}"
    trial = _index(trial, values.shape[0], "trial")
    sample = _index(sample, values.shape[1], "sample")
    traces = values[trial, sample]
    n_units = traces.shape[1]
    if units is None:
        units = range(min(5, n_units))
    units = [_index(u, n_units, "unit") for u in units]
    if not units:
        raise ValueError("units must name at least one neuron.")
    time, xlabel = _time_axis(traces.shape[0], dt)
    ax = _new_axes(ax)
    for u in units:
        ax.plot(time, traces[:, u], label=f"unit {u}")
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linestyle="--", linewidth=1.0, label="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Membrane potential")
    ax.set_title(f"{name}: sample {sample}, trial {trial}")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_simulation(
    result,
    *,
    sample: int = 0,
    trial: int = 0,
    inputs: np.ndarray | None = None,
    dt: float | None = None,
    class_names: Sequence[Any] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Rasters of every hidden layer above the readout potentials, for one sample and trial.

    Parameters
    ----------
    result : SimulationResult
    sample, trial : int, default=0
    inputs : array-like of shape (n_samples, n_steps, n_inputs), optional
        The 3-D ``X`` passed to ``simulate``; its nonzero entries of ``sample`` are drawn as an
        input raster in an extra panel on top.
    dt : float, optional
        Time step in seconds; the time axes are then in ms.
    class_names : sequence, optional
        Legend labels of the readout units (e.g. ``clf.classes_``).
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        One raster per hidden layer (after the input raster, if any) and the readout
        potentials, sharing the time axis.

    Examples
    --------
    >>> result = clf.simulate(X[:1])  # doctest: +SKIP
    >>> fig = plot_simulation(result, inputs=X[:1], dt=clf.dt, class_names=clf.classes_)
    ... # doctest: +SKIP
    """
    _check_result(result)
    output = np.asarray(result.output)
    n_outputs = output.shape[-1]
    if class_names is not None and len(class_names) != n_outputs:
        raise ValueError(
            f"class_names has {len(class_names)} entries but the readout has {n_outputs} units."
        )
    grids = []
    if inputs is not None:
        inputs = np.asarray(inputs)
        if inputs.ndim != 3 or inputs.shape[:2] != output.shape[1:3]:
            raise ValueError(
                "inputs must be the 3-D X passed to simulate, of shape (n_samples, n_steps, "
                f"n_inputs) = ({output.shape[1]}, {output.shape[2]}, ...), got {inputs.shape}."
            )
        grids.append(("Input", inputs[_index(sample, len(inputs), "sample")]))
    trial = _index(trial, output.shape[0], "trial")
    sample = _index(sample, output.shape[1], "sample")
    grids += [(f"Hidden {i}", np.asarray(s)[trial, sample]) for i, s in enumerate(result.spikes)]
    plt = _pyplot()
    heights = [*(1.0 + grid.shape[-1] / 50.0 for _, grid in grids), 1.2]
    fig, axes = plt.subplots(
        len(grids) + 1,
        1,
        sharex=True,
        figsize=figsize or (7.0, 1.6 * sum(heights)),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
    )
    for ax, (name, grid) in zip(axes, grids, strict=False):
        _draw_raster(ax, grid, dt, {"s": 12})
        ax.set_xlabel("")
        ax.set_ylabel(name)
    ax = plot_membrane(
        result, sample=sample, trial=trial, layer="output", units=range(n_outputs), dt=dt,
        ax=axes[-1],
    )  # fmt: skip
    if class_names is not None:
        for line, label in zip(ax.lines, class_names, strict=False):
            line.set_label(str(label))
    ax.set_ylabel("Readout")
    ax.set_title("")
    if n_outputs > 10:
        ax.get_legend().remove()
    else:
        ax.legend(loc="upper left", fontsize="x-small", ncols=min(n_outputs, 5))
    return fig


def plot_loss_curve(estimator, *, ax: Axes | None = None) -> Axes:
    """Training loss per epoch, with the validation score on a second axis when recorded.

    Parameters
    ----------
    estimator : fitted SpikingClassifier or SpikingRegressor
        Uses ``loss_curve_`` and, with ``early_stopping=True``, ``validation_scores_``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The axes of the loss; the validation curve, if any, is on ``ax.figure.axes[-1]``, a
        twin sharing the epoch axis.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator has not been fitted.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "loss_curve_")
    ax = _new_axes(ax)
    epochs = np.arange(1, len(estimator.loss_curve_) + 1)
    ax.plot(epochs, estimator.loss_curve_, color="C0", marker=".", label="training loss")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Training loss")
    scores = getattr(estimator, "validation_scores_", None)
    if scores:
        twin = ax.twinx()
        twin.plot(
            np.arange(1, len(scores) + 1), scores, color="C1", marker=".", label="validation"
        )
        twin.set_ylabel("Validation score")
        handles = ax.get_lines() + twin.get_lines()
        ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    return ax


def plot_surrogates(
    surrogates: Sequence[str | Surrogate] = DEFAULT_SURROGATES,
    escape_noises: Sequence[str] = tuple(ESCAPE_NOISE),
    *,
    beta: float = 10.0,
    escape_noise: str = "sigmoid",
    x_range: tuple[float, float] | None = None,
    n_points: int = 501,
    figsize: tuple[float, float] = (10.0, 3.6),
) -> Figure:
    """Surrogate derivatives next to escape-noise functions, both over ``x = U - threshold``.

    Left: each surrogate's derivative at steepness ``beta``. Right: each escape-noise firing
    probability ``f(beta x)``, i.e. at temperature ``T = 1 / beta``; the matched surrogate of
    a shape is the derivative of its curve on the right.

    Parameters
    ----------
    surrogates : sequence of str or Surrogate
        Names from :data:`sksnn.surrogates.SURROGATES` or instances (drawn with their own
        ``beta``); one line each.
    escape_noises : sequence of str
        Names from :data:`sksnn.surrogates.ESCAPE_NOISE`; one line each. May be empty, which
        leaves out the right panel.
    beta : float, default=10.0
        Steepness of the named surrogates and inverse temperature of the escape noise.
    escape_noise : str, default="sigmoid"
        The escape noise whose derivative the "matched" surrogate is.
    x_range : (float, float), optional
        Range of ``U - threshold``; default ``(-4 / beta, 4 / beta)``.
    n_points : int, default=501
    figsize : (float, float), default=(10, 3.6)

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(surrogates, str | Surrogate):
        surrogates = [surrogates]
    if isinstance(escape_noises, str):
        escape_noises = [escape_noises]
    if len(surrogates) == 0:
        raise ValueError("surrogates must name at least one surrogate.")
    if isinstance(beta, bool) or not isinstance(beta, Real):
        raise ValueError(f"beta must be a real number, got {beta!r}.")
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0, got {beta!r}.")
    if not (isinstance(n_points, Integral) and n_points >= 2):
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}.")
    lo, hi = x_range if x_range is not None else (-4.0 / beta, 4.0 / beta)
    if not lo < hi:
        raise ValueError(f"x_range must be increasing, got {x_range!r}.")
    objects = [get_surrogate(s, None if isinstance(s, Surrogate) else beta, escape_noise)
               for s in surrogates]  # fmt: skip
    noises = [get_escape_noise(n) for n in escape_noises]

    plt = _pyplot()
    n_panels = 2 if noises else 1
    fig, axes = plt.subplots(1, n_panels, figsize=figsize, layout="constrained", squeeze=False)
    x = torch.linspace(lo, hi, n_points, dtype=torch.float64)
    left = axes[0, 0]
    for spec, obj in zip(surrogates, objects, strict=True):
        label = spec if isinstance(spec, str) else f"{type(obj).__name__}(beta={obj.beta:g})"
        if spec == "matched":
            label = f"matched ({escape_noise})"
        left.plot(x.numpy(), obj.derivative(x).numpy(), label=label)
    left.set_xlabel("U - threshold")
    left.set_ylabel("Surrogate derivative")
    left.set_title(f"Surrogates, beta = {beta:g}")
    left.legend(fontsize="small")
    if noises:
        right = axes[0, 1]
        for noise in noises:
            right.plot(x.numpy(), noise.cdf(beta * x).numpy(), label=noise.name)
        right.set_xlabel("U - threshold")
        right.set_ylabel("Spike probability f((U - threshold) / T)")
        right.set_title(f"Escape noise, T = 1/beta = {1.0 / beta:g}")
        right.legend(fontsize="small")
    return fig
