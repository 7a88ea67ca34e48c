"""The fused LIF engine: a whole layer's time loop in one autograd node.

The reference loop (:mod:`sksnn.engines.reference`) records a dozen autograd nodes per time
step and keeps their inputs alive; on the CPU that bookkeeping, not the arithmetic, dominates
a training step. Here the forward pass runs the loop without an autograd graph on
preallocated buffers and the backward pass runs the adjoint recursion by hand. Two modes:

* dense (:func:`lif_fused`): the input currents ``P`` are given; the forward pass keeps one
  float32 history for the backward pass (``sigmoid(beta (U - theta))`` for the sigmoid
  surrogates, else ``U``) next to the spikes it returns anyway;
* projected (:func:`lif_fused_projected`): the layer input is sparse 0/1 and the projection
  ``P = x W^T`` is part of the node, computed a block of steps at a time from the input's
  active entries (:class:`~sksnn._sparse.StepPattern`). Nothing of size (steps x samples x
  units) is kept but the spikes: the forward pass stores ``U`` and ``I`` at the start of
  each of about sqrt(T) blocks, and the backward pass recomputes a block's currents and
  membranes from there before running its adjoint, handing the block's ``dL/dP`` straight to
  the weight (and input) gradient.

Forward (the order of docs/user_guide/model.md, ``a = alpha_mem``, ``b = alpha_syn``)::

    S[n]   = spike(U[n] - theta)
    A[n]   = a U[n] + (1 - a) I[n]                          (pre-reset potential)
    U[n+1] = A[n] (1 - S[n])  |  A[n] - theta S[n]  |  A[n]   (zero | subtract | none)
    I[n+1] = b I[n] + P[n] (+ S[n] V^T)

Adjoint, with ``gU[n] = dL/dU[n]``, ``gI[n] = dL/dI[n]``, ``gU[T] = gI[T] = 0``, ``r[n]`` the
derivative of the reset with respect to ``A[n]`` (``1 - S[n]`` for "zero", else 1) and
``D[n] = surrogate'(U[n] - theta)``::

    gS[n] = dL/dS[n] (from above) + gI[n+1] V
            - gU[n+1] A[n]    ("zero", reset not detached)
            - theta gU[n+1]   ("subtract", reset not detached)
    gU[n] = a r[n] gU[n+1] + D[n] gS[n]  (+ dL/dU[n] when the membrane is an output)
    gI[n] = (1 - a) r[n] gU[n+1] + b gI[n+1]
    gP[n] = gI[n+1],    gV = sum_n gI[n+1]^T S[n]

The forward arithmetic mirrors :func:`~sksnn.engines.reference.lif_reference` operation by
operation, so from the same currents and uniform numbers both produce bit-identical spikes and
membranes; the gradients agree to round-off (the tests check every reset mode, detach on/off,
recurrent on/off, stochastic and deterministic, both modes).

Each per-step operation runs on torch's intra-op threads rather than on Python threads, which
would hand the GIL back and forth around every operation of a few microseconds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._sparse import BinaryPattern, StepPattern
from ..neuron import LIFParameters
from ._fused_steps import (
    Saved,
    State,
    adjoint,
    block_length,
    blocks_of,
    simulate,
    steps_of,
)

__all__ = ["lif_fused", "lif_fused_projected"]


class _DenseSource:
    """Input currents given as a tensor ``P`` of shape (n_steps, n_samples, n_units)."""

    checkpointed = False

    def __init__(self, drive: Tensor) -> None:
        self.drive = drive

    def block(self, start: int, stop: int) -> Tensor:
        return self.drive[start:stop]


class _PatternSource:
    """Input currents ``x @ W.T + b`` of a binary input, computed block by block when needed.

    Neither the currents nor their gradient exist for all steps at once; the backward pass
    recomputes each block's currents and membranes from checkpoints of ``U`` and ``I``.
    """

    checkpointed = True

    def __init__(self, pattern: StepPattern, weight: Tensor, bias: Tensor | None) -> None:
        self.pattern = pattern
        self.weight_t = weight.detach().t().contiguous()
        self.bias = None if bias is None else bias.detach()

    def block(self, start: int, stop: int) -> Tensor:
        out = self.pattern.matmul(self.weight_t, start, stop)
        if self.bias is not None:
            out += self.bias
        return out.view(stop - start, self.pattern.n_samples, -1)


def _run_forward(
    source,
    shape: tuple[int, int, int],
    like: Tensor,
    params: LIFParameters,
    uniform: Tensor | None,
    recurrent_weight: Tensor | None,
    for_backward: bool,
    record_membrane: bool,
) -> Saved:
    """The time loop without autograd; returns the spikes and what the backward pass needs."""
    n_steps, n_samples, n_units = shape
    # a logistic surrogate keeps sigmoid(beta (U - theta)) for the backward pass instead of U
    beta = params.logistic_steepness if for_backward else None
    keep = for_backward and not source.checkpointed

    def full(needed: bool) -> Tensor | None:
        return like.new_empty(shape) if needed else None

    saved = Saved(
        spikes=like.new_empty(shape),
        membrane=full(record_membrane or (keep and beta is None)),
        sigmoid=full(keep and beta is not None),
        pre_reset=full(keep and params.reset == "zero" and not params.detach_reset),
    )
    blocks = blocks_of(n_steps, block_length(*shape, source.checkpointed))
    if for_backward and source.checkpointed:
        saved.checkpoints = like.new_empty(len(blocks), 2, n_samples, n_units)

    state = State(like, (n_samples, n_units), recurrent_weight)
    for k, (start, stop) in enumerate(blocks):
        if saved.checkpoints is not None:
            saved.checkpoints[k, 0].copy_(state.u)
            saved.checkpoints[k, 1].copy_(state.i)
        simulate(
            state,
            source.block(start, stop),
            start,
            stop,
            params,
            beta,
            saved.spikes,
            uniform,
            True,
            sigmoid=steps_of(saved.sigmoid, start, stop),
            membrane=steps_of(saved.membrane, start, stop),
            pre_reset=steps_of(saved.pre_reset, start, stop),
        )
    return saved


class _FusedLIF(torch.autograd.Function):
    """Autograd node of a fused layer; see the module docstring for the equations.

    Dense mode (``pattern`` None): ``first`` is the drive ``P``. Pattern mode: ``first`` is the
    binary layer input ``x`` (n_steps, n_samples, n_in), ``weight`` the input weight,
    ``pattern`` its :class:`~sksnn._sparse.BinaryPattern` (or, already grouped by step, its
    :class:`~sksnn._sparse.StepPattern`) and ``bias`` the layer's bias current (or None); the
    projection is part of the node.
    """

    @staticmethod
    def forward(ctx, first, weight, recurrent_weight, uniform, params, record, pattern, bias):  # type: ignore[override]
        source, shape = _source(first, weight, pattern, bias)
        like = first if pattern is None else weight
        saved = _run_forward(source, shape, like, params, uniform, recurrent_weight, True, record)
        ctx.params = params
        # Dense mode needs only the drive's layout later; keeping it would keep it alive.
        ctx.source = source if pattern is not None else _DenseLayout(first)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(
            saved.spikes,
            saved.membrane,
            saved.sigmoid,
            saved.pre_reset,
            saved.checkpoints,
            first if pattern is not None and first is not None and first.requires_grad else None,
            weight,
            recurrent_weight,
        )
        return saved.spikes, (saved.membrane if record else None)

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane):  # type: ignore[override]
        spikes, membrane, sigmoid, pre_reset, checkpoints, x, weight, recurrent_weight = (
            ctx.saved_tensors
        )
        saved = Saved(spikes, membrane, sigmoid, pre_reset, checkpoints)
        need_first, need_weight, need_rec = ctx.needs_input_grad[:3]
        need_bias = ctx.needs_input_grad[7]
        source = ctx.source
        grad_first = grad_weight = grad_bias = consume = grad_drive = None
        if not source.checkpointed:
            grad_drive = source.empty_like_drive(spikes) if need_first else None
        else:
            grad_first = torch.empty_like(x) if need_first else None
            grad_weight_t: list[Tensor] = []  # the running sum, once there is one
            if need_bias:
                grad_bias = weight.new_zeros(weight.shape[0])

            def consume(start: int, stop: int, gp: Tensor) -> None:
                flat = gp.reshape(-1, gp.shape[-1])
                if grad_bias is not None:
                    grad_bias.add_(flat.sum(0))
                if need_weight:
                    g_w = source.pattern.t_matmul(flat, start, stop)
                    if grad_weight_t:
                        grad_weight_t[0].add_(g_w)
                    else:
                        grad_weight_t.append(g_w)
                if grad_first is not None:
                    grad_first[start:stop] = (flat @ weight).view(gp.shape[0], gp.shape[1], -1)

        grad_rec = adjoint(
            saved,
            source,
            recurrent_weight,
            grad_spikes,
            grad_membrane,
            ctx.params,
            grad_drive,
            consume,
            need_rec,
        )
        if not source.checkpointed:
            grad_first = grad_drive
        elif need_weight:
            grad_weight = grad_weight_t[0].t()
        return grad_first, grad_weight, grad_rec, None, None, None, None, grad_bias


class _DenseLayout:
    """Stands in for the dense source in the backward pass: the drive's layout only."""

    checkpointed = False

    def __init__(self, drive: Tensor) -> None:
        # The drive of a layer fed by batch-major 3-D input is a transposed view; its gradient
        # in the same layout lets the projection's backward use it without a copy.
        self.batch_major = _is_batch_major(drive)

    def empty_like_drive(self, spikes: Tensor) -> Tensor:
        n_steps, n_samples, n_units = spikes.shape
        if self.batch_major:
            return spikes.new_empty(n_samples, n_steps, n_units).transpose(0, 1)
        return spikes.new_empty(n_steps, n_samples, n_units)


