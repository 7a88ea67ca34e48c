"""Surrogate derivatives and escape-noise functions: formulas, matching, immutability."""

import math
import pickle
from dataclasses import FrozenInstanceError, dataclass
from typing import ClassVar

import pytest
import torch

from sksnn.surrogates import (
    ESCAPE_NOISE,
    SURROGATES,
    Exponential,
    ExponentialNoise,
    Matched,
    Surrogate,
    get_escape_noise,
    get_surrogate,
    register_surrogate,
)

X = torch.linspace(-3.0, 3.0, 2001, dtype=torch.float64)
NAMED = sorted(SURROGATES)


def _central_difference(fn, x, h=1e-5):
    return (fn(x + h) - fn(x - h)) / (2 * h)


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("beta", [1.0, 5.0, 20.0])
def test_derivative_is_derivative_of_primitive(name, beta):
    surrogate = get_surrogate(name, beta)
    # Boxcar and triangle have kinks; compare away from them (float64 central differences
    # with h=1e-5 are accurate to ~1e-9 on smooth pieces).
    kinks = torch.tensor([-1.0 / beta, 0.0, 1.0 / beta], dtype=torch.float64)
    smooth = (X.reshape(-1, 1) - kinks).abs().min(dim=1).values > 1e-3
    fd = _central_difference(surrogate.primitive, X)
    torch.testing.assert_close(surrogate.derivative(X)[smooth], fd[smooth], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMED if n != "superspike"])
def test_surrogates_integrate_to_one(name):
    # All but superspike are densities. Their primitive (checked above to be an
    # antiderivative) goes from 0 to 1; atan has the heaviest tail, 1/(pi^2 beta |x|) ~ 5e-9
    # at |x| = 1e7.
    s = get_surrogate(name, 2.0)
    ends = s.primitive(torch.tensor([-1e7, 1e7], dtype=torch.float64))
    assert ends[0].item() == pytest.approx(0.0, abs=1e-7)
    assert ends[1].item() == pytest.approx(1.0, abs=1e-7)
    # and a plain Riemann sum over [-25, 25] agrees with the primitive's difference there; its
    # error is at most step (1e-4) x total jump (boxcar: 2 jumps of beta/2 = 1).
    x = torch.linspace(-25.0, 25.0, 500_001, dtype=torch.float64)
    riemann = (s.derivative(x).sum() * (x[1] - x[0])).item()
    inside = (s.primitive(x[-1:]) - s.primitive(x[:1])).item()
    assert riemann == pytest.approx(inside, abs=3e-4)


def test_superspike_integrates_to_two_over_beta():
    s = get_surrogate("superspike", 4.0)
    # primitive is x / (beta|x| + 1): its limits give the integral 2 / beta exactly.
    big = torch.tensor([1e12, -1e12], dtype=torch.float64)
    assert (s.primitive(big)[0] - s.primitive(big)[1]).item() == pytest.approx(0.5, rel=1e-9)
    assert s.derivative(torch.zeros(1)).item() == 1.0


