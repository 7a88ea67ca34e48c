"""The compiled engine: the fused engine's autograd node with its time loops compiled by numba.

The fused engine (:mod:`sksnn.engines.fused`) runs a dozen torch operations per time step;
on a CPU their dispatch and their passes over memory, not the arithmetic, cost most of a
training step. Here the forward loop and the adjoint (:mod:`sksnn.engines._kernels`) each run
all steps of a sample in one compiled loop, samples split over torch's threads. A layer driven
by dense currents keeps the surrogate derivatives (and, for a differentiable zero reset, the
pre-reset potentials) for the adjoint, as the fused engine keeps its histories. A layer whose
input is 0/1 and sparse takes the input's events: the loops add the weight rows of the active
inputs where they need a step's current, the forward pass keeps checkpoints of ``U`` and ``I``
every block of steps, the adjoint recomputes each block from its checkpoint, and the weight
gradient is scattered event by event. Counter-based uniform numbers
(:class:`~sksnn.noise.CounterUniform`) are computed where each spike is drawn, never stored.

Spikes are 0/1 and few, so the products with them run event by event. The forward loop of a
layer whose spikes feed another layer, whose recurrent weight needs a gradient, or that drives
the readout summarises each step's spikes in bit masks while the step is in the cache. From
the masks, the last hidden layer's loop adds up the readout's currents ``S W_out^T`` (the
node of :meth:`CompiledEngine.run_last_layer` returns them) and the backward pass scatters the
readout's weight gradient; for the other layers the spikes' events are listed once the loop
ends: the next layer takes them as its input's events (they travel with the spikes tensor,
:func:`_spike_events`), and they give the recurrent weight's gradient. The last layer's
adjoint adds the currents' gradient ``dL/dC[t] W_out`` to ``dL/dS[t]`` where it needs it, so
that no gradient the size of all the spikes is written by a matrix product and read back. The
readout's leaky integration (:meth:`CompiledEngine.integrate_readout`) runs as its recursion,
forward and backward, each sample and output on its own.

A recurrent layer adds ``S[t] V^T`` inside the forward loop, from the rows of ``V^T`` of the
units that spiked; its adjoint runs step by step with ``dL/dI[t+1] V`` a torch (BLAS) product
between the compiled steps, that product being dense. Each thread runs all steps of its own
samples, its rows of the product included (torch runs an operation inside a parallel region
on the calling thread alone), so that a block costs one parallel region, not two per step.

The compiled loops serve CPU tensors of float32 or float64, the built-in escape noises and the
surrogates that name a compiled form (:meth:`~sksnn.surrogates.Surrogate.compiled_form`);
anything else (CUDA, a user-defined surrogate) runs on the fused engine's torch path, with the
same results. Spikes agree with the reference loop's, membranes and gradients to round-off:
the compiled loop evaluates ``exp`` with its own polynomial, sums event currents in its own
order and lets the compiler fuse multiply-adds, so a spike could only differ where the
potential lies within an ulp of its threshold or noise draw.

The first use of each configuration compiles its loops (a few seconds), after which numba's
disk cache serves every later process.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._parallel import map_threads, tasks_run_torch_single_threaded
from .._sparse import StepPattern, prefer_sparse
from ..neuron import LIFParameters
from ..noise import CounterUniform, cell_hashes
from ._fused import _DenseLayout, _DenseSource, _is_batch_major, _needs_grad, _source
from ._fused_steps import block_length, blocks_of
from .base import _affine, is_constant_in_time, project
from .fused import FusedEngine, _pattern

__all__ = ["CompiledEngine", "compiled_available"]

# Below this many (sample, unit, step) cells a kernel runs on the calling thread: handing work
# to the pool costs tens of microseconds.
_PARALLEL_CELLS = 1 << 16


@functools.cache
def compiled_available() -> bool:
    """Whether the compiled kernels load here (numba installed and working); checked once.

    A numba that is installed but fails to import or to set up its cache gives a warning and
    False: everything then runs on the fused engine and torch's operations.
    """
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from . import _kernels  # noqa: F401
    except Exception as error:  # numba's own checks raise many kinds of errors
        warnings.warn(
            f"numba is installed but the compiled kernels do not load ({error!r}); "
            "sksnn runs without them (engine='fused').",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


class CompiledEngine(FusedEngine):
    """Compiled time loops on the CPU; the fused engine's torch path elsewhere."""

    name = "compiled"
    # the step memory of benchmarks/bench_engine.py per unit, step and sample, with a margin
    bytes_per_unit_step = 24

    def __init__(self) -> None:
        if not compiled_available():
            raise ValueError(
                "The compiled LIF engine needs numba (pip install numba); "
                "engine='fused' runs without it."
            )

    def run_currents(self, drive, params, uniform, recurrent_weight, record_membrane):
        modes = _modes(params, drive, recurrent_weight, uniform)
        if modes is None:
            return super().run_currents(drive, params, uniform, recurrent_weight, record_membrane)
        spikes, membrane, _ = _run(
            drive, None, None, None, recurrent_weight, params, modes, uniform, record_membrane
        )
        return spikes, membrane

    def run_layer(
        self, layer_input, weight, params, uniform, recurrent_weight, record_membrane, bias=None
    ):
        modes = _modes(params, weight, recurrent_weight, uniform)
        if modes is None:
            return super().run_layer(
                layer_input, weight, params, uniform, recurrent_weight, record_membrane, bias
            )
        spikes, membrane, _ = self._layer(
            layer_input, weight, params, uniform, recurrent_weight, record_membrane, bias, modes
        )
        return spikes, membrane

    def run_last_layer(
        self,
        layer_input,
        weight,
        params,
        uniform,
        recurrent_weight,
        record_membrane,
        bias,
        readout_weight,
    ):
        modes = _modes(params, weight, recurrent_weight, uniform)
        if modes is None or readout_weight.dtype != weight.dtype:
            return super().run_last_layer(
                layer_input,
                weight,
                params,
                uniform,
                recurrent_weight,
                record_membrane,
                bias,
                readout_weight,
            )
        return self._layer(
            layer_input,
            weight,
            params,
            uniform,
            recurrent_weight,
            record_membrane,
            bias,
            modes,
            readout_weight,
        )

    def integrate_readout(self, currents, alpha_syn, alpha_mem):
        if currents.device.type != "cpu" or currents.dtype not in (torch.float32, torch.float64):
            return super().integrate_readout(currents, alpha_syn, alpha_mem)
        return _LeakyFilter.apply(currents, float(alpha_syn), float(alpha_mem))

    def _layer(
        self,
        layer_input,
        weight,
        params,
        uniform,
        recurrent_weight,
        record,
        bias,
        modes,
        readout_weight=None,
    ):
        """A compiled layer: spikes, membranes and, with ``readout_weight``, the readout's
        currents."""
        pattern = layer_input.events
        if pattern is None:
            pattern = _spike_events(layer_input.values, weight.shape[0])
        if pattern is None:
            pattern = _pattern(layer_input, weight)
        x = layer_input.values
        common = (params, modes, uniform, record)
        # without a readout, the spikes feed the next layer
        tail = (readout_weight, readout_weight is None)
        if pattern is None and recurrent_weight is None and is_constant_in_time(x):
            # the same current every step: projected once, its gradient summed by the adjoint
            once = _affine(x[0], weight, bias, None)
            return _run(once, None, None, None, None, *common, len(x), *tail)
        if pattern is None:
            drive = project(x, weight, bias=bias)
            return _run(drive, None, None, None, recurrent_weight, *common, None, *tail)
        return _run(x, weight, pattern, bias, recurrent_weight, *common, None, *tail)


