"""NIR export and import: round trips, refused graphs, and other frameworks' importers."""

import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from nir_clients import (  # noqa: E402
    LAG_PER_LAYER,
    count_agreement,
    first_spike_agreement,
    hidden_subgraph,
    run_norse,
    run_snntorch,
)
from sklearn.datasets import make_friedman1  # noqa: E402

from sksnn import SpikingClassifier, SpikingRegressor  # noqa: E402
from sksnn.datasets import make_randman  # noqa: E402
from sksnn.io import NIRGraphError, from_nir, to_nir  # noqa: E402


@pytest.fixture(scope="module")
def randman():
    X, y = make_randman(500, n_classes=3, n_units=20, n_steps=50, random_state=0)
    return X[:300], y[:300], X[300:], y[300:]


def _fit(randman, **kwargs):
    X, y, _, _ = randman
    params = dict(hidden_layer_sizes=(32,), max_iter=5, random_state=0, noise_temperature=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpikingClassifier(**{**params, **kwargs}).fit(X, y)


@pytest.mark.parametrize("recurrent", [False, True])
def test_round_trip_through_a_file_predicts_identically(randman, recurrent, tmp_path):
    est = _fit(randman, hidden_layer_sizes=(24, 16), recurrent=recurrent)
    path = tmp_path / "model.nir"
    nir.write(path, to_nir(est))
    back = from_nir(path)
    _, _, X_te, _ = randman
    np.testing.assert_array_equal(back.predict_proba(X_te), est.predict_proba(X_te))
    np.testing.assert_array_equal(back.predict(X_te), est.predict(X_te))
    assert back.get_params()["recurrent"] is recurrent
    assert back.noise_temperature == 0.0


def test_round_trip_of_a_regressor_on_tabular_data():
    X, y = make_friedman1(200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SpikingRegressor((16,), max_iter=3, noise_temperature=0.0, random_state=0).fit(X, y)
    back = from_nir(to_nir(est))
    assert isinstance(back, SpikingRegressor)
    np.testing.assert_array_equal(back.predict(X), est.predict(X))


def test_labels_and_metadata_survive(randman):
    X, y, X_te, _ = randman
    names = np.array(["a", "b", "c"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SpikingClassifier((16,), max_iter=2, noise_temperature=0, random_state=0)
        est.fit(X, names)
    graph = to_nir(est)
    for key in ("dt", "sksnn_version", "escape_noise", "noise_temperature", "reset", "readout"):
        assert key in graph.metadata
    assert graph.metadata["readout"] == "max"
    np.testing.assert_array_equal(from_nir(graph).predict(X_te), est.predict(X_te))


def test_graph_layout_and_per_neuron_parameters(randman):
    est = _fit(randman, hidden_layer_sizes=(8, 6), recurrent=True)
    graph = to_nir(est, dt=1e-4)
    assert [type(graph.nodes[k]).__name__ for k, _ in graph.edges] == [
        "Input", "Affine", "NIRGraph", "Affine", "NIRGraph", "Affine", "CubaLI",
    ]  # fmt: skip
    sub = graph.nodes["lif0"]
    assert isinstance(sub.nodes["lif"], nir.CubaLIF)
    assert {("lif", "w_rec"), ("w_rec", "lif")} <= {tuple(e) for e in sub.edges}
    cell = sub.nodes["lif"]
    for field in ("tau_syn", "tau_mem", "r", "w_in", "v_threshold", "v_leak", "v_reset"):
        assert np.shape(getattr(cell, field)) == (8,)
    # one Euler step of dt multiplies by sksnn's decays, with gain 1 into I and into v
    a_syn, a_mem = np.exp(-est.dt / est.tau_syn), np.exp(-est.dt / est.tau_mem)
    np.testing.assert_allclose(1 - 1e-4 / cell.tau_syn, a_syn, rtol=1e-12)
    np.testing.assert_allclose(1 - 1e-4 / cell.tau_mem, a_mem, rtol=1e-12)
    np.testing.assert_allclose(cell.w_in * 1e-4 / cell.tau_syn, 1.0, rtol=1e-12)
    np.testing.assert_allclose(cell.r * 1e-4 / cell.tau_mem, 1.0, rtol=1e-12)


def test_euler_steps_of_the_graph_reproduce_the_network_between_resets(randman):
    """The exported parameters, stepped by forward Euler as NIR defines them, give sksnn's
    potentials two steps earlier, until the neuron's first spike (after which sksnn's reset
    also discards one step's input)."""
    est = _fit(randman)
    graph = to_nir(est, dt=1e-4)
    _, _, X_te, _ = randman
    X = X_te[:20].astype(np.float64)
    aff, cell = graph.nodes["affine0"], graph.nodes["lif0"]
    dt = 1e-4
    i = np.zeros((len(X), 32))
    v = np.zeros((len(X), 32))
    v_nir = []
    for t in range(X.shape[1]):
        x = X[:, t] @ aff.weight.T + aff.bias
        i = i + dt / cell.tau_syn * (cell.w_in * x - i)
        v = v + dt / cell.tau_mem * (cell.v_leak - v + cell.r * i)
        v_nir.append(v)
    v_nir = np.stack(v_nir, 1)
    sim = est.simulate(X_te[:20], record_membrane=True)
    u = sim.membranes[0][0].astype(np.float64)  # U[n] from which the spike at n is drawn
    fired = sim.spikes[0][0].any(1)
    first = np.where(fired, sim.spikes[0][0].argmax(1), u.shape[1])
    checked = 0
    for s in range(len(X)):
        for k in range(32):
            stop = min(first[s, k] + 1, u.shape[1])  # up to the first spike's potential
            n = stop - LAG_PER_LAYER
            if n > 0:
                np.testing.assert_allclose(
                    u[s, LAG_PER_LAYER:stop, k], v_nir[s, :n, k], rtol=1e-4, atol=1e-5
                )
                checked += n
    assert checked > 1000


def test_exporting_a_stochastic_network_warns(randman):
    est = _fit(randman, noise_temperature=0.1)
    with pytest.warns(UserWarning, match="no stochastic threshold"):
        graph = to_nir(est)
    assert graph.metadata["noise_temperature"] == 0.1
    assert from_nir(graph).noise_temperature == 0.0


def test_resets_nir_cannot_express_are_refused(randman):
    est = _fit(randman, reset="subtract")
    with pytest.raises(ValueError, match="reset='subtract'"):
        to_nir(est)


def test_unfitted_and_bad_dt(randman):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        to_nir(SpikingClassifier())
    with pytest.raises(ValueError, match="dt"):
        to_nir(_fit(randman), dt=-1.0)


def _graph(randman):
    return to_nir(_fit(randman, hidden_layer_sizes=(8,)))


def test_foreign_nodes_are_refused_by_name(randman):
    graph = _graph(randman)
    graph.nodes["lif0"] = nir.LIF(
        tau=np.ones(8), r=np.ones(8), v_leak=np.zeros(8), v_threshold=np.ones(8)
    )
    with pytest.raises(NIRGraphError, match=r"'lif0'.*LIF"):
        from_nir(graph)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g.edges.append(("input", "readout")), "successors"),
        (lambda g: g.edges.remove(("readout", "output")), "successors"),
        (lambda g: g.edges.append(("ghost", "input")), "'ghost'"),
        (lambda g: g.nodes.pop("input"), "'input' not in the graph"),
        (lambda g: g.nodes.update(extra=nir.Input(input_type=np.array([20]))), "one Input"),
        (lambda g: setattr(g.nodes["lif0"], "v_reset", np.ones(8)), r"'lif0'.*v_reset"),
        (lambda g: setattr(g.nodes["lif0"], "v_leak", np.ones(8)), r"'lif0'.*v_leak"),
        (
            lambda g: setattr(g.nodes["lif0"], "tau_mem", np.linspace(0.01, 0.02, 8)),
            r"'lif0'.*tau_mem",
        ),
        (lambda g: setattr(g.nodes["affine0"], "weight", np.ones((8, 3))), "shape"),
        (
            lambda g: setattr(g.nodes["readout"], "tau_syn", g.nodes["readout"].tau_syn * 2),
            r"'readout'.*time constants",
        ),
    ],
)
def test_malformed_graphs_are_refused(randman, edit, message):
    graph = _graph(randman)
    edit(graph)
    with pytest.raises(NIRGraphError, match=message):
        from_nir(graph)


def test_from_nir_needs_a_graph():
    with pytest.raises(NIRGraphError, match="NIRGraph"):
        from_nir(42)


# Other frameworks' importers on held-out data. The claim checked: the first spike of every
# hidden neuron, up to the constant lag, for at least 99 % of (sample, neuron) pairs; measured
# 100 % (benchmarks/results.md, NIR export). Spike counts differ after the first spike because
# sksnn's reset also drops the next step's input.
def test_snntorch_reproduces_first_spikes(randman):
    pytest.importorskip("snntorch")
    est = _fit(randman)
    _, _, X_te, _ = randman
    graph = hidden_subgraph(to_nir(est, dt=1e-4), 0)
    client = run_snntorch(graph, X_te)
    reference = est.simulate(X_te).spikes[0][0]
    assert reference.any(axis=1).mean() > 0.3  # enough neurons fire to compare
    assert first_spike_agreement(reference, client, LAG_PER_LAYER) >= 0.99
    assert first_spike_agreement(reference, client, 0) < 0.9  # the lag is real
    # after a spike the trains part (the reset drops one step's input in sksnn only); 42 % of
    # the neurons here fire more than once, and 0.70 of the counts agree
    assert count_agreement(reference, client, LAG_PER_LAYER) < 0.95


def test_norse_reproduces_first_spikes_at_its_own_dt(randman):
    pytest.importorskip("norse")
    est = _fit(randman)
    _, _, X_te, _ = randman
    graph = hidden_subgraph(to_nir(est, dt=1e-3), 0)
    client = run_norse(graph, X_te, dt=1e-3)
    reference = est.simulate(X_te).spikes[0][0]
    assert first_spike_agreement(reference, client, LAG_PER_LAYER) >= 0.99