@pytest.mark.parametrize(
    "name, formula",
    [
        ("superspike", lambda x, b: 1 / (b * abs(x) + 1) ** 2),
        ("sigmoid", lambda x, b: b / (1 + math.exp(-b * x)) * (1 - 1 / (1 + math.exp(-b * x)))),
        ("atan", lambda x, b: (b / 2) / (1 + (math.pi * b * x / 2) ** 2)),
        ("triangle", lambda x, b: b * max(0.0, 1 - b * abs(x))),
        ("gaussian", lambda x, b: b / math.sqrt(2 * math.pi) * math.exp(-((b * x) ** 2) / 2)),
        ("exponential", lambda x, b: (b / 2) * math.exp(-b * abs(x))),
        ("boxcar", lambda x, b: (b / 2) * (abs(x) < 1 / b)),
    ],
)
def test_literature_formulas(name, formula):
    # The formulas of sksnn/surrogates.py, evaluated pointwise in plain Python.
    beta = 3.0
    xs = [-1.0, -0.31, -0.1, 0.0, 0.05, 0.2, 0.7]
    got = get_surrogate(name, beta).derivative(torch.tensor(xs, dtype=torch.float64))
    expected = torch.tensor([formula(x, beta) for x in xs], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("noise_name", sorted(ESCAPE_NOISE))
def test_escape_noise_pdf_is_derivative_of_cdf(noise_name):
    noise = get_escape_noise(noise_name)
    cdf = noise.cdf(torch.linspace(-40, 40, 101, dtype=torch.float64))
    assert cdf[0] < 1e-6 and cdf[-1] > 1 - 1e-6 and bool((cdf.diff() >= 0).all())
    torch.testing.assert_close(
        noise.pdf(X), _central_difference(noise.cdf, X), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("noise_name", sorted(ESCAPE_NOISE))
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5])
def test_matched_surrogate_is_derivative_of_spike_probability(noise_name, temperature):
    """d/dU f((U - theta)/T) by autograd equals the matched surrogate at beta = 1/T."""
    theta = 1.0
    u = torch.linspace(0.0, 2.0, 401, dtype=torch.float64, requires_grad=True)
    noise = get_escape_noise(noise_name)
    (grad,) = torch.autograd.grad(noise.cdf((u - theta) / temperature).sum(), u)
    matched = get_surrogate("matched", 1.0 / temperature, noise_name)
    # same function, written differently (exp(x - exp(x)) vs exp(x) * exp(-exp(x))):
    # agreement to float64 round-off
    torch.testing.assert_close(
        matched.derivative(u.detach() - theta), grad, rtol=1e-10, atol=1e-13
    )


def test_exponential_surrogate_is_not_matched_exponential_noise():
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    laplace = Exponential(beta=5.0).derivative(x)
    matched = Matched(beta=5.0, escape_noise=ExponentialNoise()).derivative(x)
    assert not torch.allclose(laplace, matched)
    # the matched one is asymmetric: exp(x - exp(x)) peaks at x = 0 but is skewed
    assert matched[2] != pytest.approx(matched[-3].item())


def test_matched_escape_noise_comes_from_argument():
    s = get_surrogate("matched", 4.0, "erf")
    assert s == Matched(beta=4.0, escape_noise=get_escape_noise("erf"))
    assert s != get_surrogate("matched", 4.0, "sigmoid")


@pytest.mark.parametrize("name", NAMED)
def test_frozen_picklable_comparable_printable(name):
    s = get_surrogate(name, 7.0)
    assert pickle.loads(pickle.dumps(s)) == s
    assert hash(s) == hash(get_surrogate(name, 7.0))
    assert s != get_surrogate(name, 8.0)
    assert "beta=7.0" in repr(s)
    with pytest.raises(FrozenInstanceError):
        s.beta = 1.0


def test_two_surrogates_do_not_share_state():
    a, b = get_surrogate("sigmoid", 2.0), get_surrogate("sigmoid", 20.0)
    x = torch.tensor([0.1])
    assert a.derivative(x) != b.derivative(x)
    assert a.beta == 2.0 and b.beta == 20.0


def test_instance_beta_replaced_only_when_given():
    s = get_surrogate("atan", 3.0)
    assert get_surrogate(s) is s
    assert get_surrogate(s, 9.0) == get_surrogate("atan", 9.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_invalid_beta_rejected(bad):
    with pytest.raises(ValueError, match="beta"):
        get_surrogate("sigmoid", bad) if not isinstance(bad, str) else Surrogate(beta=bad)


def test_unknown_names_rejected():
    with pytest.raises(ValueError, match="Unknown surrogate 'nope'"):
        get_surrogate("nope")
    with pytest.raises(ValueError, match="Unknown escape noise 'nope'"):
        get_escape_noise("nope")


def test_user_subclass_and_registry():
    @dataclass(frozen=True)
    class Cauchy(Surrogate):
        name: ClassVar[str] = "test-cauchy"

        def derivative(self, x):
            return self.beta / math.pi / (1 + (self.beta * x) ** 2)

    try:
        register_surrogate(Cauchy)
        s = get_surrogate("test-cauchy", 2.0)
        assert isinstance(s, Cauchy) and s.beta == 2.0
        assert s(torch.zeros(1)).item() == pytest.approx(2.0 / math.pi)
        with pytest.raises(ValueError, match="already registered"):

            @register_surrogate
            @dataclass(frozen=True)
            class Other(Surrogate):
                name: ClassVar[str] = "test-cauchy"

    finally:
        SURROGATES.pop("test-cauchy", None)
    with pytest.raises(TypeError):
        register_surrogate(int)
