"""The stochastic spike, the counter-based noise and the reference LIF loop."""

import math

import pytest
import torch

from sksnn.engines.reference import lif_reference
from sksnn.neuron import LIFParameters, psp_kernel, spike, spike_probability
from sksnn.noise import CounterNoise, GeneratorNoise, sample_keys
from sksnn.readout import leaky_readout
from sksnn.surrogates import get_escape_noise, get_surrogate


@pytest.mark.parametrize("noise_name", ["sigmoid", "erf", "exponential"])
@pytest.mark.parametrize("temperature", [0.05, 0.2])
def test_monte_carlo_spike_mean_is_escape_probability(noise_name, temperature):
    """A single stochastic neuron: the mean of many sampled spikes is f((U - theta) / T)."""
    noise = get_escape_noise(noise_name)
    v = torch.linspace(-0.3, 0.3, 13)  # U - theta
    n = 200_000
    u = torch.rand(n, v.numel(), generator=torch.Generator().manual_seed(0))
    s = spike(v.expand(n, -1), u, temperature, noise, get_surrogate("matched", 1 / temperature))
    p = spike_probability(v, temperature, noise)
    # binomial standard error sqrt(p(1-p)/n) <= 0.0012; 5 standard errors -> 0.0056
    tol = 5 * torch.sqrt(p * (1 - p) / n) + 1e-6
    assert bool(((s.mean(dim=0) - p).abs() <= tol).all())


def test_zero_temperature_is_heaviside_and_needs_no_noise():
    v = torch.tensor([-0.5, -1e-6, 0.0, 1e-6, 0.5])
    s = spike(v, None, 0.0, get_escape_noise("sigmoid"), get_surrogate("sigmoid", 10.0))
    assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_stochastic_spike_without_noise_is_an_error():
    with pytest.raises(ValueError, match="uniform noise"):
        spike(torch.zeros(3), None, 0.1, get_escape_noise("sigmoid"), get_surrogate("sigmoid"))


@pytest.mark.parametrize("name", ["matched", "superspike", "atan", "boxcar"])
def test_backward_multiplies_by_surrogate(name):
    surrogate = get_surrogate(name, 4.0)
    v = torch.linspace(-1, 1, 9, requires_grad=True)
    upstream = torch.arange(9.0)
    u = torch.rand(9, generator=torch.Generator().manual_seed(1))
    s = spike(v, u, 0.25, get_escape_noise("sigmoid"), surrogate)
    (grad,) = torch.autograd.grad(s, v, upstream)
    torch.testing.assert_close(grad, upstream * surrogate.derivative(v.detach()))


def test_counter_noise_depends_on_sample_content_only():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    full = CounterNoise(7, sample_keys(x)).uniform(1, (10, 50, 4), torch.device("cpu"))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))[:20]
    part = CounterNoise(7, sample_keys(x[perm])).uniform(1, (10, 20, 4), torch.device("cpu"))
    assert torch.equal(part, full[:, perm])
    # another seed, trial or stream gives other numbers
    for other in (
        CounterNoise(8, sample_keys(x)).uniform(1, (10, 50, 4), torch.device("cpu")),
        CounterNoise(7, sample_keys(x), trial=1).uniform(1, (10, 50, 4), torch.device("cpu")),
        CounterNoise(7, sample_keys(x)).uniform(2, (10, 50, 4), torch.device("cpu")),
    ):
        assert (other != full).float().mean() > 0.99


def test_counter_noise_is_uniform_and_uncorrelated():
    keys = sample_keys(torch.arange(2000.0).reshape(-1, 1))
    u = CounterNoise(0, keys).uniform(1, (25, 2000, 20), torch.device("cpu")).double()
    n = u.numel()  # 1e6 draws: mean se 2.9e-4, variance se 3e-4 (5-sigma tolerances below)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    hist = torch.histc(u, bins=10, min=0, max=1) / n
    assert bool(((hist - 0.1).abs() < 5 * math.sqrt(0.09 / n)).all())
    # neighbouring steps, units and samples are uncorrelated (se of a correlation ~ 1/sqrt(n))
    for a, b in [(u[1:], u[:-1]), (u[:, 1:], u[:, :-1]), (u[..., 1:], u[..., :-1])]:
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(r) < 5 / math.sqrt(a.numel())


def test_generator_noise_is_reproducible():
    a = GeneratorNoise(3).uniform(1, (2, 3, 4), torch.device("cpu"))
    b = GeneratorNoise(3).uniform(1, (2, 3, 4), torch.device("cpu"))
    assert torch.equal(a, b)


def test_generator_noise_is_fresh_per_call_and_per_sample():
    """Training noise: every call and every position in the batch draws other numbers (no
    two samples of a batch share noise, nor two batches), and the numbers are uniform."""
    noise = GeneratorNoise(3)
    first = noise.uniform(1, (30, 64, 50), torch.device("cpu"))
    second = noise.uniform(1, (30, 64, 50), torch.device("cpu"))
    assert (first != second).float().mean() > 0.99
    # two samples of one batch: different streams even for the same input
    assert (first[:, 0] != first[:, 1]).float().mean() > 0.99
    u = torch.cat([first.flatten(), second.flatten()]).double()
    n = u.numel()  # 192,000 draws; 5-sigma tolerances on the mean and the variance
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    # the first rows do not depend on how many samples the batch has
    small = GeneratorNoise(3).uniform(1, (30, 10, 50), torch.device("cpu"))
    assert torch.equal(small, first[:, :10])


def _lif_by_hand(drive, params):
    """Scalar-by-scalar implementation of docs/user_guide/model.md for one deterministic neuron."""
    u = i = 0.0
    spikes = []
    for p in drive:
        s = 1.0 if u > params.threshold else 0.0
        spikes.append(s)
        u_next = params.alpha_mem * u + (1 - params.alpha_mem) * i
        if params.reset == "zero":
            u_next *= 1 - s
        elif params.reset == "subtract":
            u_next -= params.threshold * s
        i = params.alpha_syn * i + p
        u = u_next
    return spikes


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_reference_loop_matches_scalar_dynamics(reset):
    params = LIFParameters(reset=reset)
    drive = [0.0] + [0.6] * 30 + [0.0] * 20
    out, _ = lif_reference(torch.tensor(drive).reshape(-1, 1, 1), params)
    expected = _lif_by_hand(drive, params)
    assert out.flatten().tolist() == expected
    assert sum(expected) >= 2  # the drive is strong enough to make the neuron fire repeatedly


def test_readout_is_the_membrane_equation_without_spikes():
    params = LIFParameters()
    drive = torch.randn(40, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fast = leaky_readout(drive, params.alpha_syn, params.alpha_mem)
    u = torch.zeros(3, 2, dtype=torch.float64)
    i = torch.zeros(3, 2, dtype=torch.float64)
    slow = []
    for n in range(40):
        u, i = params.alpha_mem * u + (1 - params.alpha_mem) * i, params.alpha_syn * i + drive[n]
        slow.append(u)
    torch.testing.assert_close(fast, torch.stack(slow))
    h = psp_kernel(params.alpha_syn, params.alpha_mem, 2000)
    assert h[0] == 0 and h.sum().item() == pytest.approx(1 / (1 - params.alpha_syn), rel=1e-9)
