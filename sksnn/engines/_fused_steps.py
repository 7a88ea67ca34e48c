"""The per-step loops of the fused LIF engine (:mod:`sksnn.engines._fused`) and their buffers.

:func:`simulate` runs forward steps (sampling spikes, or recomputing a block with the spikes
known); :func:`adjoint` runs the adjoint recursion, block by block.
The equations are in :mod:`sksnn.engines._fused`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..neuron import LIFParameters, sample_spikes

__all__ = [
    "Saved",
    "State",
    "adjoint",
    "block_length",
    "blocks_of",
    "simulate",
    "steps_of",
]

# Elements per block when the backward pass evaluates elementwise terms (surrogate derivative,
# reset factors) for several steps at once: large enough to amortise per-op overhead, small
# enough to stay in the L2 cache (half a MiB of float32 per temporary).
_BLOCK_ELEMENTS = 1 << 17


def blocks_of(n_steps: int, length: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of ``length`` steps (the last may be shorter)."""
    return [(start, min(start + length, n_steps)) for start in range(0, n_steps, length)]


@dataclass
class Saved:
    """What the forward pass keeps (each None unless needed), shapes (n_steps, n_samples, n)."""

    spikes: Tensor
    membrane: Tensor | None = None  # U[n]: recorded, or for a generic surrogate
    sigmoid: Tensor | None = None  # sigmoid(beta (U[n] - theta)) for the sigmoid surrogates
    pre_reset: Tensor | None = None  # A[n]: zero reset with a differentiable reset
    checkpoints: Tensor | None = None  # (n_blocks, 2, n_samples, n): U and I at block starts


class _Blocks:
    """Block-sized buffers, allocated once and reused for every block."""

    def __init__(self, like: Tensor, length: int, shape: tuple[int, int]) -> None:
        self.like, self.shape, self.length = like, shape, length
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, steps: int) -> Tensor:
        if name not in self._buffers:
            self._buffers[name] = self.like.new_empty(self.length, *self.shape)
        return self._buffers[name][:steps]


class State:
    """Membrane and current of the batch, and scratch buffers for the loop."""

    def __init__(self, like: Tensor, shape: tuple[int, int], recurrent_weight) -> None:
        self.u = like.new_zeros(shape)
        self.i = like.new_zeros(shape)
        self.spare = like.new_empty(shape)
        self.v = like.new_empty(shape)
        self.p = like.new_empty(shape)
        self.rec = like.new_empty(shape) if recurrent_weight is not None else None
        self.recurrent_t = None if recurrent_weight is None else recurrent_weight.t()


