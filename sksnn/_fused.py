"""The fused LIF engine: a whole layer's time loop in one autograd node.

The reference loop in :mod:`sksnn.lif` records a dozen autograd nodes per time step and keeps
their inputs alive; on the CPU that bookkeeping, not the arithmetic, dominates a training step.
Here the forward pass runs the loop without an autograd graph on preallocated buffers and
keeps one float32 history for the backward pass next to the spikes it returns anyway; the
backward pass runs the adjoint recursion by hand.

Forward (THEORY.md order, ``a = alpha_mem``, ``b = alpha_syn``)::

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

The forward arithmetic mirrors :func:`sksnn.lif.lif_reference` operation by operation, so both
produce bit-identical spikes and membranes from the same uniform numbers; the gradients then
agree to float32 round-off (the tests check every reset mode, detach on/off, recurrent on/off,
stochastic and deterministic).

Samples are independent, so on a multi-core CPU the loop runs on two halves of the batch at
once, one on a helper thread (torch operations release the GIL). Each half is split at a row
boundary that keeps the elementwise kernels' vector blocks where they are in the whole batch,
so splitting does not change a single bit.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from ._sparse import binary_matmul_t
from .spike import sample_spikes
from .surrogates import Matched, Sigmoid, SigmoidNoise

__all__ = ["background", "lif_fused"]

# Elements per block when the backward pass evaluates elementwise terms (surrogate derivative,
# reset factors) for several steps at once: large enough to amortise per-op overhead, small
# enough to stay in the L2 cache (half a MiB of float32 per temporary).
_BLOCK_ELEMENTS = 1 << 17
# Below this many elements per step each part of the time loop runs on one thread. Each step
# is a handful of operations on (n_samples, n_units) tensors; splitting such small operations
# over threads saves microseconds on an idle machine, but when another process holds a core
# every operation waits for the descheduled worker at its barrier and the loop runs many times
# slower (measured: a W1 training step went from 0.3 s to 1-2 s on a loaded 2-core machine).
_THREADED_LOOP_ELEMENTS = 1 << 18
# Two halves of the batch on two threads when a step has at least this many elements (W1:
# 256 x 256 per step; measured 1.6x faster for forward + backward on 2 cores).
_SPLIT_ELEMENTS = 1 << 14
# Rows are split where the element offset is a multiple of this (vector block of the
# elementwise kernels: 2 x 16 float32 with AVX-512; 64 leaves room for wider ones).
_SPLIT_ALIGN = 64

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def background(fn: Callable, *args) -> Future:
    """Run ``fn(*args)`` on sksnn's one helper thread (created on first use, per process).

    A forked child inherits the executor object but not its thread, hence the process check.
    Tasks must not wait on other tasks of this executor.
    """
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sksnn")
            _executor_pid = os.getpid()
        return _executor.submit(fn, *args)


@contextmanager
def _loop_threads(n_elements: int) -> Iterator[None]:
    """Run the enclosed per-step operations single-threaded when they are small."""
    n_threads = torch.get_num_threads()
    if n_threads == 1 or n_elements >= _THREADED_LOOP_ELEMENTS:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


def _row_parts(like: Tensor) -> list[slice]:
    """The batch rows each thread simulates: two halves, or all rows on this thread."""
    _, n_samples, n_units = like.shape
    if (
        like.device.type != "cpu"
        or torch.get_num_threads() < 2
        or n_samples * n_units < _SPLIT_ELEMENTS
    ):
        return [slice(0, n_samples)]
    unit = _SPLIT_ALIGN // math.gcd(_SPLIT_ALIGN, n_units)  # rows per aligned block
    mid = round(n_samples / (2 * unit)) * unit
    if not 0 < mid < n_samples:
        return [slice(0, n_samples)]
    return [slice(0, mid), slice(mid, n_samples)]


def _run_parts(fn: Callable[[slice], None], parts: list[slice], n_elements: int) -> None:
    """``fn(rows)`` for every part: the first on the helper thread, the rest here."""
    inference = torch.is_inference_mode_enabled()

    def run(rows: slice) -> None:
        # Grad and inference modes are per thread; the buffers were made in the caller's.
        with torch.inference_mode(inference), torch.no_grad(), _loop_threads(n_elements):
            fn(rows)

    pending = background(run, parts[0]) if len(parts) > 1 else None
    try:
        for rows in parts[1:] if pending is not None else parts:
            run(rows)
    finally:
        if pending is not None:
            pending.result()


def _sigmoid_beta(params) -> float | None:
    """``beta`` when the surrogate is ``beta s (1 - s)`` with ``s = sigmoid(beta x)``, else None.

    That is the matched surrogate of sigmoid escape noise (the package default) and the
    literature's sigmoid surrogate. For these the forward pass stores ``s`` instead of the
    membrane, and the backward pass gets ``D[n] dL/dS[n]`` from ``s`` in one fused operation
    (``sigmoid_backward``) instead of evaluating the surrogate formula. Exact types only: a
    subclass may redefine the derivative.
    """
    surrogate = params.surrogate
    if type(surrogate) is Sigmoid or (
        type(surrogate) is Matched and type(surrogate.escape_noise) is SigmoidNoise
    ):
        return float(surrogate.beta)
    return None


@dataclass
class _History:
    """What the forward pass keeps for the backward pass and for ``record_membrane``."""

    spikes: Tensor
    membrane: Tensor | None  # U[n]: recorded, or needed by a generic surrogate
    sigmoid: Tensor | None  # sigmoid(beta (U[n] - theta)) for the sigmoid surrogates
    pre_reset: Tensor | None  # A[n]: zero reset with a differentiable reset only

    def rows(self, rows: slice) -> _History:
        return _History(*(None if t is None else t[:, rows] for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor | None, ...]:
        return (self.spikes, self.membrane, self.sigmoid, self.pre_reset)


def _run_forward(
    drive: Tensor,
    params,
    uniform: Tensor | None,
    recurrent_weight: Tensor | None,
    for_backward: bool,
    record_membrane: bool,
) -> _History:
    """The time loop without autograd; returns the spikes and the histories asked for."""
    n_steps, n_samples, n_units = drive.shape
    beta = _sigmoid_beta(params) if for_backward else None

    def history(needed: bool) -> Tensor | None:
        return drive.new_empty(n_steps, n_samples, n_units) if needed else None

    hist = _History(
        spikes=drive.new_empty(n_steps, n_samples, n_units),
        membrane=history(record_membrane or (for_backward and beta is None)),
        sigmoid=history(beta is not None),
        pre_reset=history(for_backward and params.reset == "zero" and not params.detach_reset),
    )

    def run(rows: slice) -> None:
        _forward_rows(
            hist.rows(rows),
            drive[:, rows],
            None if uniform is None else uniform[:, rows],
            recurrent_weight,
            params,
            beta,
        )

    _run_parts(run, _row_parts(drive), n_samples * n_units)
    return hist


def _forward_rows(
    hist: _History,
    drive: Tensor,
    uniform: Tensor | None,
    recurrent_weight: Tensor | None,
    params,
    beta: float | None,
) -> None:
    """The forward loop over some rows of the batch, writing into ``hist``.

    Every value is computed by the same elementwise operation as in ``lif_reference``, or by
    one that is exact on 0/1 spikes, so spikes and membranes are bit-identical to it.
    """
    n_steps, n_samples, n_units = drive.shape
    shape = (n_samples, n_units)
    theta, temperature = params.threshold, params.temperature
    # With sigmoid escape noise at T = 1 / beta the spike probability is the sigmoid needed.
    reuse_probability = (
        beta is not None
        and params.stochastic
        and type(params.escape_noise) is SigmoidNoise
        and beta * temperature == 1.0
    )
    membrane = hist.membrane
    u = membrane[0] if membrane is not None else drive.new_empty(shape)
    u.zero_()
    u_spare = None if membrane is not None else drive.new_empty(shape)
    i = drive.new_zeros(shape)
    v = drive.new_empty(shape)
    rec = drive.new_empty(shape) if recurrent_weight is not None else None
    recurrent_t = recurrent_weight.t() if recurrent_weight is not None else None
    for n in range(n_steps):
        s = hist.spikes[n]
        if reuse_probability:
            # sample_spikes' own operations, keeping the probability.
            torch.sub(u, theta, out=v)
            p = torch.sigmoid(v.div_(temperature), out=hist.sigmoid[n])
            torch.lt(uniform[n], p, out=s)
        else:
            if params.stochastic:
                torch.sub(u, theta, out=v)
                sample_spikes(v, uniform[n], temperature, params.escape_noise, out=s)
            else:
                # [U > theta] is [U - theta > 0] exactly (a difference of floats is 0 only
                # when they are equal), without the subtraction.
                torch.gt(u, theta, out=s)
            if beta is not None:
                torch.sub(u, theta, out=v)
                torch.sigmoid(v.mul_(beta), out=hist.sigmoid[n])
        if n == n_steps - 1:
            break  # U[T] and I[T] are never observed
        u_next = membrane[n + 1] if membrane is not None else u_spare
        torch.lerp(i, u, params.alpha_mem, out=u_next)
        if hist.pre_reset is not None:
            hist.pre_reset[n].copy_(u_next)
        if params.reset == "zero":
            # u - u * s is u * (1 - s) exactly for s in {0, 1}, in one operation.
            u_next.addcmul_(u_next, s, value=-1.0)
        elif params.reset == "subtract":
            u_next.sub_(s, alpha=theta)
        torch.add(drive[n], i, alpha=params.alpha_syn, out=i)
        if rec is not None:
            i.add_(torch.mm(s, recurrent_t, out=rec))
        if membrane is None:
            u_spare = u
        u = u_next


class _FusedLIF(torch.autograd.Function):
    """Autograd node of the fused layer; see the module docstring for the equations."""

    @staticmethod
    def forward(ctx, drive, recurrent_weight, uniform, params, record_membrane):  # type: ignore[override]
        hist = _run_forward(drive, params, uniform, recurrent_weight, True, record_membrane)
        ctx.params = params
        # Only the drive's layout is needed later; keeping the tensor would keep it alive.
        ctx.batch_major = _is_batch_major(drive)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*hist._tensors(), recurrent_weight)
        return hist.spikes, (hist.membrane if record_membrane else None)

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane):  # type: ignore[override]
        *saved, recurrent_weight = ctx.saved_tensors
        grad_drive, grad_rec = _run_backward(
            _History(*saved),
            recurrent_weight,
            grad_spikes,
            grad_membrane,
            ctx.params,
            ctx.batch_major,
            need_drive=ctx.needs_input_grad[0],
            need_rec=ctx.needs_input_grad[1],
        )
        return grad_drive, grad_rec, None, None, None


def _is_batch_major(drive: Tensor) -> bool:
    """Whether ``drive`` (time-major shape) is a transposed view of a batch-major tensor.

    That is the drive of a layer fed by batch-major 3-D input; giving its gradient the same
    layout lets the projection's backward use it without a copy.
    """
    return (
        drive.shape[0] > 1 and not drive.is_contiguous() and drive.transpose(0, 1).is_contiguous()
    )


def _run_backward(
    hist: _History,
    recurrent_weight: Tensor | None,
    grad_spikes: Tensor | None,
    grad_membrane: Tensor | None,
    params,
    batch_major: bool,
    need_drive: bool,
    need_rec: bool,
) -> tuple[Tensor | None, Tensor | None]:
    spikes = hist.spikes
    n_steps, n_samples, n_units = spikes.shape
    # gp[n] holds gI[n + 1] / (1 - a) while the loop runs (the scale saves one operation per
    # step), dL/dP[n] = gI[n + 1] after the final rescaling; every entry but the last is
    # written by the loop.
    if batch_major:
        gp = spikes.new_empty(n_samples, n_steps, n_units).transpose(0, 1)
    else:
        gp = spikes.new_empty(n_steps, n_samples, n_units)
    gp[-1].zero_()

    def run(rows: slice) -> None:
        _backward_rows(
            hist.rows(rows),
            gp[:, rows],
            recurrent_weight,
            None if grad_spikes is None else grad_spikes[:, rows],
            None if grad_membrane is None else grad_membrane[:, rows],
            params,
        )

    _run_parts(run, _row_parts(spikes), n_samples * n_units)
    gp.mul_(1.0 - params.alpha_mem)
    grad_rec = None
    if need_rec and recurrent_weight is not None:
        # gV = sum_n gI[n+1]^T S[n] = gP^T S over all (step, sample) rows; S is binary.
        gv_t = binary_matmul_t(
            spikes.reshape(n_steps * n_samples, n_units), gp.reshape(n_steps * n_samples, -1)
        )
        grad_rec = gv_t.t()
    return (gp if need_drive else None), grad_rec


def _backward_rows(
    hist: _History,
    gp: Tensor,
    recurrent_weight: Tensor | None,
    grad_spikes: Tensor | None,
    grad_membrane: Tensor | None,
    params,
) -> None:
    """The adjoint loop over some rows of the batch, writing ``gI[n + 1] / (1 - a)`` to ``gp``."""
    spikes = hist.spikes
    n_steps, n_samples, n_units = spikes.shape
    a_mem, a_syn, theta = params.alpha_mem, params.alpha_syn, params.threshold
    beta = _sigmoid_beta(params)
    zero_reset = params.reset == "zero"
    reset_grad = not params.detach_reset and params.reset != "none"
    # gS[n] is known before the loop unless it depends on gU[n+1] or gI[n+1].
    gs_known = recurrent_weight is None and not reset_grad
    gu = spikes.new_zeros(n_samples, n_units)  # gU[n + 1]
    gu_new = spikes.new_empty(n_samples, n_units)
    gs = spikes.new_empty(n_samples, n_units)
    ga = spikes.new_empty(n_samples, n_units)
    src = spikes.new_empty(n_samples, n_units)
    zero = spikes.new_zeros(n_samples, n_units)
    block = max(1, _BLOCK_ELEMENTS // max(1, n_samples * n_units))
    stop = n_steps
    while stop > 1:
        start = max(0, stop - block)
        # Elementwise terms of this block of steps, vectorised over the block.
        if gs_known:
            # e[n] = D[n] dL/dS[n], the whole source term of the gU recursion.
            e = None
            if grad_spikes is not None:
                e = _surrogate_times(hist, grad_spikes, start, stop, params, beta)
        else:
            d = _surrogate_times(hist, None, start, stop, params, beta)
        # U[0] = I[0] = 0 are constants: step 0 passes nothing further back.
        for n in range(stop - 1, max(start, 1) - 1, -1):
            j = n - start
            gi = gp[n]  # gI[n + 1] / (1 - a), from step n + 1 (zero at the last step)
            if gs_known:
                source = e[j] if e is not None else zero
            else:
                if grad_spikes is not None:
                    gs.copy_(grad_spikes[n])
                else:
                    gs.zero_()
                if recurrent_weight is not None and n < n_steps - 1:
                    gs.addmm_(gi, recurrent_weight, alpha=1.0 - a_mem)
                if reset_grad and n < n_steps - 1:
                    if zero_reset:
                        gs.addcmul_(gu, hist.pre_reset[n], value=-1.0)
                    else:
                        gs.add_(gu, alpha=-theta)
                source = gs.mul_(d[j])
            if grad_membrane is not None:
                source = torch.add(source, grad_membrane[n], out=src)
            if zero_reset:
                # r[n] gU[n+1] = gU[n+1] (1 - S[n]), exact, in one operation
                gr = torch.addcmul(gu, gu, spikes[n], value=-1.0, out=ga)
            else:
                gr = gu
            torch.add(source, gr, alpha=a_mem, out=gu_new)
            torch.add(gr, gi, alpha=a_syn, out=gp[n - 1])
            gu, gu_new = gu_new, gu
        stop = start


def _surrogate_times(
    hist: _History, grad: Tensor | None, start: int, stop: int, params, beta: float | None
) -> Tensor:
    """``D[n] * grad[n]`` (or ``D[n]`` when ``grad`` is None) for the steps ``start:stop``."""
    if beta is not None:
        s = hist.sigmoid[start:stop]
        if grad is None:
            return torch.rsub(s, 1.0).mul_(s).mul_(beta)
        # sigmoid_backward(g, s) = g s (1 - s): the derivative and the product in one pass.
        return torch.ops.aten.sigmoid_backward(grad[start:stop], s).mul_(beta)
    d = params.surrogate.derivative(hist.membrane[start:stop] - params.threshold)
    return d if grad is None else d * grad[start:stop]


def lif_fused(
    drive: Tensor,
    params,
    uniform: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    record_membrane: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run a LIF layer with the fused engine; same contract as :func:`sksnn.lif.lif_reference`.

    Without gradients (``torch.no_grad``/``inference_mode``, or no input requiring grad) the
    loop runs directly and keeps no history unless ``record_membrane``.
    """
    if params.stochastic and uniform is None:
        raise ValueError("A stochastic neuron (temperature > 0) needs uniform noise.")
    needs_grad = torch.is_grad_enabled() and (
        drive.requires_grad or (recurrent_weight is not None and recurrent_weight.requires_grad)
    )
    if not needs_grad:
        hist = _run_forward(
            drive.detach(),
            params,
            uniform,
            None if recurrent_weight is None else recurrent_weight.detach(),
            False,
            record_membrane,
        )
        return hist.spikes, hist.membrane
    return _FusedLIF.apply(drive, recurrent_weight, uniform, params, record_membrane)
