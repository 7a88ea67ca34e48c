"""The stochastic leaky integrate-and-fire neuron: its constants and its spike.

Discrete-time dynamics of one layer (docs/user_guide/model.md), for step ``n`` and drive
``P[n] = W S_in[n]``::

    S[n]   = [u[n] < f((U[n] - threshold) / T)]      (or [U[n] > threshold] at T = 0)
    U[n+1] = alpha_mem U[n] + (1 - alpha_mem) I[n]    then reset by S[n]
    I[n+1] = alpha_syn I[n] + P[n] (+ V S[n] if recurrent)

with ``U[0] = I[0] = 0`` and ``u[n]`` uniform noise. Reset "zero" multiplies ``U[n+1]`` by
``1 - S[n]``, "subtract" subtracts ``threshold * S[n]``, "none" leaves it; with
``detach_reset`` no gradient flows through the reset. This module holds the constants
(:class:`LIFParameters`) and the spike (:func:`sample_spikes`, :func:`spike`); the engines in
:mod:`sksnn.engines` run the time loop. It imports nothing of the package but the surrogates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .surrogates import EscapeNoise, SigmoidNoise, Surrogate, get_surrogate

__all__ = [
    "RESETS",
    "LIFParameters",
    "SpikeFunction",
    "decay",
    "psp_kernel",
    "sample_spikes",
    "spike",
    "spike_probability",
]

RESETS = ("zero", "subtract", "none")
# beta * T within this relative distance of 1 makes sigmoid(beta v) and sigmoid(v / T) agree far
# below float32 resolution (1/T is rarely exact in floating point: T = 0.09, 0.18, 0.36, ...).
_MATCH_RTOL = 1e-9


def decay(dt: float, tau: float) -> float:
    """Per-step decay factor ``exp(-dt / tau)`` of a leaky variable."""
    return math.exp(-dt / tau)


@dataclass(frozen=True)
class LIFParameters:
    """Constants of a LIF layer.

    Parameters
    ----------
    alpha_syn, alpha_mem : float
        Per-step decay of synaptic current and membrane, ``exp(-dt / tau)``.
    threshold : float
        Firing threshold.
    temperature : float
        Escape-noise temperature ``T``; 0 gives the deterministic network.
    escape_noise : EscapeNoise
        Spike probability ``f`` as a function of ``(U - threshold) / T``.
    surrogate : Surrogate
        Derivative used for ``dS/dU`` in the backward pass.
    reset : {"zero", "subtract", "none"}
    detach_reset : bool
    """

    alpha_syn: float = decay(2e-3, 10e-3)
    alpha_mem: float = decay(2e-3, 20e-3)
    threshold: float = 1.0
    temperature: float = 0.0
    escape_noise: EscapeNoise = field(default_factory=SigmoidNoise)
    surrogate: Surrogate = field(default_factory=lambda: get_surrogate("matched", 10.0))
    reset: str = "zero"
    detach_reset: bool = True

    def __post_init__(self) -> None:
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}.")

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0

    @property
    def logistic_steepness(self) -> float | None:
        """The surrogate's ``beta`` when it is the derivative of a logistic sigmoid, else None."""
        return self.surrogate.logistic_steepness()

    @property
    def surrogate_reuses_probability(self) -> bool:
        """Whether the spike probability ``sigmoid((U - threshold) / T)`` is itself the sigmoid
        the surrogate derivative needs: logistic escape noise with a logistic surrogate of
        steepness ``1 / T``, the matched surrogate at the noise temperature."""
        beta = self.logistic_steepness
        return (
            beta is not None
            and self.stochastic
            and self.escape_noise.is_logistic()
            and math.isclose(beta * self.temperature, 1.0, rel_tol=_MATCH_RTOL)
        )


def psp_kernel(alpha_syn: float, alpha_mem: float, n_steps: int) -> Tensor:
    """Impulse response ``h[k]`` of the membrane to a unit drive ``k`` steps earlier (no spikes).

    ``h[0] = 0`` (a drive reaches the current one step later and the membrane the step after
    that), ``h[1] = 1 - alpha_mem`` and ``sum(h) -> 1 / (1 - alpha_syn)`` for long windows.
    Returned in float64, length n_steps.
    """
    h = []
    u = i = 0.0
    for k in range(n_steps):
        u, i = alpha_mem * u + (1.0 - alpha_mem) * i, alpha_syn * i + (1.0 if k == 0 else 0.0)
        h.append(u)
    return torch.tensor(h, dtype=torch.float64)


def spike_probability(v: Tensor, temperature: float, escape_noise: EscapeNoise) -> Tensor:
    """Firing probability ``f(v / T)`` for ``v = U - threshold``; the step ``[v > 0]`` at T = 0."""
    if temperature > 0:
        return escape_noise.cdf(v / temperature)
    return (v > 0).to(v.dtype)


def sample_spikes(
    v: Tensor,
    uniform: Tensor | None,
    temperature: float,
    escape_noise: EscapeNoise,
    out: Tensor | None = None,
) -> Tensor:
    """Spikes ``S = [u < f(v / T)]`` from uniform noise ``u`` (a Bernoulli sample), or ``[v > 0]``.

    Taking the uniform numbers as an argument (instead of drawing them here) is what lets the
    reference loop, the fused kernel and inference-time counter-based noise produce identical
    spikes.

    Parameters
    ----------
    v : Tensor
        ``U - threshold``.
    uniform : Tensor or None
        Uniform [0, 1) numbers of the shape of ``v``; required when ``temperature > 0``.
    temperature : float
    escape_noise : EscapeNoise
    out : Tensor, optional
        Where to write the 0/1 spikes (dtype of ``v``); a new tensor when omitted.
    """
    if out is None:
        out = torch.empty_like(v)
    # The comparisons write 0/1 straight into a float tensor, so no bool temporary has to be
    # allocated and converted.
    if temperature > 0:
        if uniform is None:
            raise ValueError("A stochastic neuron (temperature > 0) needs uniform noise.")
        return torch.lt(uniform, escape_noise.cdf(v / temperature), out=out)
    return torch.gt(v, 0.0, out=out)


class SpikeFunction(torch.autograd.Function):
    """``S ~ Bernoulli(f((U - threshold) / T))`` with ``dS/dU := surrogate'(U - threshold)``.

    With the matched surrogate at ``beta = 1 / T`` the backward pass is the smoothed stochastic
    derivative of Arya et al. (2022) that Gygax & Zenke (2025) derive: straight-through on the
    Bernoulli sample, chained through the derivative of the spike probability.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        v: Tensor,
        uniform: Tensor | None,
        temperature: float,
        escape_noise: EscapeNoise,
        surrogate: Surrogate,
    ) -> Tensor:
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return sample_spikes(v, uniform, temperature, escape_noise)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(v), None, None, None, None


#: Sample spikes for ``v = U - threshold`` with a surrogate-gradient backward pass:
#: ``spike(v, uniform, temperature, escape_noise, surrogate)`` (see :class:`SpikeFunction`).
spike = SpikeFunction.apply
