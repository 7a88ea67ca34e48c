"""sksnn.plotting: the figures show the data they are given, and bad input is refused."""

import importlib
import sys
import warnings

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from sksnn import SpikingClassifier  # noqa: E402
from sksnn.plotting import (  # noqa: E402
    plot_loss_curve,
    plot_membrane,
    plot_raster,
    plot_simulation,
    plot_surrogates,
)
from sksnn.surrogates import Atan, get_escape_noise, get_surrogate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 5) * 2.0
    y = np.arange(60) % 3
    clf = SpikingClassifier(
        hidden_layer_sizes=(12, 7), n_steps=20, max_iter=3, early_stopping=True, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    result = clf.simulate(X[:4], n_trials=2, record_membrane=True)
    # The raster checks below are only meaningful when there is something to count.
    assert result.spikes[0].sum() > 0 and result.spikes[1].sum() > 0
    return clf, result


def _points(ax):
    (collection,) = ax.collections
    return collection.get_offsets()


@pytest.mark.parametrize(("sample", "trial", "layer"), [(0, 0, 0), (2, 1, 1), (-1, -1, -1)])
def test_raster_has_one_point_per_spike(fitted, sample, trial, layer):
    _, result = fitted
    ax = plot_raster(result, sample=sample, trial=trial, layer=layer)
    grid = result.spikes[layer][trial, sample]
    points = np.asarray(_points(ax))
    assert len(points) == grid.sum()
    # Each point sits at (step, neuron) of a spike.
    steps, units = np.nonzero(grid)
    expected = sorted(zip(steps.tolist(), units.tolist(), strict=True))
    assert sorted(map(tuple, points.tolist())) == expected
    assert ax.get_xlabel() == "Time step"
    assert ax.get_ylabel() == "Neuron"
    assert ax.get_ylim() == (-0.5, grid.shape[1] - 0.5)


def test_raster_time_in_ms_and_given_axes(fitted):
    clf, result = fitted
    _, given = plt.subplots()
    ax = plot_raster(result, dt=clf.dt, ax=given, color="r")
    assert ax is given
    assert ax.get_xlabel() == "Time (ms)"
    steps = np.nonzero(result.spikes[0][0, 0])[0]
    np.testing.assert_allclose(np.sort(_points(ax)[:, 0]), np.sort(steps * clf.dt * 1e3))


def test_raster_rejects_bad_input(fitted):
    _, result = fitted
    with pytest.raises(ValueError, match="sample=4 is out of range"):
        plot_raster(result, sample=4)
    with pytest.raises(ValueError, match="layer=2 is out of range"):
        plot_raster(result, layer=2)
    with pytest.raises(TypeError, match="trial must be an integer"):
        plot_raster(result, trial=0.5)
    with pytest.raises(TypeError, match="SimulationResult"):
        plot_raster(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dt must be positive"):
        plot_raster(result, dt=0.0)


def test_membrane_traces_show_recorded_potentials(fitted):
    _, result = fitted
    ax = plot_membrane(result, sample=1, trial=1, layer=1, units=[0, 3, 6], threshold=1.0)
    traces = result.membranes[1][1, 1]
    *unit_lines, threshold_line = ax.lines
    assert len(unit_lines) == 3
    for line, unit in zip(unit_lines, [0, 3, 6], strict=True):
        np.testing.assert_array_equal(line.get_ydata(), traces[:, unit])
    assert set(threshold_line.get_ydata()) == {1.0}
    assert ax.get_ylabel() == "Membrane potential"
    assert len(plot_membrane(result).lines) == 5  # default: the first five units


def test_membrane_output_layer_needs_no_recording(fitted):
    clf, _ = fitted
    X = np.random.RandomState(1).randn(2, 5)
    result = clf.simulate(X)
    ax = plot_membrane(result, layer="output", units=range(3))
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), result.output[0, 0, :, 2])
    with pytest.raises(ValueError, match="record_membrane=True"):
        plot_membrane(result, layer=0)
    with pytest.raises(ValueError, match='"output"'):
        plot_membrane(result, layer="readout")
    with pytest.raises(ValueError, match="unit=3 is out of range"):
        plot_membrane(result, layer="output", units=[3])