def _is_batch_major(x: Tensor) -> bool:
    """Whether ``x`` (time-major shape) is a transposed view of a batch-major tensor."""
    return x.shape[0] > 1 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous()


def _source(
    first: Tensor,
    weight: Tensor | None,
    pattern: BinaryPattern | StepPattern | None,
    bias: Tensor | None = None,
):
    """The drive source and the layer's (n_steps, n_samples, n_units)."""
    if pattern is None:
        return _DenseSource(first), tuple(first.shape)
    if isinstance(pattern, StepPattern):
        step_pattern = pattern
        n_samples = pattern.n_samples
        n_steps = pattern.n_rows // n_samples
    else:
        n_steps, n_samples = first.shape[:2]
        step_pattern = StepPattern.from_pattern(
            pattern, n_steps, n_samples, _is_batch_major(first)
        )
    return _PatternSource(step_pattern, weight, bias), (n_steps, n_samples, weight.shape[0])


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def lif_fused(
    drive: Tensor,
    params: LIFParameters,
    uniform: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    record_membrane: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run a LIF layer with the fused engine; same contract as
    :func:`~sksnn.engines.reference.lif_reference`.

    Without gradients (``torch.no_grad``/``inference_mode``, or no input requiring grad) the
    loop runs directly and keeps no history unless ``record_membrane``.
    """
    if params.stochastic and uniform is None:
        raise ValueError("A stochastic neuron (temperature > 0) needs uniform noise.")
    if _needs_grad(drive, recurrent_weight):
        return _FusedLIF.apply(
            drive, None, recurrent_weight, uniform, params, record_membrane, None, None
        )
    return _no_grad(drive.detach(), None, recurrent_weight, uniform, params, record_membrane, None)


def lif_fused_projected(
    x: Tensor,
    weight: Tensor,
    pattern: BinaryPattern | StepPattern,
    params: LIFParameters,
    uniform: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    record_membrane: bool = False,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """A fused LIF layer driven by ``x @ weight.T + bias`` for a binary input ``x``.

    Parameters
    ----------
    x : Tensor, shape (n_steps, n_samples, n_in), or None
        0/1 input (spikes); may be a transposed view of a batch-major tensor. May be None when
        ``pattern`` is a :class:`~sksnn._sparse.StepPattern` (no gradient to ``x`` then).
    weight : Tensor, shape (n_units, n_in)
    pattern : BinaryPattern or StepPattern
        Active entries of ``x``: as the 2-D matrix of its memory order, or already grouped by
        step (:class:`~sksnn._sparse.StepPattern`).
    uniform : Tensor, optional
        Uniform numbers, shape (n_steps, n_samples, n_units), for a stochastic layer.
    bias : Tensor, shape (n_units,), optional
        A constant current added to every step's input.

    The currents are computed a block of steps at a time and never stored; the backward pass
    recomputes each block from checkpoints. Gradients flow to ``x``, ``weight``,
    ``recurrent_weight`` and ``bias``. Same results as projecting and calling
    :func:`lif_fused`.
    """
    if params.stochastic and uniform is None:
        raise ValueError("A stochastic neuron (temperature > 0) needs uniform noise.")
    if _needs_grad(x, weight, recurrent_weight, bias):
        return _FusedLIF.apply(
            x, weight, recurrent_weight, uniform, params, record_membrane, pattern, bias
        )
    return _no_grad(
        x, weight.detach(), recurrent_weight, uniform, params, record_membrane, pattern, bias
    )


def _no_grad(
    first, weight, recurrent_weight, uniform, params: LIFParameters, record, pattern, bias=None
):
    source, shape = _source(first, weight, pattern, bias)
    rec = None if recurrent_weight is None else recurrent_weight.detach()
    like = first if pattern is None else weight
    with torch.no_grad():
        saved = _run_forward(source, shape, like, params, uniform, rec, False, record)
    return saved.spikes, saved.membrane
