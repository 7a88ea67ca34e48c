"""The stochastic spike: Bernoulli(f((U - threshold) / T)) forward, surrogate derivative backward.

This is the per-time-step building block of the reference LIF loop. The fused engine in
:mod:`sksnn._fused` samples spikes with the same :func:`sample_spikes` so both paths agree
exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .surrogates import EscapeNoise, Surrogate

__all__ = ["SpikeFunction", "sample_spikes", "spike", "spike_probability"]


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
    # The comparisons write 0/1 straight into a float tensor: on the CPU that is several times
    # faster than producing a bool tensor and converting it.
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


def spike(
    v: Tensor,
    uniform: Tensor | None,
    temperature: float,
    escape_noise: EscapeNoise,
    surrogate: Surrogate,
) -> Tensor:
    """Sample spikes for ``v = U - threshold`` with a surrogate-gradient backward pass."""
    return SpikeFunction.apply(v, uniform, temperature, escape_noise, surrogate)
