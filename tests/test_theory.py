"""Tests of sksnn.theory: the equalities and inequalities of Gygax & Zenke (2025) on our code."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from sksnn.neuron import LIFParameters
from sksnn.surrogates import Sigmoid, get_escape_noise, get_surrogate
from sksnn.theory import (
    bias_study,
    cosine_similarity,
    cross_mode_scores,
    enumerate_gradients,
    estimator_fano_factors,
    expected_loss,
    fano_factors,
    find_sign_flip,
    finite_difference_gradient,
    loop_integral,
    make_small_network,
    network_gradient_field,
    neuron_expected_spikes,
    neuron_surrogate_gradient,
    random_plane,
    relative_error,
    sample_gradients,
    sigmoid_net_gradient,
    sigmoid_net_output,
    single_neuron_gradients,
    with_noise_temperature,
)

# float64 round-off: every computation here is a few hundred flops deep, so agreement to
# 1e-12 relative leaves a margin of about 1e3 over the observed ~1e-15 and still fails on any
# real discrepancy (a wrong kernel or surrogate gives errors of order 1e-1).
ROUND_OFF = 1e-12


def _inputs(seed: int = 0, n_steps: int = 20, n_inputs: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, 1.0, size=(n_steps, n_inputs))


WEIGHTS = np.array([1.5, -0.5, 2.0])


def _lif(temperature: float, noise: str = "sigmoid", beta: float | None = None, **kw):
    beta = 1.0 / temperature if beta is None else beta
    return LIFParameters(
        temperature=temperature,
        escape_noise=get_escape_noise(noise),
        surrogate=get_surrogate("matched", beta, noise),
        **kw,
    )


def _active_chain(temperature: float = 0.25):
    """Input -> stochastic neuron -> stochastic neuron -> readout, firing moderately."""
    net = make_small_network(
        n_inputs=2, hidden_layer_sizes=(1, 1), n_steps=6, temperature=temperature
    )
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[1.2, 0.8]]))
        net.layers[1].weight.copy_(torch.tensor([[3.0]]))
        net.readout.weight.fill_(2.0)
    return net, np.array([[1.0, 0.5]]), np.array([[1.0]])


# --------------------------------------------------------------------------------------------
# 1. Single neuron
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["sigmoid", "erf", "exponential"])
@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_matched_surrogate_is_the_exact_single_neuron_gradient(noise, temperature):
    lif = _lif(temperature, noise, reset="none")
    exact = neuron_expected_spikes(WEIGHTS, _inputs(), lif).gradient
    surrogate = neuron_surrogate_gradient(WEIGHTS, _inputs(), lif)
    assert np.abs(exact).max() > 1e-6  # the neuron is in a regime with a gradient at all
    np.testing.assert_allclose(surrogate, exact, rtol=ROUND_OFF, atol=ROUND_OFF * 1e-3)


def test_closed_form_expectation_matches_finite_differences():
    # The closed form is computed from the PSP kernel, independently of the LIF loop; central
    # differences with eps = 1e-6 are accurate to ~eps**2 * f''' + 1e-16 / eps ~ 1e-10.
    lif = _lif(0.2, reset="none")
    res = neuron_expected_spikes(WEIGHTS, _inputs(), lif)
    eps = 1e-6
    for i in range(len(WEIGHTS)):
        step = np.eye(len(WEIGHTS))[i] * eps
        up = neuron_expected_spikes(WEIGHTS + step, _inputs(), lif).probability
        down = neuron_expected_spikes(WEIGHTS - step, _inputs(), lif).probability
        np.testing.assert_allclose((up - down) / (2 * eps), res.gradient[:, i], atol=1e-8)


def test_closed_form_membrane_matches_the_lif_loop():
    from sksnn.engines.reference import lif_reference

    lif = _lif(0.2, reset="none")
    drive = torch.as_tensor(_inputs() @ WEIGHTS).reshape(-1, 1, 1)
    _, membrane = lif_reference(drive, replace(lif, temperature=0.0), record_membrane=True)
    res = neuron_expected_spikes(WEIGHTS, _inputs(), lif)
    np.testing.assert_allclose(res.membrane, membrane.reshape(-1).numpy(), rtol=ROUND_OFF)


@pytest.mark.parametrize(
    "surrogate",
    [
        get_surrogate("matched", 2 / 0.2),  # right shape, half the temperature
        get_surrogate("matched", 0.5 / 0.2),  # right shape, twice the temperature
        get_surrogate("superspike", 1 / 0.2),
        get_surrogate("triangle", 1 / 0.2),
        get_surrogate("atan", 1 / 0.2),
    ],
)
def test_mismatched_surrogates_are_not_the_single_neuron_gradient(surrogate):
    lif = _lif(0.2, reset="none")
    exact = neuron_expected_spikes(WEIGHTS, _inputs(), lif).gradient
    wrong = neuron_surrogate_gradient(WEIGHTS, _inputs(), replace(lif, surrogate=surrogate))
    # Measured relative errors are 0.3-0.9 for these shapes; 0.1 is far above round-off and
    # far below what any of them gives.
    assert relative_error(wrong, exact) > 0.1


def test_gaussian_surrogate_is_the_matched_surrogate_of_erf_noise():
    lif = _lif(0.2, "erf", reset="none")
    exact = neuron_expected_spikes(WEIGHTS, _inputs(), lif).gradient
    gauss = replace(lif, surrogate=get_surrogate("gaussian", 1 / 0.2))
    np.testing.assert_allclose(
        neuron_surrogate_gradient(WEIGHTS, _inputs(), gauss), exact, rtol=ROUND_OFF
    )


def test_enumeration_reproduces_the_closed_form_without_reset():
    lif = _lif(0.2, reset="none")
    x = _inputs(n_steps=10)
    closed = neuron_expected_spikes(WEIGHTS, x, lif)
    cmp = single_neuron_gradients(WEIGHTS, x, lif)
    assert cmp.n_paths == 2**10
    assert cmp.expected_loss == pytest.approx(closed.probability.sum(), rel=ROUND_OFF)
    expected = closed.gradient.sum(0)
    np.testing.assert_allclose(cmp.exact["layers.0.weight"][0], expected, rtol=1e-10)
    np.testing.assert_allclose(cmp.surrogate["layers.0.weight"][0], expected, rtol=1e-10)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_reset_makes_the_matched_single_neuron_gradient_biased(reset):
    # Reset couples the steps: a spike lowers later firing probabilities, an effect the
    # per-step surrogate chain does not see. Measured relative errors at T = 0.2: 1.3 (zero)
    # and 0.65 (subtract); without reset the same setting gives 1e-15.
    lif = _lif(0.2, reset=reset)
    cmp = single_neuron_gradients(WEIGHTS, _inputs(n_steps=10), lif)
    assert cmp.relative_error() > 0.1


# --------------------------------------------------------------------------------------------
# 2. Multilayer networks
# --------------------------------------------------------------------------------------------
def test_enumerated_gradient_equals_finite_differences():
    net, X, y = _active_chain()
    cmp = enumerate_gradients(net, X, y)
    fd = finite_difference_gradient(net, X, y)
    # Central differences at eps 1e-5: truncation ~1e-10, round-off ~1e-11.
    for name, g in fd.items():
        np.testing.assert_allclose(cmp.exact[name], g, rtol=1e-6, atol=1e-9)
    assert cmp.expected_loss == pytest.approx(expected_loss(net, X, y), rel=ROUND_OFF)


def test_expected_surrogate_gradient_is_the_mean_of_sampled_ones():
    net, X, y = _active_chain()
    exact = enumerate_gradients(net, X, y)
    sampled = sample_gradients(net, X, y, n_paths=1 << 14, n_batches=16, random_state=1)
    # Both Monte-Carlo means are unbiased; with 16 batches the standardised error is t(15)
    # distributed, P(|t| > 5) ~ 2e-4 per entry, and the seed is fixed.
    for name in exact.exact:
        for mc, err, ref in (
            (sampled.exact[name], sampled.exact_stderr[name], exact.exact[name]),
            (sampled.surrogate[name], sampled.surrogate_stderr[name], exact.surrogate[name]),
        ):
            assert np.all(np.abs(mc - ref) <= 5 * err + 1e-12), name


def test_two_stochastic_layers_bias_the_matched_surrogate_gradient():
    net, X, y = _active_chain()
    cmp = enumerate_gradients(net, X, y)
    # Measured: cosine 0.89, relative error 0.54. A biased but aligned estimate.
    assert cmp.relative_error() > 0.1
    assert 0.5 < cmp.cosine() < 0.99
    # The readout weights see no spike function: both gradients agree there exactly.
    np.testing.assert_allclose(
        cmp.surrogate["readout.weight"], cmp.exact["readout.weight"], rtol=ROUND_OFF
    )


def test_bias_study_matched_vs_superspike_on_one_neuron():
    net = make_small_network(n_inputs=3, hidden_layer_sizes=(1,), n_steps=8, reset="none")
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.from_numpy(WEIGHTS).reshape(1, -1))
    x = _inputs(n_steps=8)[None]
    rows = bias_study(
        net, x, loss="spike_count", temperatures=(0.1, 0.5), surrogates=("matched", "superspike")
    )
    assert [(r.temperature, r.surrogate) for r in rows] == [
        (0.1, "matched"),
        (0.1, "superspike"),
        (0.5, "matched"),
        (0.5, "superspike"),
    ]
    for r in rows:
        if r.surrogate == "matched":
            assert r.relative_error < ROUND_OFF and r.beta == pytest.approx(1 / r.temperature)
        else:
            assert r.relative_error > 0.1  # measured 0.3-0.9, see the single-neuron test


def test_deterministic_network_has_zero_exact_hidden_gradient():
    net, X, y = _active_chain()
    cmp = enumerate_gradients(net, X, y, temperature=0.0)
    assert cmp.n_paths == 1
    exact, surrogate = cmp.vectors()
    assert np.all(exact == 0) and np.abs(surrogate).max() > 1e-3


def test_enumeration_refuses_large_networks_and_rate_encoding():
    net = make_small_network(hidden_layer_sizes=(4, 4), n_steps=5)
    with pytest.raises(ValueError, match="max_bits"):
        enumerate_gradients(net, [[1.0, 0.0, 0.0]], [[0.0]])
    net.encoding = "rate"
    with pytest.raises(ValueError, match="deterministic input encoding"):
        expected_loss(net, [[1.0, 0.0, 0.0]], [[0.0]])


def test_enumeration_leaves_the_module_untouched():
    net, X, y = _active_chain()
    before = copy.deepcopy(net.state_dict())
    enumerate_gradients(net, X, y, temperature=0.5)
    assert net.lif.temperature == 0.25
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# --------------------------------------------------------------------------------------------
# 3. Non-conservativeness
# --------------------------------------------------------------------------------------------
def test_loop_integral_of_the_true_sigmoid_net_gradient_vanishes():
    d1, d2 = random_plane(5, random_state=0)
    loop = loop_integral(lambda p: sigmoid_net_gradient(p, 1.0, 5.0), np.zeros(5), d1, d2, 1.8)
    # A smooth periodic integrand: the equal-weight rule is exact to round-off (~1e-15).
    assert loop.total_variation > 1.0
    assert abs(loop.integral) < 1e-12


@pytest.mark.parametrize("beta_sg", [1.0, 5.0, 20.0])
def test_loop_integral_of_the_surrogate_sigmoid_net_gradient_does_not(beta_sg):
    # The authors' setting: step-function forward pass, sigmoid' surrogates, radius 1.8.
    d1, d2 = random_plane(5, random_state=0)
    field = lambda p: sigmoid_net_gradient(p, 1.0, math.inf, Sigmoid(beta_sg))  # noqa: E731
    loop = loop_integral(field, np.zeros(5), d1, d2, 1.8, n_points=4000)
    # Measured |integral| / total variation: 0.59, 0.18, 0.24 (stable to 1e-2 between 1000
    # and 16000 points, the field having jumps); 0.05 leaves a wide margin.
    assert abs(loop.relative) > 0.05


def test_loop_integrals_in_a_spiking_network():
    net, X, y = _active_chain()
    params = ("layers.0.weight", "layers.1.weight")
    center = np.array([1.2, 0.8, 3.0])
    d1, d2 = random_plane(3, random_state=0)
    field = network_gradient_field(net, X, y, params=params)
    loops = loop_integral(field, center, d1, d2, radius=1.0, n_points=24)
    # The exact gradient of the (smooth) expected loss: zero up to round-off (~1e-15).
    assert abs(loops["exact"].relative) < 1e-10
    # The expected matched-surrogate gradient: measured |relative| 0.30.
    assert abs(loops["surrogate"].relative) > 0.05


def test_sign_flip_is_real():
    flip = find_sign_flip(Sigmoid(beta=1.0), forward_beta=10.0, n_candidates=2000)
    assert flip is not None
    i = flip.index
    # The true derivative checked by central differences of the output itself, not autograd.
    eps = 1e-6
    step = np.eye(5)[i] * eps
    fd = (
        float(sigmoid_net_output(flip.weights + step, forward_beta=10.0))
        - float(sigmoid_net_output(flip.weights - step, forward_beta=10.0))
    ) / (2 * eps)
    assert fd == pytest.approx(flip.true_gradient[i], rel=1e-5)
    assert np.sign(fd) != np.sign(flip.surrogate_gradient[i])
    assert abs(flip.surrogate_gradient[i]) > 1e-3 * np.linalg.norm(flip.surrogate_gradient)


def test_cosine_and_relative_error():
    assert cosine_similarity([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert cosine_similarity([1.0, 1.0], [2.0, 2.0]) == pytest.approx(1.0)
    assert math.isnan(cosine_similarity([0.0], [1.0]))
    assert relative_error([3.0, 4.0], [0.0, 0.0]) == math.inf
    assert relative_error([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# 4. Variability
# --------------------------------------------------------------------------------------------
def test_fano_factor_of_bernoulli_spikes_is_one_minus_p():
    rng = np.random.default_rng(0)
    p = np.array([0.05, 0.3])
    spikes = rng.random((4000, 40, 2)) < p
    fano = fano_factors(spikes, window=10)
    assert fano.shape == (4, 2)
    # Binomial(10, p) counts: Fano = 1 - p. The estimate's s.d. is about
    # (1 - p) sqrt(2 / 4000) ~ 0.02; 0.07 is more than three of them.
    np.testing.assert_allclose(fano, np.broadcast_to(1 - p, fano.shape), atol=0.07)


def test_fano_factor_small_case_and_edge_cases():
    # Trials count 0, 1, 2 spikes in the window: mean 1, unbiased variance 1.
    spikes = np.zeros((3, 4, 2))
    spikes[1, 0, 0] = 1
    spikes[2, :2, 0] = 1
    fano = fano_factors(spikes, window=4)
    assert fano[0, 0] == pytest.approx(1.0)
    assert np.isnan(fano[0, 1])  # never fires
    sliding = fano_factors(spikes, window=2, stride=1)
    assert sliding.shape == (3, 2)
    with pytest.raises(ValueError, match="window"):
        fano_factors(spikes, window=5)


def test_estimator_variability_and_other_mode():
    from sklearn.datasets import make_classification

    from sksnn import SpikingClassifier

    X, y = make_classification(n_samples=100, n_features=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SpikingClassifier(
            (16,), n_steps=20, max_iter=3, noise_temperature=0.3, random_state=0
        ).fit(X, y)
    proba = clf.predict_proba(X)

    fano = estimator_fano_factors(clf, X[:2], n_trials=50, window=5)
    assert fano.shape == (2, 4, 16)
    # Escape noise at T = 0.3: measured mean Fano factor 0.84; a deterministic network gives 0.
    assert np.nanmean(fano) > 0.3

    det = with_noise_temperature(clf, 0.0)
    assert det.module_.lif.temperature == 0.0 and det.noise_temperature == 0.0
    fano_det = estimator_fano_factors(det, X[:2], n_trials=5, window=5)
    assert np.nanmax(fano_det) == 0.0  # deterministic: identical trials
    # The original is untouched, and set_params alone would not have changed the network.
    assert clf.module_.lif.temperature == 0.3
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    stale = copy.deepcopy(clf).set_params(noise_temperature=0.0)
    np.testing.assert_array_equal(stale.predict_proba(X), proba)
    assert not np.array_equal(det.predict_proba(X), proba)

    scores = cross_mode_scores(clf, X, y, temperatures=(0.0, 0.3))
    assert set(scores) == {0.0, 0.3}
    assert scores[0.3] == pytest.approx(clf.score(X, y))
    assert scores[0.0] == pytest.approx(det.score(X, y))