def _modes(
    params: LIFParameters,
    like: Tensor,
    recurrent_weight: Tensor | None,
    uniform: Tensor | None = None,
) -> _Modes | None:
    """The kernels' modes for a layer, or None where the compiled loops do not apply."""
    if like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64):
        return None
    if isinstance(uniform, Tensor) and uniform.dtype != like.dtype:
        return None  # torch compares in the wider type, the kernels in the layer's
    form = params.surrogate.compiled_form()
    noise = params.escape_noise.compiled_form() if params.stochastic else "deterministic"
    if form is None or noise is None:
        return None
    from . import _kernels

    shape, beta = form
    return _Modes(
        noise=_kernels.NOISES[noise],
        reset=_kernels.RESETS[params.reset],
        reset_grad=not params.detach_reset and params.reset != "none",
        shape=_kernels.SHAPES[shape],
        beta=beta,
        # the surrogate is the derivative of the escape noise's probability
        matched=noise == "sigmoid"
        and shape == "logistic"
        and math.isclose(beta * params.temperature, 1.0, rel_tol=1e-12),
    )


@dataclass(frozen=True)
class _Modes:
    """A layer's kernel modes (codes of :mod:`sksnn.engines._kernels`) and surrogate steepness."""

    noise: int
    reset: int
    reset_grad: bool
    shape: int
    beta: float
    matched: bool = False


def _run(
    first,
    weight,
    pattern,
    bias,
    recurrent_weight,
    params,
    modes,
    uniform,
    record,
    n_steps=None,
    readout_weight=None,
    feeds_layer=False,
):
    """A compiled layer: spikes, membranes (or None) and, with ``readout_weight``, the
    readout's currents (else None). ``first`` is the drive (n_steps, n_samples, n_units), or
    with ``n_steps`` the one current (n_samples, n_units) of every step, or with ``pattern``
    the binary layer input. The spikes of a layer that ``feeds_layer`` carry their events
    (:func:`_spike_events`)."""
    if params.stochastic and uniform is None:
        raise ValueError("A stochastic neuron (temperature > 0) needs uniform noise.")
    if _needs_grad(first, weight, bias, recurrent_weight, readout_weight):
        return _CompiledLIF.apply(
            first,
            weight,
            bias,
            recurrent_weight,
            readout_weight,
            uniform,
            params,
            modes,
            record,
            pattern,
            n_steps,
            feeds_layer,
        )
    with torch.no_grad():
        _, saved, currents = _layer_forward(
            first, weight, pattern, bias, n_steps, recurrent_weight, readout_weight,
            params, modes, uniform, record, False, feeds_layer,
        )  # fmt: skip
    return saved.spikes, saved.membrane, currents


