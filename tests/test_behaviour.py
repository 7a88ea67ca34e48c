"""Parameters do what docs/user_guide/model.md says they do, and the package keeps its
structure: one place resolves engines, the fused kernel stays behind the engine layer, io reads
no private estimator attribute, pickle and io restore the same estimator."""

from __future__ import annotations

import ast
import io
import math
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import sksnn
import sksnn.io as sio
from sksnn import SpikingClassifier, SpikingRegressor
from sksnn._state import fitted_state
from sksnn.engines import get_engine
from sksnn.neuron import LIFParameters
from sksnn.surrogates import get_surrogate

PACKAGE = Path(sksnn.__file__).parent


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


# ------------------------------------------------------------------------------------------
# Parameters change behaviour as documented
# ------------------------------------------------------------------------------------------
def test_activity_reg_lowers_firing_rates(digits):
    X, y = digits
    kwargs = dict(hidden_layer_sizes=(32,), max_iter=5, random_state=0)
    free = SpikingClassifier(**kwargs).fit(X, y)
    bounded = SpikingClassifier(**kwargs, activity_reg=1.0).fit(X, y)
    # measured 0.0178 -> 0.0072 spikes per neuron and step; a penalty that did nothing would
    # leave the rates within a few per cent of each other
    assert bounded.firing_rates_[0] < 0.7 * free.firing_rates_[0]


@pytest.mark.parametrize("mode, reduce", [("max", np.max), ("mean", np.mean), ("last", None)])
def test_each_readout_mode_reduces_the_readout_potential_as_named(digits, mode, reduce):
    X, y = digits
    clf = SpikingClassifier((16,), n_steps=20, max_iter=2, random_state=0, readout=mode)
    clf.fit(X, y)
    potential = clf.simulate(X[:20]).output[0].astype(np.float64)  # (samples, steps, classes)
    logits = potential[:, -1] if reduce is None else reduce(potential, axis=1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        clf.predict_proba(X[:20]), p / p.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6
    )


def test_readout_modes_give_different_outputs(digits):
    X, y = digits
    clf = SpikingClassifier((16,), n_steps=20, max_iter=2, random_state=0).fit(X, y)
    probas = [clf.set_params(readout=m).predict_proba(X[:50]) for m in ("max", "mean", "last")]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert np.abs(probas[a] - probas[b]).max() > 1e-3


def _single_neuron(reset: str, drive: float = 0.6, n_steps: int = 40):
    """Membrane and spikes of one deterministic neuron under a constant current."""
    lif = LIFParameters(reset=reset, detach_reset=True)
    current = torch.full((n_steps, 1, 1), drive, dtype=torch.float64)
    spikes, membrane = get_engine("reference").run_currents(current, lif, None, None, True)
    return lif, spikes[:, 0, 0].numpy(), membrane[:, 0, 0].numpy()


def _free_step(lif, u, i, p):
    return lif.alpha_mem * u + (1 - lif.alpha_mem) * i, lif.alpha_syn * i + p


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_reset_modes_follow_their_equations(reset):
    lif, s, u = _single_neuron(reset)
    assert s.sum() >= 2  # the drive makes it fire repeatedly
    i = 0.0
    expected = [0.0]
    for n in range(len(u) - 1):
        a, i = _free_step(lif, expected[-1], i, 0.6)
        if reset == "zero":
            a *= 1 - s[n]
        elif reset == "subtract":
            a -= lif.threshold * s[n]
        expected.append(a)
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-12)


def test_reset_modes_differ():
    (_, s0, u0), (_, s1, u1), (_, s2, u2) = (
        _single_neuron(r) for r in ("zero", "subtract", "none")
    )
    assert not np.array_equal(u0, u1) and not np.array_equal(u1, u2)
    assert s2.sum() > s1.sum() >= s0.sum()  # no reset fires most


@pytest.mark.parametrize("tau_mem, tau_syn, dt", [(20e-3, 10e-3, 2e-3), (40e-3, 5e-3, 1e-3)])
def test_time_constants_set_the_decays_and_the_membrane_response(tau_mem, tau_syn, dt):
    # One input spike into one neuron that cannot fire: the membrane is the PSP kernel of
    # docs/user_guide/model.md with decays exp(-dt / tau).
    reg = SpikingRegressor((1,), max_iter=1, random_state=0, threshold=1e6, noise_temperature=0,
                           tau_mem=tau_mem, tau_syn=tau_syn, dt=dt)  # fmt: skip
    X = np.zeros((4, 30, 1), dtype=np.float32)
    X[:, 0, 0] = 1.0
    reg.fit(X, np.arange(4.0))
    lif = reg.module_.lif
    assert lif.alpha_mem == pytest.approx(math.exp(-dt / tau_mem))
    assert lif.alpha_syn == pytest.approx(math.exp(-dt / tau_syn))
    w = float(reg.module_.layers[0].weight)
    u = reg.simulate(X[:1], record_membrane=True).membranes[0][0, 0, :, 0]
    expected, m, i = [], 0.0, 0.0
    for n in range(30):
        expected.append(m)
        m, i = _free_step(lif, m, i, w if n == 0 else 0.0)
    np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-6 * abs(w))


