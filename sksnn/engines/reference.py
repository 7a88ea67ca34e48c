"""The reference engine: the LIF time loop step by step in plain autograd.

Kept as the definition the other engines are tested against: every operation is an ordinary
differentiable torch operation, the spike included (:class:`~sksnn.neuron.SpikeFunction`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..neuron import LIFParameters, spike
from ..noise import as_tensor
from .base import Engine

__all__ = ["ReferenceEngine", "lif_reference"]


class ReferenceEngine(Engine):
    """Plain autograd, dense products; see :func:`lif_reference`."""

    name = "reference"
    # the step memory of benchmarks/bench_engine.py per unit, step and sample, with a margin
    bytes_per_unit_step = 32

    def run_currents(self, drive, params, uniform, recurrent_weight, record_membrane):
        uniform = as_tensor(uniform, drive.shape)
        return lif_reference(drive, params, uniform, recurrent_weight, record_membrane)


def lif_reference(
    drive: Tensor,
    params: LIFParameters,
    uniform: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    record_membrane: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run a LIF layer step by step with ordinary autograd (the reference path).

    Parameters
    ----------
    drive : Tensor, shape (n_steps, n_samples, n_units)
        Feed-forward input current ``P[n]``. May be an expanded (stride-0) view.
    params : LIFParameters
    uniform : Tensor, shape (n_steps, n_samples, n_units), optional
        Uniform [0, 1) numbers for the Bernoulli spikes; required when ``T > 0``.
    recurrent_weight : Tensor, shape (n_units, n_units), optional
        ``V``; the recurrent current is ``S[n] @ V.T``.
    record_membrane : bool
        Also return ``U[n]`` (the potential the spike at step ``n`` was drawn from).

    Returns
    -------
    spikes : Tensor, shape (n_steps, n_samples, n_units)
    membrane : Tensor or None
    """
    n_steps, n_samples, n_units = drive.shape
    u = drive.new_zeros(n_samples, n_units)
    i = drive.new_zeros(n_samples, n_units)
    # unbind, not drive[n]: the backward of n separate selects would build a full-size zero
    # gradient per step (quadratic in n_steps); unbind's backward stacks once.
    drives = drive.unbind(0)
    spikes, membrane = [], []
    for n in range(n_steps):
        if record_membrane:
            membrane.append(u)
        s = spike(
            u - params.threshold,
            None if uniform is None else uniform[n],
            params.temperature,
            params.escape_noise,
            params.surrogate,
        )
        spikes.append(s)
        s_reset = s.detach() if params.detach_reset else s
        # alpha_mem * u + (1 - alpha_mem) * i and alpha_syn * i + P[n], written as the single
        # operations the fused engine uses, so both round identically.
        u_next = torch.lerp(i, u, params.alpha_mem)
        if params.reset == "zero":
            u_next = u_next * (1.0 - s_reset)
        elif params.reset == "subtract":
            u_next = u_next - params.threshold * s_reset
        i = torch.add(drives[n], i, alpha=params.alpha_syn)
        if recurrent_weight is not None:
            i = i + s @ recurrent_weight.T
        u = u_next
    return torch.stack(spikes), (torch.stack(membrane) if record_membrane else None)