def _layer_forward(
    first, weight, pattern, bias, n_steps, recurrent_weight, readout_weight, params, modes,
    uniform, record, for_backward, feeds_layer,
):  # fmt: skip
    """The layer's source, what :func:`_forward` returns, and the readout's currents (None
    without ``readout_weight``): the forward pass with or without a backward to come."""
    source, shape = _node_source(first, weight, pattern, bias, n_steps)
    like = first if pattern is None else weight
    rec = None if recurrent_weight is None else recurrent_weight.detach()
    readout = None if readout_weight is None else readout_weight.detach()
    # The spikes' events are the next layer's input events and give the recurrent weight's
    # gradient.
    keep_events = feeds_layer or (for_backward and rec is not None)
    saved = _forward(
        source, shape, like, rec, params, modes, uniform, record, for_backward, keep_events,
        readout,
    )  # fmt: skip
    if feeds_layer:
        setattr(saved.spikes, _EVENTS, saved.events)
    return source, saved, saved.currents


# The attribute of the spikes of a compiled layer that holds their events.
_EVENTS = "_sksnn_spike_events"


def _spike_events(x: Tensor | None, width: int) -> StepPattern | None:
    """The events of spikes that a compiled layer returned, if few enough for an event-driven
    product of ``width`` outputs (else, as for any other tensor, None): the next compiled
    layer takes them as its input's events instead of finding them again."""
    events = getattr(x, _EVENTS, None)
    if events is None or not prefer_sparse(events.nnz / max(1, x.numel()), width):
        return None
    return events


# --------------------------------------------------------------------------------------------
# Arrays for the kernels
# --------------------------------------------------------------------------------------------


def _rows(x: Tensor) -> tuple[np.ndarray, int, int]:
    """``x`` (n_steps, n_samples, n) as a C-contiguous 2-D array of rows and the row strides
    of a step and of a sample, without a copy for time-major, batch-major and
    constant-in-time layouts."""
    n_steps, n_samples, n = x.shape
    if is_constant_in_time(x) and x[0].is_contiguous():
        return x[0].detach().numpy(), 0, 1
    if _is_batch_major(x):
        return x.detach().transpose(0, 1).reshape(-1, n).numpy(), 1, n_steps
    return x.detach().contiguous().reshape(-1, n).numpy(), n_samples, 1


def _history(x: Tensor | None, dtype: torch.dtype) -> np.ndarray | None:
    """A (n_steps, n_samples, n) tensor as a C-contiguous array of ``dtype``."""
    if x is None:
        return None
    return x.detach().to(dtype).contiguous().numpy()


def _constants(params: LIFParameters, modes: _Modes, dtype: torch.dtype) -> np.ndarray:
    from ._kernels import constants

    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    temperature = params.temperature if params.stochastic else 1.0
    return constants(
        np_dtype, params.alpha_mem, params.alpha_syn, params.threshold, temperature, modes.beta
    )