def block_length(n_steps: int, n_samples: int, n_units: int, checkpointed: bool) -> int:
    if checkpointed:
        # sqrt(T) blocks of sqrt(T) steps: checkpoints and one block's buffers cost about the
        # same, both a small fraction of one full history.
        return max(1, round(math.sqrt(n_steps)))
    return max(1, _BLOCK_ELEMENTS // max(1, n_samples * n_units))


def steps_of(t: Tensor | None, start: int, stop: int) -> Tensor | None:
    """Steps ``start:stop`` of a (n_steps, n_samples, n) tensor, or None."""
    return None if t is None else t[start:stop]


def simulate(
    state: State,
    drive: Tensor,
    start: int,
    stop: int,
    params: LIFParameters,
    beta: float | None,
    spikes: Tensor,
    uniform: Tensor | None,
    sample: bool,
    sigmoid: Tensor | None = None,
    membrane: Tensor | None = None,
    pre_reset: Tensor | None = None,
    recurrent: bool = True,
) -> None:
    """Steps ``start:stop`` of the forward loop.

    ``spikes`` and ``uniform`` are indexed by step; ``drive`` and the optional outputs
    ``sigmoid``, ``membrane``, ``pre_reset`` by step - start. With ``sample`` the spikes are
    drawn and written, otherwise read (the backward pass recomputing a block); without
    ``recurrent`` the recurrent currents are taken to be in ``drive`` already. Every value is
    computed by the same elementwise operation as in ``lif_reference``, or by one that is exact
    on 0/1 spikes, so spikes and membranes are bit-identical to it.
    """
    n_steps = spikes.shape[0]
    theta, temperature = params.threshold, params.temperature
    # the spike probability is the sigmoid the surrogate needs: keep it, do not recompute
    reuse = beta is not None and params.surrogate_reuses_probability
    # When recomputing, the sigmoid history is the membrane's, transformed after the loop by
    # three operations on the whole block instead of three per step.
    sigmoid_later = sigmoid is not None and not sample
    u, i, v = state.u, state.i, state.v
    # Per-step views made once: indexing inside the loop costs a call per step and tensor.
    step_spikes = spikes[start:stop].unbind(0)
    step_drive = drive.unbind(0)
    step_noise = None if uniform is None else uniform[start:stop].unbind(0)
    for n in range(start, stop):
        j = n - start
        s = step_spikes[j]
        if membrane is not None:
            membrane[j].copy_(u)
        if sigmoid_later:
            sigmoid[j].copy_(u)
        elif sample and reuse:
            # sample_spikes' own operations, keeping the probability.
            torch.sub(u, theta, out=v)
            p = torch.sigmoid(v.div_(temperature), out=state.p if sigmoid is None else sigmoid[j])
            torch.lt(step_noise[j], p, out=s)
        else:
            v_set = False
            if sample and params.stochastic:
                torch.sub(u, theta, out=v)
                sample_spikes(v, step_noise[j], temperature, params.escape_noise, out=s)
                v_set = True
            elif sample:
                # [U > theta] is [U - theta > 0] exactly (a difference of floats is 0 only
                # when they are equal), without the subtraction.
                torch.gt(u, theta, out=s)
            if sigmoid is not None:
                if not v_set:
                    torch.sub(u, theta, out=v)
                torch.sigmoid(v.div_(temperature) if reuse else v.mul_(beta), out=sigmoid[j])
        if n == n_steps - 1:
            break  # U[T] and I[T] are never observed
        u_next = state.spare
        torch.lerp(i, u, params.alpha_mem, out=u_next)
        if pre_reset is not None:
            pre_reset[j].copy_(u_next)
        if params.reset == "zero":
            # u - u * s is u * (1 - s) exactly for s in {0, 1}, in one operation.
            u_next.addcmul_(u_next, s, value=-1.0)
        elif params.reset == "subtract":
            u_next.sub_(s, alpha=theta)
        torch.add(step_drive[j], i, alpha=params.alpha_syn, out=i)
        if recurrent and state.rec is not None:
            i.add_(torch.mm(s, state.recurrent_t, out=state.rec))
        state.spare = u
        u = u_next
    state.u = u
    if sigmoid_later:
        # the per-step operations of the sampling path, elementwise: the same bits
        block = sigmoid[: stop - start].sub_(theta)
        torch.sigmoid(block.div_(temperature) if reuse else block.mul_(beta), out=block)


def adjoint(
    saved: Saved,
    source,
    recurrent_weight: Tensor | None,
    grad_spikes: Tensor | None,
    grad_membrane: Tensor | None,
    params: LIFParameters,
    grad_drive: Tensor | None,
    consume,
    need_rec: bool,
) -> Tensor | None:
    """The adjoint, block by block from the last step; returns the recurrent weight's gradient
    (None unless ``need_rec``).

    ``dL/dP`` goes into ``grad_drive`` (dense source) or, block by block, to ``consume(start,
    stop, block)`` (pattern source), or both ways nowhere if not needed.
    """
    spikes = saved.spikes
    n_steps, n_samples, n_units = spikes.shape
    blocks = blocks_of(n_steps, block_length(n_steps, n_samples, n_units, source.checkpointed))
    shape = (n_samples, n_units)
    a_mem, a_syn, theta = params.alpha_mem, params.alpha_syn, params.threshold
    c_syn = 1.0 - a_mem
    beta = params.logistic_steepness
    zero_reset = params.reset == "zero"
    reset_grad = not params.detach_reset and params.reset != "none"
    # gS[n] is known before the loop unless it depends on gU[n+1] or gI[n+1].
    gs_known = recurrent_weight is None and not reset_grad
    gu = spikes.new_zeros(shape)  # gU[n + 1]
    gu_new, gs, ga, src = (spikes.new_empty(shape) for _ in range(4))
    # gI[n + 1] / (1 - a) of the block's first step, for the block before (the scale saves an
    # operation per step; blocks are rescaled when complete).
    carry = spikes.new_zeros(shape)
    zero = spikes.new_zeros(shape)
    grad_rec = None
    state = State(spikes, shape, recurrent_weight) if source.checkpointed else None
    buffers = _Blocks(spikes, blocks[0][1] - blocks[0][0], shape)
    for k in reversed(range(len(blocks))):
        start, stop = blocks[k]
        hist = _block_history(saved, source, state, buffers, k, start, stop, params, beta)
        out = buffers.get("e", stop - start)
        if gs_known:
            # e[n] = D[n] dL/dS[n], the whole source term of the gU recursion.
            e = None
            if grad_spikes is not None:
                e = _surrogate_times(hist, grad_spikes[start:stop], params, beta, out)
        else:
            d = _surrogate_times(hist, None, params, beta, out)
        # gp[n - start] = dL/dP[n] / (1 - a) = gI[n + 1] / (1 - a)
        if grad_drive is not None:
            gp = grad_drive[start:stop]
        else:
            gp = buffers.get("gp", stop - start)
        gp[-1].copy_(carry)
        # Per-step views made once per block (indexing in the loop is a call per step each).
        gp_steps = gp.unbind(0)
        spike_steps = spikes[start:stop].unbind(0)
        e_steps = e.unbind(0) if gs_known and e is not None else None
        # U[0] = I[0] = 0 are constants: step 0 passes nothing further back.
        for n in range(stop - 1, max(start, 1) - 1, -1):
            j = n - start
            gi = gp_steps[j]
            if gs_known:
                source_term = e_steps[j] if e_steps is not None else zero
            else:
                if grad_spikes is not None:
                    gs.copy_(grad_spikes[n])
                else:
                    gs.zero_()
                if recurrent_weight is not None and n < n_steps - 1:
                    gs.addmm_(gi, recurrent_weight, alpha=c_syn)
                if reset_grad and n < n_steps - 1:
                    if zero_reset:
                        gs.addcmul_(gu, hist.pre_reset[j], value=-1.0)
                    else:
                        gs.add_(gu, alpha=-theta)
                source_term = gs.mul_(d[j])
            if grad_membrane is not None:
                source_term = torch.add(source_term, grad_membrane[n], out=src)
            if zero_reset:
                # r[n] gU[n+1] = gU[n+1] (1 - S[n]), exact, in one operation
                gr = torch.addcmul(gu, gu, spike_steps[j], value=-1.0, out=ga)
            else:
                gr = gu
            torch.add(source_term, gr, alpha=a_mem, out=gu_new)
            torch.add(gr, gi, alpha=a_syn, out=gp_steps[j - 1] if j > 0 else carry)
            gu, gu_new = gu_new, gu
        gp.mul_(c_syn)
        if consume is not None:
            consume(start, stop, gp)
        if need_rec and recurrent_weight is not None:
            # gV = sum_n gI[n+1]^T S[n], one product per block
            g_flat = gp.reshape(-1, n_units).t()
            s_flat = spikes[start:stop].reshape(-1, n_units)
            if grad_rec is None:
                grad_rec = g_flat @ s_flat
            else:
                grad_rec.addmm_(g_flat, s_flat)
    return grad_rec


def _block_history(
    saved, source, state, buffers, k, start, stop, params: LIFParameters, beta
) -> Saved:
    """What the adjoint needs for steps ``start:stop``: views of the saved histories, or
    recomputed from the block's checkpoint by the forward pass's operations."""
    if not source.checkpointed:
        return Saved(
            spikes=saved.spikes,
            membrane=steps_of(saved.membrane, start, stop),
            sigmoid=steps_of(saved.sigmoid, start, stop),
            pre_reset=steps_of(saved.pre_reset, start, stop),
        )
    steps = stop - start
    hist = Saved(
        spikes=saved.spikes,
        membrane=buffers.get("membrane", steps) if beta is None else None,
        sigmoid=buffers.get("sigmoid", steps) if beta is not None else None,
        pre_reset=(
            buffers.get("pre_reset", steps)
            if params.reset == "zero" and not params.detach_reset
            else None
        ),
    )
    state.u.copy_(saved.checkpoints[k, 0])
    state.i.copy_(saved.checkpoints[k, 1])
    drive = source.block(start, stop)
    if state.rec is not None:
        # The spikes are known: the block's recurrent currents S[n] V^T in one product
        # instead of one per step. (Rounded differently from the forward pass, so the
        # recomputed membranes may differ from it in the last bit; the spikes are not redrawn.)
        n_units = drive.shape[-1]
        block_spikes = saved.spikes[start:stop].reshape(-1, n_units)
        drive.view(-1, n_units).addmm_(block_spikes, state.recurrent_t)
    simulate(
        state,
        drive,
        start,
        stop,
        params,
        beta,
        saved.spikes,
        None,
        False,
        sigmoid=hist.sigmoid,
        membrane=hist.membrane,
        pre_reset=hist.pre_reset,
        recurrent=False,
    )
    return hist


def _surrogate_times(
    hist: Saved, grad: Tensor | None, params: LIFParameters, beta: float | None, out: Tensor
) -> Tensor:
    """``D[n] * grad[n]`` over a block (or ``D[n]`` when ``grad`` is None)."""
    if beta is not None:
        s = hist.sigmoid
        if grad is None:
            # beta s (1 - s) = beta (s - s^2)
            return torch.addcmul(s, s, s, value=-1.0, out=out).mul_(beta)
        # sigmoid_backward(g, s) = g s (1 - s): the derivative and the product in one pass.
        return torch.ops.aten.sigmoid_backward.grad_input(grad, s, grad_input=out).mul_(beta)
    d = params.surrogate.derivative(hist.membrane - params.threshold)
    return d if grad is None else d * grad