def test_simulation_figure_has_a_panel_per_layer(fitted):
    clf, result = fitted
    fig = plot_simulation(result, sample=3, dt=clf.dt, class_names=["a", "b", "c"])
    rasters, readout = fig.axes[:2], fig.axes[2]
    assert len(fig.axes) == 3
    for layer, ax in enumerate(rasters):
        assert len(_points(ax)) == result.spikes[layer][0, 3].sum()
    assert [line.get_label() for line in readout.lines] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        plot_simulation(result, class_names=["a", "b"])


def test_simulation_figure_with_input_raster():
    X = (np.random.RandomState(2).rand(3, 8, 5) < 0.3).astype(np.float32)
    clf3d = SpikingClassifier((6,), n_steps=8, max_iter=1, random_state=0)
    clf3d.fit(X, [0, 1, 0])
    result = clf3d.simulate(X)
    fig = plot_simulation(result, sample=2, inputs=X)
    assert len(fig.axes) == 3
    assert len(_points(fig.axes[0])) == X[2].sum()
    assert fig.axes[0].get_ylabel() == "Input"
    assert len(_points(fig.axes[1])) == result.spikes[0][0, 2].sum()
    with pytest.raises(ValueError, match="inputs must be the 3-D X"):
        plot_simulation(result, inputs=X[:, :4])


def test_loss_curve_and_validation(fitted):
    clf, _ = fitted
    ax = plot_loss_curve(clf)
    (loss_line,) = ax.lines
    np.testing.assert_array_equal(loss_line.get_ydata(), clf.loss_curve_)
    np.testing.assert_array_equal(loss_line.get_xdata(), np.arange(1, clf.n_iter_ + 1))
    twin = ax.figure.axes[-1]
    assert twin is not ax
    np.testing.assert_array_equal(twin.lines[0].get_ydata(), clf.validation_scores_)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Epoch", "Training loss")
    assert twin.get_ylabel() == "Validation score"


def test_loss_curve_without_validation_and_unfitted():
    X = np.random.RandomState(0).randn(20, 3)
    clf = SpikingClassifier((4,), n_steps=5, max_iter=2, random_state=0).fit(X, np.arange(20) % 2)
    ax = plot_loss_curve(clf)
    assert len(ax.figure.axes) == 1
    with pytest.raises(NotFittedError):
        plot_loss_curve(SpikingClassifier())


def test_surrogates_one_line_each():
    names = ["matched", "superspike", "triangle", Atan(beta=2.0)]
    fig = plot_surrogates(names, ["sigmoid", "erf"], beta=4.0, escape_noise="erf", n_points=101)
    left, right = fig.axes
    assert len(left.lines) == 4
    assert len(right.lines) == 2
    x = torch.as_tensor(left.lines[0].get_xdata())
    np.testing.assert_allclose(x[[0, -1]], [-1.0, 1.0])  # default range is +-4 / beta
    expected = get_surrogate("matched", 4.0, "erf").derivative(x).numpy()
    np.testing.assert_allclose(left.lines[0].get_ydata(), expected)
    # An instance keeps its own beta.
    np.testing.assert_allclose(left.lines[3].get_ydata(), Atan(beta=2.0).derivative(x).numpy())
    np.testing.assert_allclose(
        right.lines[1].get_ydata(), get_escape_noise("erf").cdf(4.0 * x).numpy()
    )
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels == ["matched (erf)", "superspike", "triangle", "Atan(beta=2)"]
    assert left.get_xlabel() == "U - threshold"


def test_surrogates_without_escape_noise_panel_and_errors():
    fig = plot_surrogates(["sigmoid"], [])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="Unknown surrogate 'nope'"):
        plot_surrogates(["nope"])
    with pytest.raises(ValueError, match="Unknown escape noise"):
        plot_surrogates(["atan"], ["gumbel"])
    with pytest.raises(ValueError, match="beta must be"):
        plot_surrogates(beta=0)
    with pytest.raises(ValueError, match="x_range must be increasing"):
        plot_surrogates(x_range=(1.0, -1.0))


def test_missing_matplotlib_gives_install_hint(monkeypatch, fitted):
    _, result = fitted
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    monkeypatch.delitem(sys.modules, "sksnn.plotting")
    plotting = importlib.import_module("sksnn.plotting")  # importing needs no matplotlib
    with pytest.raises(ImportError, match=r"pip install \"sksnn\[plot\]\""):
        plotting.plot_raster(result)
    with pytest.raises(ImportError, match=r"sksnn\[plot\]"):
        plotting.plot_surrogates()