# ------------------------------------------------------------------------------------------
# Engine paths
# ------------------------------------------------------------------------------------------
def test_every_temperature_reuses_the_spike_probability_in_the_fused_engine():
    # 1 / T is rarely exact: T = 0.09, 0.18, 0.36, ... have beta * T != 1 in floating point,
    # and must take the same path as T = 0.1
    for k in range(1, 101):
        T = k / 100
        lif = SpikingClassifier(noise_temperature=T)._lif_parameters()
        assert lif.logistic_steepness == pytest.approx(1 / T)
        assert lif.surrogate_reuses_probability, T
    mismatched = LIFParameters(temperature=0.1, surrogate=get_surrogate("matched", 5.0))
    assert not mismatched.surrogate_reuses_probability
    erf = LIFParameters(temperature=0.1, surrogate=get_surrogate("matched", 10.0, "erf"))
    assert erf.logistic_steepness is None


def test_fused_gradients_at_an_inexact_temperature_match_the_reference():
    T = 0.09
    lif = LIFParameters(temperature=T, surrogate=get_surrogate("matched", 1 / T))
    g = torch.Generator().manual_seed(0)
    drive = (torch.randn(30, 8, 5, generator=g, dtype=torch.float64) * 0.5 + 0.4).requires_grad_()
    uniform = torch.rand(30, 8, 5, generator=g, dtype=torch.float64)
    weights = torch.randn(30, 8, 5, generator=g, dtype=torch.float64)
    grads = []
    for name in ("reference", "fused"):
        s, _ = get_engine(name).run_currents(drive, lif, uniform, None, False)
        grads.append(torch.autograd.grad((s * weights).sum(), drive)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Structure
# ------------------------------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
            names.update(f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_fused_kernel_is_imported_by_the_engine_layer_only():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "engines":
            continue
        assert not any("_fused" in name for name in _imports(path)), path


def test_engines_are_resolved_in_one_place_and_kernels_do_not_check_types():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"type\([^()]*\) is [A-Z]", text), path
        if path.name != "__init__.py" or path.parent.name != "engines":
            assert "_REGISTRY[" not in text, path


def test_io_reads_no_private_estimator_attribute():
    text = (PACKAGE / "io.py").read_text()
    assert not re.search(r"estimator\._(?!_)", text)  # dunders (__getstate__) are public


@pytest.mark.parametrize(
    "Est, kwargs, three_d",
    [
        (SpikingClassifier, dict(recurrent=True, early_stopping=True), False),
        (SpikingRegressor, dict(hidden_layer_sizes=(6, 5), predict_trials=3), True),
    ],
)
def test_pickle_and_io_restore_the_same_estimator(Est, kwargs, three_d):
    rng = np.random.RandomState(0)
    X = (rng.rand(60, 8, 3) < 0.3).astype(np.float32) if three_d else rng.randn(60, 4)
    y = np.arange(60) % 3 if Est is SpikingClassifier else rng.randn(60, 2)
    est = Est(**{"hidden_layer_sizes": (8,), "n_steps": 6, "max_iter": 3, "random_state": 0,
                 **kwargs}).fit(X, y)  # fmt: skip
    pickled = pickle.loads(pickle.dumps(est))
    buffer = io.BytesIO()
    sio.save(est, buffer)
    buffer.seek(0)
    loaded = sio.load(buffer)
    a, b = fitted_state(pickled), fitted_state(loaded)
    assert set(a) == set(b) == set(fitted_state(est))
    np.testing.assert_array_equal(pickled.predict(X), loaded.predict(X))
    sa, sb = pickled.simulate(X[:5], n_trials=2), loaded.simulate(X[:5], n_trials=2)
    np.testing.assert_array_equal(sa.output, sb.output)
    # and both continue training identically
    pickled.partial_fit(X, y)
    loaded.partial_fit(X, y)
    for p, q in zip(pickled.module_.parameters(), loaded.module_.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_hidden_bias_is_a_constant_input_current(engine):
    """A hidden layer's input current is ``W S_in[n] + b`` every step
    (docs/user_guide/model.md): its membrane follows that recursion, and a bias alone makes a
    silent input fire."""
    from sksnn.engines import LayerInput
    from sksnn.layers import LIFLayer

    lif = LIFParameters(reset="none")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(30, 2, 4, generator=g) < 0.2).float()
    x[:, 1] = 0.0  # the second sample gets no input at all
    layer = LIFLayer(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 4, generator=g) * 0.5)
        layer.bias.copy_(torch.tensor([0.3, -0.2, 0.0]))
    spikes, membrane = layer(LayerInput(x, binary=True), lif, get_engine(engine), None, 1, True)
    drive = (x @ layer.weight.T + layer.bias).detach().double().numpy()
    u = np.zeros((2, 3))
    i = np.zeros((2, 3))
    expected = []
    for n in range(30):
        expected.append(u)
        u, i = _free_step(lif, u, i, drive[n])
    np.testing.assert_allclose(membrane.detach().numpy(), np.stack(expected), rtol=1e-5, atol=1e-6)
    silent = spikes[:, 1].detach()
    assert silent[:, 0].sum() > 0  # the positive bias drives it past the threshold
    assert silent[:, 1:].sum() == 0  # a negative or zero bias leaves it silent