def _ranges(n_items: int, cells: int) -> list[tuple[int, int]]:
    """Ranges of samples (or rows) for the threads: one per thread, or one when the work is
    small."""
    n_threads = max(1, torch.get_num_threads())
    n_parts = 1 if cells < _PARALLEL_CELLS else min(n_threads, n_items)
    bounds = [n_items * k // max(1, n_parts) for k in range(n_parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _over_samples(kernel, n_samples: int, cells: int, args: tuple) -> None:
    """``kernel(b0, b1, *args)`` over ranges of samples ``b0:b1`` (or of other items), one per
    thread."""
    ranges = _ranges(n_samples, cells)
    if len(ranges) == 1:
        kernel(*ranges[0], *args)
        return
    map_threads(lambda k: kernel(*ranges[k], *args), len(ranges))


# --------------------------------------------------------------------------------------------
# Forward and backward
# --------------------------------------------------------------------------------------------


def _forward(
    source, shape, like, recurrent_weight, params, modes, uniform, record, for_backward,
    keep_events=False, readout_weight=None,
):  # fmt: skip
    """The forward loop: spikes, membranes (if ``record``), the spikes' events (if
    ``keep_events``), with ``readout_weight`` the readout's currents ``S W_out^T`` and the
    spikes' bit masks (for the readout's weight gradient), and what the backward pass needs
    (``for_backward``): block checkpoints of ``U`` and ``I`` for a source that is recomputed,
    else the histories of ``D`` (and ``A`` when the reset passes a gradient)."""
    from ._kernels import RESETS, specialised

    n_steps, n_samples, n_units = shape
    dtype = like.dtype
    keep_d = for_backward and not source.checkpointed
    keep_a = keep_d and modes.reset_grad and modes.reset == RESETS["zero"]
    saved = _Saved(
        spikes=like.new_empty(shape),
        membrane=like.new_empty(shape) if record else None,
        derivative=like.new_empty(shape) if keep_d else None,
        pre_reset=like.new_empty(shape) if keep_a else None,
    )
    u_state = like.new_zeros(n_samples, n_units)
    i_state = like.new_zeros(n_samples, n_units)
    s_np = saved.spikes.detach().numpy()
    outputs = tuple(
        s_np if x is None else x.numpy()
        for x in (saved.membrane, saved.derivative, saved.pre_reset)
    )
    numbers = _Numbers(uniform, shape, dtype, s_np) if modes.noise else _Numbers.unused(s_np)
    u_np, i_np = u_state.numpy(), i_state.numpy()
    c = _constants(params, modes, dtype)
    events = _Events.of(source, dtype)
    fed_back = _feedback_rows(recurrent_weight, s_np)
    n_words = (n_units + 31) // 32
    readout = readout_weight is not None
    keep_masks = keep_events or readout
    masks = np.empty((n_steps * n_samples if keep_masks else 1, n_words), dtype=np.uint32)
    if readout:
        from ._kernels import VECTOR_WIDTH

        # rows padded to whole vectors for the loop's additions
        n_outputs = readout_weight.shape[0]
        width = -(-n_outputs // VECTOR_WIDTH) * VECTOR_WIDTH
        readout_t = like.new_zeros(n_units, width)
        readout_t[:, :n_outputs] = readout_weight.t()
        readout_t = readout_t.numpy()
        padded = like.new_empty(n_steps, n_samples, width)
        currents_np = padded.numpy().reshape(-1, width)
        saved.currents = padded[..., :n_outputs]
    else:
        readout_t = currents_np = u_np
    surrogate = modes.shape if keep_d else 0  # unused otherwise: one specialisation
    kernel = specialised(
        "forward",
        s_np.dtype,
        modes.noise,
        numbers.counter,
        events is not None,
        recurrent_weight is not None,
        modes.reset,
        bool(record),
        surrogate,
        keep_d,
        keep_a,
        True,
        keep_masks,
        readout,
        keep_d and modes.matched,
    )
    blocks = blocks_of(n_steps, block_length(*shape, True) if source.checkpointed else n_steps)
    if for_backward and source.checkpointed:
        saved.checkpoints = like.new_empty(len(blocks), 2, n_samples, n_units)
    for k, (start, stop) in enumerate(blocks):
        if saved.checkpoints is not None:
            saved.checkpoints[k, 0].copy_(u_state)
            saved.checkpoints[k, 1].copy_(i_state)
        if events is not None:
            current = events.arguments(s_np)
        else:
            current = (*_rows(source.block(start, stop)), *_Events.unused(s_np))
        args = (start, stop, *current, *numbers.arguments(), fed_back, u_np, i_np, s_np)
        args += (*outputs, masks, readout_t, currents_np, c)
        _over_samples(kernel, n_samples, (stop - start) * n_samples * n_units, args)
    if readout:
        saved.masks = masks
    if keep_events:
        from ._kernels import spike_events

        offsets, keys, cols = (torch.from_numpy(a) for a in spike_events(masks))
        saved.events = StepPattern(keys, cols, offsets, n_samples, n_units)
    return saved


def _feedback_rows(recurrent_weight: Tensor | None, like_np: np.ndarray) -> np.ndarray:
    """``V^T`` as C-contiguous rows (row ``j``: the currents unit ``j``'s spike adds), or a
    placeholder for a layer without recurrence."""
    if recurrent_weight is None:
        return like_np.reshape(-1, like_np.shape[-1])
    return recurrent_weight.detach().t().contiguous().numpy()


_NO_MASKS = np.zeros((1, 1), dtype=np.uint32)


class _Numbers:
    """The uniform numbers as the forward kernel takes them: an array (``counter`` False) or
    the per-sample bases and hashed cells of a :class:`~sksnn.noise.CounterUniform`."""

    _NO_BASES = np.zeros(1, dtype=np.uint32)
    _NO_CELLS = np.zeros((1, 1), dtype=np.uint32)

    def __init__(self, uniform, shape, dtype, like_np) -> None:
        if isinstance(uniform, CounterUniform):
            uniform.check_shape(shape)
            self.counter = True
            self.array = like_np
            self.bases = uniform.bases.numpy().astype(np.uint32)
            self.cells = cell_hashes(shape[0], shape[2])
        else:
            self.counter = False
            # broadcast as torch would (and refused if it cannot be): the kernels check no
            # bounds
            self.array = _history(uniform.expand(shape), dtype)
            self.bases, self.cells = self._NO_BASES, self._NO_CELLS

    @classmethod
    def unused(cls, like_np) -> _Numbers:
        numbers = cls.__new__(cls)
        numbers.counter = False
        numbers.array, numbers.bases, numbers.cells = like_np, cls._NO_BASES, cls._NO_CELLS
        return numbers

    def arguments(self) -> tuple:
        return self.array, self.bases, self.cells


class _Events:
    """The active entries of a layer's 0/1 input with its transposed weight and bias, as the
    kernels take them to compute the input current where they use it."""

    _NO_INDEX = np.zeros(1, dtype=np.int32)

    def __init__(self, pattern, weight_t: Tensor, bias: Tensor) -> None:
        self.n_samples = pattern.n_samples
        self.offsets = np.ascontiguousarray(pattern.offsets.numpy(), dtype=np.int32)
        self.cols = np.ascontiguousarray(pattern.cols.numpy(), dtype=np.int32)
        self.weight_t = weight_t.numpy()
        self.bias = bias.numpy()

    @classmethod
    def of(cls, source, dtype: torch.dtype) -> _Events | None:
        """The events of a pattern source on the CPU, else None (a dense drive)."""
        if not source.checkpointed:
            return None
        weight_t = source.weight_t.to(dtype).contiguous()
        n_units = weight_t.shape[1]
        bias = weight_t.new_zeros(n_units) if source.bias is None else source.bias.to(dtype)
        return cls(source.pattern, weight_t, bias.contiguous())

    def arguments(self, like_np: np.ndarray, start: int = 0, stop: int | None = None) -> tuple:
        """The kernels' current arguments: no rows, then the events; with ``start``/``stop``
        those of steps ``start:stop``, numbered from 0."""
        rows = like_np.reshape(-1, like_np.shape[-1])
        offsets = self.offsets
        if stop is not None:
            offsets = offsets[start * self.n_samples : stop * self.n_samples + 1]
        return rows, 0, 0, offsets, self.cols, self.weight_t, self.bias

    @classmethod
    def unused(cls, like_np: np.ndarray) -> tuple:
        """Placeholders for the events of a drive given as rows."""
        rows = like_np.reshape(-1, like_np.shape[-1])
        return cls._NO_INDEX, cls._NO_INDEX, rows, rows[0]


@dataclass
class _Saved:
    """What the forward pass returns and keeps; each None unless needed."""

    spikes: Tensor
    membrane: Tensor | None = None
    derivative: Tensor | None = None  # D[n] = surrogate'(U[n] - threshold)
    pre_reset: Tensor | None = None  # A[n]
    checkpoints: Tensor | None = None  # (n_blocks, 2, n_samples, n): U and I at block starts
    events: StepPattern | None = None  # the spikes' events
    currents: Tensor | None = None  # the readout's currents
    masks: np.ndarray | None = None  # the spikes' bit masks, one row per time-major row


class _CompiledLIF(torch.autograd.Function):
    """Autograd node of a compiled layer. ``first`` is the drive (``pattern`` None) or the
    binary layer input whose projection by ``weight`` (plus ``bias``) is part of the node;
    ``recurrent_weight`` is ``V`` or None."""

    @staticmethod
    def forward(
        ctx,
        first,
        weight,
        bias,
        recurrent_weight,
        readout_weight,
        uniform,
        params,
        modes,
        record,
        pattern,
        n_steps,
        feeds_layer,
    ):  # type: ignore[override]
        source, saved, currents = _layer_forward(
            first, weight, pattern, bias, n_steps, recurrent_weight, readout_weight,
            params, modes, uniform, record, True, feeds_layer,
        )  # fmt: skip
        ctx.readout_weight = None if readout_weight is None else readout_weight.detach()
        ctx.params, ctx.modes, ctx.events = params, modes, saved.events
        ctx.masks = saved.masks
        # a dense drive is not kept: only its layout, for its gradient
        if pattern is not None:
            ctx.source = source
        else:
            ctx.source = _ConstantLayout() if n_steps is not None else _DenseLayout(first)
        ctx.set_materialize_grads(False)
        x = first if pattern is not None and first is not None and first.requires_grad else None
        rec = None if recurrent_weight is None else recurrent_weight.detach()
        ctx.save_for_backward(
            saved.spikes, saved.derivative, saved.pre_reset, saved.checkpoints, x, weight, rec
        )
        return saved.spikes, saved.membrane, currents

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane, grad_currents):  # type: ignore[override]
        spikes, derivative, pre_reset, checkpoints, x, weight, rec = ctx.saved_tensors
        params, modes, source = ctx.params, ctx.modes, ctx.source
        need_first, need_weight, need_bias, need_rec, need_readout = ctx.needs_input_grad[:5]
        readout = None
        grad_readout = None
        if grad_currents is not None:
            readout = (grad_currents, ctx.readout_weight)
            if need_readout:
                n_units = spikes.shape[2]
                grad_t = _masks_t_product(ctx.masks, n_units, grad_currents, spikes.dtype)
                grad_readout = grad_t.t()
        adjoint = _Adjoint(spikes, grad_spikes, grad_membrane, params, modes, rec, readout)
        n_steps, n_samples, n_units = spikes.shape
        # dL/dV^T = sum_t S[t]^T dL/dI[t + 1], from the spikes' events
        grad_rec_t = spikes.new_zeros(n_units, n_units) if need_rec else None
        if not source.checkpointed:
            grad_drive = source.empty_like_drive(spikes)
            adjoint.run(0, n_steps, grad_drive, derivative, pre_reset, None)
            grad_rec = None
            if need_rec:
                # time-major rows, the order of the events' keys
                rows = grad_drive.contiguous().view(-1, n_units)
                _weight_grad(ctx.events, 0, n_steps, rows, grad_rec_t)
                grad_rec = grad_rec_t.t()
            return (grad_drive, None, None, grad_rec, grad_readout, *(None,) * 7)

        grad_first = torch.empty_like(x) if need_first else None
        grad_weight_t = None
        if need_weight:
            grad_weight_t = weight.new_zeros(weight.shape[1], weight.shape[0])
        if need_bias:  # each sample's sum over the steps, from the adjoint
            adjoint.bias_rows = spikes.new_zeros(n_samples, n_units)
        events = _Events.of(source, spikes.dtype)
        blocks = blocks_of(n_steps, block_length(n_steps, n_samples, n_units, True))
        for k in reversed(range(len(blocks))):
            start, stop = blocks[k]
            current = events if events is not None else source.block(start, stop)
            gp = spikes.new_empty(stop - start, n_samples, n_units)
            adjoint.run(start, stop, gp, None, None, (current, checkpoints[k]))
            flat = gp.view(-1, n_units)
            if need_weight:
                _weight_grad(source.pattern, start, stop, flat, grad_weight_t)
            if grad_first is not None:
                _product_into(flat, weight, grad_first[start:stop])
            if need_rec:
                _weight_grad(ctx.events, start, stop, flat, grad_rec_t)
        grad_weight = grad_weight_t.t() if need_weight else None
        grad_bias = adjoint.bias_rows.sum(0) if need_bias else None
        grad_rec = grad_rec_t.t() if need_rec else None
        return (grad_first, grad_weight, grad_bias, grad_rec, grad_readout, *(None,) * 7)


def _node_source(first, weight, pattern, bias, n_steps):
    """The node's drive source and (n_steps, n_samples, n_units); a current given once
    (``n_steps``) is seen as constant in time."""
    if n_steps is not None:
        drive = first.unsqueeze(0).expand(n_steps, *first.shape)
        return _DenseSource(drive), (n_steps, *first.shape)
    return _source(first, weight, pattern, bias)


class _ConstantLayout:
    """The gradient of a current given once for every step: the sum over steps, which the
    adjoint accumulates in place of one gradient per step."""

    checkpointed = False

    def empty_like_drive(self, spikes: Tensor) -> Tensor:
        return spikes.new_zeros(spikes.shape[1:])


def _weight_grad(pattern, start: int, stop: int, grad: Tensor, out: Tensor) -> None:
    """``out += X_block^T grad`` for the 0/1 input ``X`` of steps ``start:stop`` (its rows in
    the order of ``grad``'s), entry by entry; threads split ``out``'s rows, about as many
    entries each."""
    from ._kernels import scatter_rows

    k0, _, e0, e1 = pattern._range(start, stop)
    keys = (pattern.keys[e0:e1] - k0).numpy()
    cols = pattern.cols[e0:e1].numpy()
    grad_np, out_np = grad.numpy(), out.numpy()
    n_rows = out.shape[0]
    n_parts = min(torch.get_num_threads(), n_rows)
    if grad.numel() < _PARALLEL_CELLS or n_parts < 2:
        scatter_rows(0, n_rows, keys, cols, grad_np, out_np)
        return
    # row ranges holding about equal shares of the entries
    counts = np.cumsum(np.bincount(cols, minlength=n_rows))
    shares = counts[-1] * np.arange(1, n_parts) / n_parts
    bounds = [0, *np.searchsorted(counts, shares, side="right").tolist(), n_rows]
    map_threads(
        lambda k: scatter_rows(bounds[k], bounds[k + 1], keys, cols, grad_np, out_np), n_parts
    )


def _product_into(rows: Tensor, weight: Tensor, out: Tensor) -> None:
    """``out = rows @ weight`` (``out`` 3-D), written in place where ``out`` is contiguous."""
    if out.is_contiguous():
        torch.mm(rows, weight, out=out.view(-1, weight.shape[1]))
    else:  # a batch-major input's gradient
        out.copy_((rows @ weight).view(out.shape))


def _masks_t_product(masks: np.ndarray, n_units: int, grad: Tensor, dtype: torch.dtype) -> Tensor:
    """``S^T grad`` for the spikes ``S`` given by their bit ``masks`` and a ``grad`` of shape
    (n_steps, n_samples, width): the readout's weight gradient ``dL/dW_out^T`` from that of
    its currents. Threads split the units, 32 at a time."""
    from ._kernels import scatter_masks

    rows = grad.to(dtype).contiguous().view(-1, grad.shape[-1])
    n_words = masks.shape[1]
    out = rows.new_zeros(32 * n_words, rows.shape[1])
    _over_samples(scatter_masks, n_words, rows.numel(), (masks, rows.numpy(), out.numpy()))
    return out[:n_units]


class _Adjoint:
    """Runs the adjoint kernel over ranges of steps, from the last range to the first, carrying
    ``dL/dU`` and ``dL/dI`` between them."""

    def __init__(
        self, spikes, grad_spikes, grad_membrane, params, modes, recurrent_weight, readout=None
    ):
        """``readout``: the gradient of the readout's currents and the readout's weight, when
        the spikes also drive the readout (:meth:`CompiledEngine.run_last_layer`)."""
        self.spikes, self.modes, self.rec = spikes, modes, recurrent_weight
        n_samples, n_units = spikes.shape[1:]
        dtype = spikes.dtype
        self.readout = self.step_readout = None
        if readout is not None:
            grad_currents, readout_weight = readout
            n_outputs = readout_weight.shape[0]
            rows = grad_currents.detach().to(dtype).contiguous().view(-1, n_outputs)
            readout_weight = readout_weight.to(dtype).contiguous()
            if recurrent_weight is not None:
                # added to each step's recurrent product, between the compiled steps
                self.step_readout = (rows.view(-1, n_samples, n_outputs), readout_weight)
            else:
                self.readout = (rows.numpy(), readout_weight.numpy())
        self.grad_spikes = None if grad_spikes is None else grad_spikes.detach().to(dtype)
        self.s_np = spikes.numpy()
        self.gs_np = None if recurrent_weight is not None else _history(grad_spikes, dtype)
        gm_np = _history(grad_membrane, dtype)
        self.gm_np = self.s_np if gm_np is None else gm_np
        self.has_gm = gm_np is not None
        self.c = _constants(params, modes, dtype)
        self.gu = spikes.new_zeros(n_samples, n_units)
        self.gi = spikes.new_zeros(n_samples, n_units)
        self.cells = n_samples * n_units
        self.rec_t = None if recurrent_weight is None else _feedback_rows(recurrent_weight, None)
        # (n_samples, n_units): where the adjoint sums dL/dP over the steps for a bias
        self.bias_rows: Tensor | None = None

    def _kernel(self, recompute: bool, has_gs: bool, events: bool = False, total: bool = False):
        from ._kernels import specialised

        m = self.modes
        shape = m.shape if recompute else 0  # read from a history otherwise
        return specialised(
            "adjoint",
            self.s_np.dtype,
            m.reset,
            m.reset_grad,
            shape,
            has_gs,
            self.has_gm,
            recompute,
            events,
            total,
            self.readout is not None,
            self.bias_rows is not None,
        )

    def run(self, start, stop, grad_drive, derivative, pre_reset, block) -> None:
        """Steps ``start:stop``; ``dL/dP`` into ``grad_drive`` (those steps). ``block`` is None
        when ``derivative``/``pre_reset`` cover all steps, else ``(drive, checkpoint)``: the
        block's currents and its ``U``/``I`` at ``start``, to recompute from."""
        # a 2-D gradient is that of a current given once: the sum over the steps
        total = grad_drive.dim() == 2
        if total:
            g_rows, g_step, g_sample = grad_drive.numpy(), 0, 1
        else:
            g_rows, g_step, g_sample = _rows(grad_drive)
        gu, gi = self.gu.numpy(), self.gi.numpy()
        gb = gu if self.bias_rows is None else self.bias_rows.numpy()
        s_np, gm_np, c = self.s_np, self.gm_np, self.c
        readout = (gu, gu) if self.readout is None else self.readout
        if self.rec is None:
            has_gs = self.gs_np is not None
            gs_np = self.gs_np if has_gs else s_np
            events = block is not None and isinstance(block[0], _Events)
            kernel = self._kernel(block is not None, has_gs, events, total)
            if block is None:
                d_np = derivative.numpy()
                a_np = s_np if pre_reset is None else pre_reset.numpy()
                current = (gu, 0, 0, *_Events.unused(s_np[0]))
                args = (start, stop, *current, gu, gu, s_np, gs_np, gm_np, *readout, d_np)
                args += (a_np, gu, gi, g_rows, g_step, g_sample, gb, c)
            else:
                current, checkpoint = block
                if events:
                    current = current.arguments(s_np[0])
                else:
                    current = (*_rows(current), *_Events.unused(s_np[0]))
                u0, i0 = checkpoint[0].numpy(), checkpoint[1].numpy()
                args = (start, stop, *current, u0, i0, s_np, gs_np, gm_np, *readout)
                args += (s_np, s_np, gu, gi, g_rows, g_step, g_sample, gb, c)
            _over_samples(kernel, self.spikes.shape[1], (stop - start) * self.cells, args)
            return
        if block is not None:
            derivative, pre_reset = self._replay(start, stop, *block)
            offset = start
        else:
            offset = 0
        d_np = derivative.numpy()
        a_np = s_np if pre_reset is None else pre_reset.numpy()
        kernel = self._kernel(False, True)
        n_samples = self.spikes.shape[1]
        # dL/dS[t] gains dL/dI[t+1] V (the recurrent current), step by step; each thread runs
        # all steps of its samples, its rows of that product included (one parallel region
        # per block rather than a parallel product and a compiled step per step).
        ranges = [(0, n_samples)]
        if tasks_run_torch_single_threaded():
            ranges = _ranges(n_samples, (stop - start) * self.cells)
        g_s = self.spikes.new_empty(1, n_samples, self.spikes.shape[2])
        g_s_np = g_s.numpy()

        def samples(k: int) -> None:
            b0, b1 = ranges[k]
            for t in reversed(range(start, stop)):
                j = t - offset
                self._spike_grad(t, g_s[0, b0:b1], b0, b1)
                rows = g_rows[(t - start) * g_step :]
                args = (0, 1, gu, 0, 0, *_Events.unused(gu), gu, gu, s_np[t : t + 1], g_s_np)
                args += (gm_np[t : t + 1], gu, gu, d_np[j : j + 1], a_np[j : j + 1], gu, gi)
                args += (rows, g_step, g_sample, gb, c)
                kernel(b0, b1, *args)  # one step: as in the forward pass

        map_threads(samples, len(ranges))

    def _spike_grad(self, t: int, out: Tensor, b0: int, b1: int) -> None:
        """``dL/dS[t]`` of a recurrent layer's samples ``b0:b1`` into ``out``: the spikes' own
        gradient, the readout's ``dL/dC[t] W_out`` and the recurrent current's
        ``dL/dI[t + 1] V``."""
        gi = self.gi[b0:b1]
        if self.step_readout is not None:
            grad_currents, readout_weight = self.step_readout
            if self.grad_spikes is None:
                torch.mm(grad_currents[t, b0:b1], readout_weight, out=out)
            else:
                g_s = self.grad_spikes[t, b0:b1]
                torch.addmm(g_s, grad_currents[t, b0:b1], readout_weight, out=out)
            out.addmm_(gi, self.rec)
        elif self.grad_spikes is None:
            torch.mm(gi, self.rec, out=out)
        else:
            torch.addmm(self.grad_spikes[t, b0:b1], gi, self.rec, out=out)

    def _replay(self, start, stop, current, checkpoint):
        """The block's surrogate derivatives and pre-reset potentials, recomputed with its
        saved spikes from its checkpoint; the recurrent currents come from those spikes."""
        from ._kernels import RESETS, specialised

        m = self.modes
        block_spikes = self.spikes[start:stop]
        derivative = torch.empty_like(block_spikes)
        keep_a = m.reset_grad and m.reset == RESETS["zero"]
        pre_reset = torch.empty_like(block_spikes) if keep_a else None
        s_blk = block_spikes.numpy()
        a_np = s_blk if pre_reset is None else pre_reset.numpy()
        u, i = checkpoint[0].clone().numpy(), checkpoint[1].clone().numpy()
        events = isinstance(current, _Events)
        if events:
            current = current.arguments(s_blk, start, stop)
        else:
            current = (*_rows(current), *_Events.unused(s_blk))
        kernel = specialised(
            "forward",
            self.s_np.dtype,
            0,
            False,
            events,
            True,
            m.reset,
            False,
            m.shape,
            True,
            keep_a,
            False,
            False,
            False,
            False,
        )
        args = (0, stop - start, *current, *_Numbers.unused(s_blk).arguments(), self.rec_t)
        args += (u, i, s_blk, s_blk, derivative.numpy(), a_np, _NO_MASKS, u, u, self.c)
        _over_samples(kernel, self.spikes.shape[1], (stop - start) * self.cells, args)
        return derivative, pre_reset


# --------------------------------------------------------------------------------------------
# The readout's leaky integration
# --------------------------------------------------------------------------------------------


def _filter(x: Tensor, alpha_syn: float, alpha_mem: float, backwards: bool) -> Tensor:
    """:func:`~sksnn.engines._kernels.leaky_filter` over the columns of ``x`` (n_steps, ...)."""
    from ._kernels import leaky_filter

    rows = x.detach().contiguous().view(x.shape[0], -1)
    out = torch.empty_like(rows)
    args = (rows.numpy(), out.numpy(), alpha_syn, alpha_mem, backwards)
    # a column's step costs about a sixteenth of a unit's step in the LIF loops
    _over_samples(leaky_filter, rows.shape[1], rows.numel() // 16, args)
    return out.view(x.shape)


class _LeakyFilter(torch.autograd.Function):
    """The readout's potential from its currents by the recursion of the LIF equations
    without spikes, each column (sample and output) on its own: the numbers of
    :func:`sksnn.readout.leaky_readout`'s float64 products to round-off, for any batch."""

    @staticmethod
    def forward(ctx, currents, alpha_syn, alpha_mem):  # type: ignore[override]
        ctx.alphas = (alpha_syn, alpha_mem)
        return _filter(currents, alpha_syn, alpha_mem, False)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return _filter(grad, *ctx.alphas, True), None, None
