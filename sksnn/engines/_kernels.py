"""Compiled (numba) time loops of a LIF layer: the forward pass and its adjoint.

Each kernel runs a range of samples through a range of steps, one sample after another, with
the units of a sample as the innermost (vectorised) loop; the equations are those of
:mod:`sksnn.engines._fused`. The kernels release the GIL, so that the compiled engine
(:mod:`sksnn.engines.compiled`) can run sample ranges on several threads.

Arrays come in two forms. Histories (spikes, uniform numbers, recorded membranes, gradients of
spikes and membranes) are C-contiguous ``(n_steps, n_samples, n_units)``. An input current or
its gradient is a C-contiguous 2-D matrix of rows of ``n_units`` with the row of (step ``j``,
sample ``b``) at ``j * row_step + b * row_sample``: that one form covers time-major,
batch-major (a transposed view) and constant-in-time (``row_step = 0``) currents without a copy.

The scalar constants travel in one array ``c`` of the layer's dtype (:data:`CONSTANTS`), so
that float32 layers compute in float32 throughout; the modes (escape noise, reset, surrogate
shape) are small integers (:data:`NOISES`, :data:`RESETS`, :data:`SHAPES`), compile-time
constants of each specialisation (:func:`specialised`).
"""

from __future__ import annotations

import math
import platform
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import literally, njit, types
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload

__all__ = [
    "CONSTANTS",
    "NOISES",
    "RESETS",
    "SHAPES",
    "adjoint_rows",
    "forward_rows",
    "leaky_filter",
    "scatter_masks",
    "scatter_rows",
    "specialised",
    "spike_events",
]

#: Escape noise of the forward pass (0: deterministic, ``[U > threshold]``).
NOISES = {"deterministic": 0, "sigmoid": 1, "erf": 2, "exponential": 3}
RESETS = {"zero": 0, "subtract": 1, "none": 2}
#: Surrogate derivatives the adjoint evaluates, as functions of ``z = beta (U - threshold)``
#: (times ``beta`` where the surrogate integrates to one).
SHAPES = {
    "logistic": 0,  # beta s (1 - s), s = sigmoid(z)
    "superspike": 1,  # 1 / (|z| + 1)^2
    "atan": 2,  # (beta / 2) / (1 + (pi z / 2)^2)
    "triangle": 3,  # beta max(0, 1 - |z|)
    "gaussian": 4,  # beta exp(-z^2 / 2) / sqrt(2 pi)
    "laplace": 5,  # (beta / 2) exp(-|z|)
    "boxcar": 6,  # (beta / 2) [|z| < 1]
    "gumbel": 7,  # beta exp(z - exp(z))
}
#: Positions in the constants array ``c``.
CONSTANTS = (
    "alpha_mem",
    "alpha_syn",
    "threshold",
    "temperature",
    "beta",
    "zero",
    "one",
    "half",
    "half_pi",
    "inv_sqrt_2pi",
    "inv_sqrt2",
)
_A_MEM, _A_SYN, _THETA, _T, _BETA, _ZERO, _ONE, _HALF, _HALF_PI, _INV_SQRT_2PI, _INV_SQRT2 = range(
    len(CONSTANTS)
)


def constants(
    dtype: np.dtype, alpha_mem: float, alpha_syn: float, threshold: float, temperature: float,
    beta: float,
) -> np.ndarray:  # fmt: skip
    """The constants array of a layer, in ``dtype``."""
    values = {
        "alpha_mem": alpha_mem,
        "alpha_syn": alpha_syn,
        "threshold": threshold,
        "temperature": temperature,
        "beta": beta,
        "zero": 0.0,
        "one": 1.0,
        "half": 0.5,
        "half_pi": 0.5 * math.pi,
        "inv_sqrt_2pi": 1.0 / math.sqrt(2.0 * math.pi),
        "inv_sqrt2": 1.0 / math.sqrt(2.0),
    }
    # A value beyond float32's range becomes inf, as it does on the torch path.
    with np.errstate(over="ignore"):
        return np.array([values[name] for name in CONSTANTS], dtype=dtype)


# numpy's error model: no ZeroDivisionError check, which would stop the loops vectorising
_JIT = {"error_model": "numpy", "fastmath": {"contract"}}

# --------------------------------------------------------------------------------------------
# exp for float32 that the loop vectoriser can use (libm's expf is a scalar call)
# --------------------------------------------------------------------------------------------


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits``."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MAX = np.float32(88.3762626647949)
_EXP_MIN = np.float32(-87.3365478515625)  # about the log of the smallest normal float32
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_ROUND = np.float32(12582912.0)
_F32_INF = np.float32(np.inf)
_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)


def fast_exp(x):
    """``exp(x)``: within about 2 ulp in float32 (Cephes' expf polynomial after reducing by
    ``ln 2``), libm's ``exp`` in float64. In float32, ``inf`` above 88.38 and 0 below -87.34,
    where the result would overflow or be subnormal."""
    return math.exp(x)


@overload(fast_exp, jit_options=_JIT)
def _fast_exp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:

        def exp32(x):
            # comparisons, not min/max or floor: those stay scalar calls
            low = _EXP_MIN if x < _EXP_MIN else x
            y = _EXP_MAX if low > _EXP_MAX else low
            # n = round(y / ln 2): adding 1.5 * 2**23 leaves the integer part in the mantissa
            n = (y * _LOG2E + _ROUND) - _ROUND
            r = (y - n * _LN2_HI) - n * _LN2_LO
            p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
            p = p * r * r + r + _F32_ONE
            result = p * _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
            result = _F32_INF if x > _EXP_MAX else result
            return _F32_ZERO if x < _EXP_MIN else result

        return exp32
    return lambda x: math.exp(x)


# --------------------------------------------------------------------------------------------
# Subnormal numbers: membranes and adjoints that decay towards zero become subnormal floats,
# which cost about a hundred cycles per operation on x86. The kernels set flush-to-zero and
# denormals-are-zero while they run and restore the thread's setting when they end; the values
# this changes are below 1e-38 in float32 (2e-308 in float64), far below any round-off that
# matters.
# --------------------------------------------------------------------------------------------

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_FLUSH_BITS = np.uint32(0x8040)  # MXCSR: flush-to-zero (bit 15), denormals-are-zero (bit 6)


def _csr_call(builder, name, pointer):
    byte_pointer = ir.IntType(8).as_pointer()
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer]), name
    )
    builder.call(function, [builder.bitcast(pointer, byte_pointer)])


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        pointer = cgutils.alloca_once(builder, ir.IntType(32))
        _csr_call(builder, "llvm.x86.sse.stmxcsr", pointer)
        return builder.load(pointer)

    return types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        pointer = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], pointer)
        _csr_call(builder, "llvm.x86.sse.ldmxcsr", pointer)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen


if _X86:

    @njit(inline="always")
    def _flush_subnormals():
        """Set flush-to-zero; returns the setting to restore."""
        previous = _read_mxcsr()
        _write_mxcsr(previous | _FLUSH_BITS)
        return previous

    @njit(inline="always")
    def _restore_fp(previous):
        _write_mxcsr(previous)

else:  # other architectures keep their default (subnormals are cheap on most ARM cores)

    @njit(inline="always")
    def _flush_subnormals():
        return np.uint32(0)

    @njit(inline="always")
    def _restore_fp(previous):
        pass


# --------------------------------------------------------------------------------------------
# Spike, reset and surrogate, specialised at compile time on the mode (a literal integer), so
# that each kernel's inner loop holds no branch and vectorises
# --------------------------------------------------------------------------------------------


def _literal(value_type) -> int:
    if not isinstance(value_type, (types.IntegerLiteral, types.BooleanLiteral)):
        raise errors.TypingError("a kernel mode must be a compile-time literal")
    return int(value_type.literal_value)


@njit(inline="always", **_JIT)
def _sigmoid(x, c):
    """``1 / (1 + exp(-x))``: the sigmoid escape noise's firing probability and the logistic
    surrogate's function."""
    return c[_ONE] / (c[_ONE] + fast_exp(-x))


def _spike(u, q, noise, c):
    """0/1 spike of potential ``u`` with uniform number ``q`` (compiled code only)."""
    raise NotImplementedError


@overload(_spike, inline="always", jit_options=_JIT)
def _spike_overload(u, q, noise, c):
    kind = _literal(noise)
    if kind == 0:
        return lambda u, q, noise, c: c[_ONE] if u > c[_THETA] else c[_ZERO]

    if kind == 1:
        probability = _sigmoid
    elif kind == 2:

        @njit(inline="always", **_JIT)
        def probability(x, c):
            return c[_HALF] * (c[_ONE] + math.erf(x * c[_INV_SQRT2]))

    else:

        @njit(inline="always", **_JIT)
        def probability(x, c):
            return -math.expm1(-fast_exp(x))

    def impl(u, q, noise, c):
        return c[_ONE] if q < probability((u - c[_THETA]) / c[_T], c) else c[_ZERO]

    return impl


def _reset(a, s, reset, c):
    """The potential after the reset by spike ``s`` (compiled code only)."""
    raise NotImplementedError


@overload(_reset, inline="always", jit_options=_JIT)
def _reset_overload(a, s, reset, c):
    kind = _literal(reset)
    if kind == 0:
        return lambda a, s, reset, c: a - a * s  # a (1 - s), exactly, for s in {0, 1}
    if kind == 1:
        return lambda a, s, reset, c: a - c[_THETA] * s
    return lambda a, s, reset, c: a


def _surrogate(u, shape, c):
    """The surrogate derivative at ``U = u`` (compiled code only)."""
    raise NotImplementedError


@overload(_surrogate, inline="always", jit_options=_JIT)
def _surrogate_overload(u, shape, c):
    kind = _literal(shape)
    if kind == 0:

        def derivative(z, c):
            s = _sigmoid(z, c)
            return c[_BETA] * (s - s * s)

    elif kind == 1:

        def derivative(z, c):
            w = abs(z) + c[_ONE]
            return c[_ONE] / (w * w)

    elif kind == 2:

        def derivative(z, c):
            w = c[_HALF_PI] * z
            return c[_HALF] * c[_BETA] / (c[_ONE] + w * w)

    elif kind == 3:

        def derivative(z, c):
            w = c[_ONE] - abs(z)
            return c[_BETA] * w if w > c[_ZERO] else c[_ZERO]

    elif kind == 4:

        def derivative(z, c):
            return c[_BETA] * c[_INV_SQRT_2PI] * fast_exp(-c[_HALF] * z * z)

    elif kind == 5:

        def derivative(z, c):
            return c[_HALF] * c[_BETA] * fast_exp(-abs(z))

    elif kind == 6:

        def derivative(z, c):
            return c[_HALF] * c[_BETA] if abs(z) < c[_ONE] else c[_ZERO]

    else:

        def derivative(z, c):
            return c[_BETA] * fast_exp(z - fast_exp(z))

    derivative = njit(inline="always", **_JIT)(derivative)

    def impl(u, shape, c):
        return derivative(c[_BETA] * (u - c[_THETA]), c)

    return impl


def _when(flag, value, otherwise):
    """``value`` if the literal ``flag`` is true, else ``otherwise`` (compiled code only)."""
    raise NotImplementedError


@overload(_when, inline="always", jit_options=_JIT)
def _when_overload(flag, value, otherwise):
    if _literal(flag):
        return lambda flag, value, otherwise: value
    return lambda flag, value, otherwise: otherwise


# --------------------------------------------------------------------------------------------
# Counter-based uniform numbers (sksnn.noise.CounterUniform)
# --------------------------------------------------------------------------------------------

_MIX_A = np.uint32(0x7FEB352D)
_MIX_B = np.uint32(0x846CA68B)
_SHIFT_8, _SHIFT_15, _SHIFT_16 = np.uint32(8), np.uint32(15), np.uint32(16)
_UNIT = np.float32(1.0 / (1 << 24))


@njit(inline="always", **_JIT)
def _mix32(x):
    # numba widens integer arithmetic to 64 bits: each step is cut back to 32
    x = np.uint32(x ^ (x >> _SHIFT_16))
    x = np.uint32(x * _MIX_A)
    x = np.uint32(x ^ (x >> _SHIFT_15))
    x = np.uint32(x * _MIX_B)
    return np.uint32(x ^ (x >> _SHIFT_16))


@njit(inline="always", **_JIT)
def _counter_number(base, cell):
    """The uniform number of a sample's ``base`` and a hashed ``cell``: a float32 on the
    2**-24 grid of [0, 1)."""
    bits = _mix32(np.uint32(base + cell))
    return np.float32(np.uint32(bits >> _SHIFT_8)) * _UNIT


@njit(nogil=True, cache=True, **_JIT)
def counter_uniform(b0, b1, bases, cells, out):
    """``out[t, b, n]`` for samples ``b0:b1``: the number of the sample's base ``bases[b]``
    (uint32) and the hashed cell ``cells[t, n]`` (:func:`sksnn.noise.cell_hashes`), bit for
    bit the torch expression of :class:`sksnn.noise.CounterUniform`."""
    n_steps, _, n_units = out.shape
    for b in range(b0, b1):
        base = bases[b]
        for t in range(n_steps):
            row = out[t, b]
            cell_row = cells[t]
            for n in range(n_units):
                row[n] = _counter_number(base, cell_row[n])


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@njit(inline="always", **_JIT)
def _registers(c):
    """The constants as a tuple: values the compiler keeps in registers, where loads from the
    array would be repeated in every iteration (stores to other arrays might change them)."""
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10])


@njit(inline="always", **_JIT)
def _event_drive(out, r, offsets, cols, weight_t, bias, events):
    """With ``events``: ``out`` = the current of time-major row ``r`` of a 0/1 input, the sum
    of ``weight_t``'s rows of its active columns plus ``bias`` (the order of
    ``embedding_bag``, then the bias)."""
    if events:
        out[:] = 0
        for e in range(offsets[r], offsets[r + 1]):
            w = weight_t[cols[e]]
            for n in range(out.shape[0]):
                out[n] += w[n]
        for n in range(out.shape[0]):
            out[n] += bias[n]


_LANE_BITS = np.uint32(31)
_BIT = np.uint32(1)


@njit(inline="always", **_JIT)
def _spike_bit(s, n):
    """Bit ``n mod 32`` set where the spike ``s`` (0 or 1) is 1: OR-ed over a step's units,
    a summary of where its few spikes are that the unit loop computes without a branch."""
    return np.uint32(s) << (np.uint32(n) & _LANE_BITS)


@njit(inline="always", **_JIT)
def _feed_back(i, fed_back, s_row, recurrent_t, spiked):
    """``i += s_row @ V^T``: the sum of the rows of ``recurrent_t`` (``V^T``) of the spiking
    units, added to ``i`` once summed (as a product's result would be). ``spiked`` is the OR
    of :func:`_spike_bit` over the units: only units ``n`` whose bit ``n mod 32`` is set are
    looked at, which skips most of a row of few spikes."""
    if spiked == 0:
        return
    fed_back[:] = 0
    for k in range(32):
        if (spiked >> np.uint32(k)) & _BIT:
            for j in range(k, s_row.shape[0], 32):
                if s_row[j] != 0:
                    w = recurrent_t[j]
                    for n in range(fed_back.shape[0]):
                        fed_back[n] += w[n]
    for n in range(fed_back.shape[0]):
        i[n] += fed_back[n]


@intrinsic
def _popcount32(typingctx, bits):
    """The number of set bits of the uint32 ``bits``."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint32(types.uint32), codegen


@intrinsic
def _lowest_bit(typingctx, bits):
    """The position of the lowest set bit of the non-zero uint32 ``bits``."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint32(types.uint32), codegen


@intrinsic
def _nonzero_bits32(typingctx, row, first):
    """Bit ``k`` set where ``row[first + k]`` is not 0, for ``k < 32`` (all within ``row``):
    one vector comparison whose 32 results are the word's bits (a few instructions, where a
    loop over the 32 entries would shift and OR each)."""
    if not isinstance(row, types.Array) or row.ndim != 1:
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        element = context.get_data_type(array_type.dtype)
        vector = ir.VectorType(element, 32)
        values = builder.load(
            builder.bitcast(pointer, vector.as_pointer()), align=array_type.dtype.bitwidth // 8
        )
        nonzero = builder.fcmp_unordered("!=", values, ir.Constant(vector, None))
        return builder.bitcast(nonzero, ir.IntType(32))

    return types.uint32(row, types.intp), codegen


@njit(inline="always", **_JIT)
def _spike_masks(s_row, out):
    """``out[w]``: bit ``k`` set where ``s_row[32 w + k]`` is not 0."""
    n_units = s_row.shape[0]
    n_full = n_units // 32
    for w in range(n_full):
        out[w] = _nonzero_bits32(s_row, w * 32)
    if n_full < out.shape[0]:
        bits = np.uint32(0)
        first = n_full * 32
        for n in range(first, n_units):
            bits |= np.uint32(s_row[n] != 0) << np.uint32(n - first)
        out[n_full] = bits


#: Width of the vectors of :func:`_add_vector`: rows it adds are padded to a multiple of it.
VECTOR_WIDTH = 8


@intrinsic
def _add_vector(typingctx, out, row, first):
    """``out[first:first + 8] += row[first:first + 8]`` as one vector addition (both within
    their arrays). A loop of a few elements would check at run time whether ``out`` and
    ``row`` overlap and add the elements past the last multiple of 8 one by one: most of the
    cost of adding a short row."""
    if not isinstance(out, types.Array) or out.ndim != 1 or out.dtype != row.dtype:
        return None

    def codegen(context, builder, signature, args):
        pointers = []
        for array_type, value in zip(signature.args[:2], args[:2], strict=True):
            array = context.make_array(array_type)(context, builder, value)
            pointers.append(
                cgutils.get_item_pointer(context, builder, array_type, array, [args[2]])
            )
        vector = ir.VectorType(context.get_data_type(out.dtype), VECTOR_WIDTH)
        align = out.dtype.bitwidth // 8
        out_pointer, row_pointer = (builder.bitcast(p, vector.as_pointer()) for p in pointers)
        total = builder.fadd(
            builder.load(out_pointer, align=align), builder.load(row_pointer, align=align)
        )
        builder.store(total, out_pointer, align=align)
        return context.get_dummy_value()

    return types.none(out, row, types.intp), codegen


@njit(inline="always", **_JIT)
def _masked_rows_sum(out, words, weight_t):
    """``out`` = the sum of the rows of ``weight_t`` of the units whose bits are set in
    ``words`` (:func:`_spike_masks`), in the order of the units: a row of 0/1 spikes times
    ``weight_t``, event by event. Rows of a multiple of :data:`VECTOR_WIDTH` entries."""
    for k in range(out.shape[0]):
        out[k] = 0
    for w in range(words.shape[0]):
        bits = words[w]
        while bits != 0:
            row = weight_t[w * 32 + _lowest_bit(bits)]
            for k in range(0, out.shape[0], VECTOR_WIDTH):
                _add_vector(out, row, k)
            bits &= bits - np.uint32(1)


@njit(nogil=True, cache=True, **_JIT)
def forward_rows(
    b0, b1, t0, t1, drive, row_step, row_sample, offsets, cols, weight_t, bias, uniform,
    bases, cells, recurrent_t, u_state, i_state, spikes, membrane, hist_d, hist_a, masks,
    readout_t, currents, c, noise, counter, events, recurrent, reset, record, shape, keep_d,
    keep_a, sample, keep_masks, readout, matched,
):  # fmt: skip
    """Steps ``t0:t1`` of samples ``b0:b1``: spikes written at their steps, and with
    ``record``/``keep_d``/``keep_a`` the membranes ``U``, the surrogate derivatives ``D``
    (``shape``) and the pre-reset potentials ``A`` for the adjoint. ``u_state``/``i_state``
    (n_samples, n_units) hold ``U``/``I`` at ``t0`` on entry and at ``t1`` on exit.

    The input current comes from ``drive`` rows (indexed from ``t0``), or with ``events``
    from the active entries of a 0/1 input (time-major rows ``t * n_samples + b``:
    ``offsets``, ``cols``) and the transposed weight ``weight_t`` plus ``bias``. The uniform
    numbers come from ``uniform``, or with ``counter`` from the per-sample ``bases`` and the
    hashed cells ``cells`` (n_steps, n_units) of :class:`sksnn.noise.CounterUniform`. With
    ``recurrent`` the current of step ``t + 1`` also gains ``S[t] V^T``, the rows of
    ``recurrent_t`` (``V^T``) of the units that spiked: spikes are 0/1 and few, so the sample's
    own spikes make its recurrent current without a matrix product. Without ``sample`` the
    spikes are read, not drawn (replaying a block for the adjoint). With ``keep_masks`` each
    step's spikes are also summarised in ``masks`` (rows ``t * n_samples + b``, bit ``n % 32``
    of word ``n // 32`` set where unit ``n`` spiked), from which :func:`spike_events` lists
    them. With ``readout`` (which needs ``keep_masks``) the spikes also drive a readout:
    ``currents`` (rows ``t * n_samples + b``) gets the sum of the rows of ``readout_t``
    (``W_out^T``) of the units that spiked, from the masks while the step's row is in the
    cache. With ``matched`` (sigmoid escape noise, logistic surrogate of steepness ``1 / T``,
    spikes drawn and ``D`` kept) the firing probability ``p`` gives both, ``D = p (1 - p) / T``,
    from one ``exp``. Arrays that are not read or not written may be any array of their kind.
    The last thirteen arguments are compile-time modes."""
    literally(matched)
    literally(readout)
    literally(keep_masks)
    literally(sample)
    literally(noise)
    literally(counter)
    literally(events)
    literally(recurrent)
    literally(reset)
    literally(record)
    literally(shape)
    literally(keep_d)
    literally(keep_a)
    c = _registers(c)
    n_samples, n_units = u_state.shape
    a_mem, a_syn, one, half = c[_A_MEM], c[_A_SYN], c[_ONE], c[_HALF]
    c_mem = one - a_mem
    high = a_mem >= half
    scratch = np.empty(n_units if events else 0, dtype=u_state.dtype)
    fed_back = np.empty(n_units if recurrent else 0, dtype=u_state.dtype)
    fp_setting = _flush_subnormals()
    for b in range(b0, b1):
        u = u_state[b]
        i = i_state[b]
        base = bases[b] if counter else np.uint32(0)
        for t in range(t0, t1):
            if events:
                _event_drive(scratch, t * n_samples + b, offsets, cols, weight_t, bias, events)
                d = scratch
            else:
                d = drive[(t - t0) * row_step + b * row_sample]
            s_row = spikes[t, b]
            q_row = uniform[t, b]
            # the placeholder of an unused table has one row
            cell_row = cells[t] if counter else cells[0]
            m_row = membrane[t, b]
            d_row = hist_d[t, b]
            a_row = hist_a[t, b]
            spiked = np.uint32(0)
            for n in range(n_units):
                un = u[n]
                if record:
                    m_row[n] = un
                if matched:
                    q = _counter_number(base, cell_row[n]) if counter else q_row[n]
                    p = _sigmoid((un - c[_THETA]) / c[_T], c)
                    d_row[n] = c[_BETA] * (p - p * p)
                    s = c[_ONE] if q < p else c[_ZERO]
                    s_row[n] = s
                else:
                    if keep_d:
                        d_row[n] = _surrogate(un, shape, c)
                    if sample:
                        q = _counter_number(base, cell_row[n]) if counter else q_row[n]
                        s = _spike(un, q, noise, c)
                        s_row[n] = s
                    else:
                        s = s_row[n]
                # torch.lerp(i, u, a), the reference loop's operation
                a = un - (un - i[n]) * c_mem if high else i[n] + a_mem * (un - i[n])
                if keep_a:
                    a_row[n] = a
                u[n] = _reset(a, s, reset, c)
                i[n] = d[n] + a_syn * i[n]
                if recurrent:
                    spiked |= _spike_bit(s, n)
            if recurrent:
                _feed_back(i, fed_back, s_row, recurrent_t, spiked)
            if keep_masks:
                words = masks[t * n_samples + b]
                _spike_masks(s_row, words)
                if readout:
                    _masked_rows_sum(currents[t * n_samples + b], words, readout_t)
    _restore_fp(fp_setting)


@njit(nogil=True, cache=True, **_JIT)
def adjoint_rows(
    b0, b1, t0, t1, drive, row_step, row_sample, offsets, cols, weight_t, bias, u_start,
    i_start, spikes, grad_spikes, grad_membrane, grad_readout, readout_weight, hist_d, hist_a,
    gu_state, gi_state, grad_drive, g_step, g_sample, grad_bias, c, reset, reset_grad, shape,
    has_gs, has_gm, recompute, events, total, readout, bias_sum,
):  # fmt: skip
    """The adjoint over steps ``t0:t1`` of samples ``b0:b1`` (the whole recursion when called
    from the last block to the first).

    With ``recompute`` the block's surrogate derivatives and pre-reset potentials are
    recomputed from ``U``/``I`` at ``t0`` (``u_start``/``i_start``), the input current (as in
    :func:`forward_rows`: ``drive`` rows, or with ``events`` the input's active entries) and
    the saved spikes; without, they are read from ``hist_d``/``hist_a`` (kept by the forward
    pass). ``gu_state``/``gi_state`` hold ``dL/dU``/``dL/dI`` at ``t1`` on entry and at ``t0``
    on exit; ``dL/dP`` of each step goes to ``grad_drive`` (rows indexed from ``t0``).
    ``grad_spikes``/``grad_membrane`` are read only with ``has_gs``/``has_gm``. With
    ``readout`` the spikes also drive a readout through ``readout_weight`` (n_outputs,
    n_units), and ``dL/dS`` gains ``grad_readout[t * n_samples + b] @ readout_weight``, the
    gradient of the readout's currents, summed here rather than written out by a matrix
    product and read back. With ``total`` the current is one for all steps (``g_step`` 0) and
    its gradient, the sum over the steps, is added to ``grad_drive``. With ``bias_sum`` the
    gradient of the input current's bias, each sample's sum of ``dL/dP`` over the steps, is
    also added to ``grad_bias[b]`` (the samples' sums are added up by the caller, in an order
    that does not depend on the threads). Arrays that are not read may be any array of their
    kind. The last ten arguments are compile-time modes.
    """
    literally(bias_sum)
    literally(readout)
    literally(total)
    literally(events)
    literally(reset)
    literally(reset_grad)
    literally(shape)
    literally(has_gs)
    literally(has_gm)
    literally(recompute)
    c = _registers(c)
    n_samples, n_units = spikes.shape[1:]
    length = t1 - t0
    a_mem, a_syn, theta, one, zero = c[_A_MEM], c[_A_SYN], c[_THETA], c[_ONE], c[_ZERO]
    half = c[_HALF]
    c_mem = one - a_mem
    high = a_mem >= half
    if recompute:
        # one sample's block at a time: D and A per step, in (step, 1, unit) scratch
        hd3 = np.empty((length, 1, n_units), dtype=spikes.dtype)
        ha3 = np.empty((length, 1, n_units), dtype=spikes.dtype)
    else:
        hd3 = hist_d
        ha3 = hist_a
    u = np.empty(n_units, dtype=spikes.dtype)
    i = np.empty(n_units, dtype=spikes.dtype)
    e = np.empty(n_units, dtype=spikes.dtype)
    scratch = np.empty(n_units if events else 0, dtype=spikes.dtype)
    g_read = np.empty(n_units if readout else 0, dtype=spikes.dtype)
    n_outputs = readout_weight.shape[0]
    fp_setting = _flush_subnormals()
    for b in range(b0, b1):
        hb = 0 if recompute else b
        if recompute:
            # element by element: a slice assignment compiles numba's broadcasting checks and
            # their error messages (more than a second of the first fit)
            for n in range(n_units):
                u[n] = u_start[b, n]
                i[n] = i_start[b, n]
            for t in range(t0, t1):
                if events:
                    r = t * n_samples + b
                    _event_drive(scratch, r, offsets, cols, weight_t, bias, events)
                    d = scratch
                else:
                    d = drive[(t - t0) * row_step + b * row_sample]
                s_row = spikes[t, b]
                hd = hd3[t - t0, 0]
                ha = ha3[t - t0, 0]
                for n in range(n_units):
                    un = u[n]
                    hd[n] = _surrogate(un, shape, c)
                    a = un - (un - i[n]) * c_mem if high else i[n] + a_mem * (un - i[n])
                    ha[n] = a
                    u[n] = _reset(a, s_row[n], reset, c)
                    i[n] = d[n] + a_syn * i[n]
        gu = gu_state[b]
        gi = gi_state[b]
        gb = grad_bias[b if bias_sum else 0]
        # Two loops per step, each with few enough arrays for the vectoriser's overlap checks.
        for t in range(t1 - 1, t0 - 1, -1):
            ht = t - t0 if recompute else t
            hd = hd3[ht, hb]
            ha = ha3[ht, hb]
            gs_row = grad_spikes[t, b]
            if readout:
                gr = grad_readout[t * n_samples + b]
                for n in range(n_units):
                    g_read[n] = _when(has_gs, gs_row[n], zero)
                # four outputs per pass over the row: a quarter of the loads and stores of
                # ``g_read``
                n_fours = n_outputs // 4 * 4
                for k in range(0, n_fours, 4):
                    g0, g1, g2, g3 = gr[k], gr[k + 1], gr[k + 2], gr[k + 3]
                    w0, w1 = readout_weight[k], readout_weight[k + 1]
                    w2, w3 = readout_weight[k + 2], readout_weight[k + 3]
                    for n in range(n_units):
                        g_read[n] += (g0 * w0[n] + g1 * w1[n]) + (g2 * w2[n] + g3 * w3[n])
                for k in range(n_fours, n_outputs):
                    g_k = gr[k]
                    w_k = readout_weight[k]
                    for n in range(n_units):
                        g_read[n] += g_k * w_k[n]
            for n in range(n_units):
                # D[t] dL/dS[t], with the reset's share of dL/dS when it is not detached
                if readout:
                    g_s = g_read[n]
                else:
                    g_s = _when(has_gs, gs_row[n], zero)
                if reset_grad:
                    if reset == 0:
                        g_s = g_s - gu[n] * ha[n]
                    elif reset == 1:
                        g_s = g_s - theta * gu[n]
                e[n] = hd[n] * g_s
            s_row = spikes[t, b]
            gm_row = grad_membrane[t, b]
            gp = grad_drive[(t - t0) * g_step + b * g_sample]
            for n in range(n_units):
                g_u, g_i = gu[n], gi[n]
                # dL/dP[t] = dL/dI[t + 1]
                if total:
                    gp[n] += g_i
                else:
                    gp[n] = g_i
                # r[t] dL/dU[t + 1]: the reset's derivative with respect to the pre-reset A[t]
                r_gu = g_u - g_u * s_row[n] if reset == 0 else g_u
                new_gu = a_mem * r_gu + e[n]
                gu[n] = _when(has_gm, new_gu + gm_row[n], new_gu)
                gi[n] = c_mem * r_gu + a_syn * g_i
            if bias_sum:  # a loop of its own: one more array would stop the one above vectorising
                for n in range(n_units):
                    gb[n] += gp[n]
    _restore_fp(fp_setting)


# --------------------------------------------------------------------------------------------
# Specialisations
# --------------------------------------------------------------------------------------------

_entries: dict[tuple, object] = {}
_entries_lock = threading.Lock()


def _array(dtype, ndim: int):
    return types.Array(numba.from_dtype(dtype), ndim, "C")


def specialised(kind: str, dtype, *modes):
    """The compiled ``forward_rows`` (``kind="forward"``) or ``adjoint_rows`` (``"adjoint"``) for
    arrays of ``dtype``, specialised on the modes: a function of the remaining arguments.

    Compiled on first use, or loaded from numba's disk cache. The dispatcher is bypassed: with
    literal modes, its argument matching would cost milliseconds per call. Its arrays must be
    C-contiguous, writable and of ``dtype``, its other arguments Python ints.
    """
    key = (kind, np.dtype(dtype).str, modes)
    entry = _entries.get(key)
    if entry is not None:
        return entry
    i64 = types.int64
    a1, a2, a3 = (_array(np.dtype(dtype), n) for n in (1, 2, 3))
    # the current: its rows and their strides, or the events and weights of a 0/1 input
    current = (a2, i64, i64, _array(np.int32, 1), _array(np.int32, 1), a2, a1)
    if kind == "forward":
        kernel = forward_rows
        uniform = (a3, _array(np.uint32, 1), _array(np.uint32, 2))
        head = (i64, i64, i64, i64, *current, *uniform, a2, a2, a2, a3, a3, a3, a3)
        head += (_array(np.uint32, 2), a2, a2, a1)
    else:
        kernel = adjoint_rows
        head = (i64, i64, i64, i64, *current, a2, a2, a3, a3, a3, a2, a2, a3, a3, a2, a2, a2)
        head += (i64, i64, a2, a1)
    signature = head + tuple(types.literal(mode) for mode in modes)
    with _entries_lock:
        if key not in _entries:
            compiled = kernel.compile(signature)

            def entry(*args, compiled=compiled, modes=modes):
                return compiled(*args, *modes)

            _entries[key] = entry
    return _entries[key]


# --------------------------------------------------------------------------------------------
# Event-driven weight gradient
# --------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, **_JIT)
def scatter_rows(c0, c1, keys, cols, grad, out):
    """``out[cols[e]] += grad[keys[e]]`` for every entry ``e`` with ``c0 <= cols[e] < c1``, in
    order: the rows ``c0:c1`` of the product ``X^T grad`` of a 0/1 matrix ``X`` active at
    ``(keys, cols)``. Threads split the rows of ``out`` (whole rows: a thread writing part of a
    row draws the rest of it, which another thread writes, into its cache through the
    hardware's prefetching), and each row sums its entries in the same order whatever their
    number."""
    # The entries of rows c0:c1 first, listed without a branch: with several threads, whether
    # an entry is a thread's own is a coin toss that the branch predictor would lose.
    mine = np.empty(keys.shape[0], dtype=np.int32)
    n_mine = 0
    for e in range(keys.shape[0]):
        c = cols[e]
        mine[n_mine] = e
        n_mine += (c >= c0) & (c < c1)
    for k in range(n_mine):
        e = mine[k]
        # whole rows, so that the loop starts at 0 and vectorises
        g = grad[keys[e]]
        o = out[cols[e]]
        for n in range(o.shape[0]):
            o[n] += g[n]


# --------------------------------------------------------------------------------------------
# A layer's spikes as events
# --------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, **_JIT)
def spike_events(masks):
    """The events of the spikes that :func:`forward_rows` summarised in ``masks`` (one row of
    words per time-major row): ``offsets`` (the events of row ``r`` are
    ``offsets[r]:offsets[r + 1]``), then each event's row and column, by row and then by
    column, all int32."""
    n_rows, n_words = masks.shape
    offsets = np.empty(n_rows + 1, dtype=np.int32)
    total = 0
    for r in range(n_rows):
        offsets[r] = total
        for w in range(n_words):
            total += _popcount32(masks[r, w])
    offsets[n_rows] = total
    keys = np.empty(total, dtype=np.int32)
    cols = np.empty(total, dtype=np.int32)
    e = 0
    for r in range(n_rows):
        for w in range(n_words):
            bits = masks[r, w]
            while bits != 0:
                keys[e] = r
                cols[e] = w * 32 + _lowest_bit(bits)
                e += 1
                bits &= bits - np.uint32(1)
    return offsets, keys, cols


@njit(nogil=True, cache=True, **_JIT)
def scatter_masks(w0, w1, masks, grad, out):
    """``out[n] += grad[r]`` for every row ``r`` of ``masks`` (:func:`_spike_masks`) in which
    unit ``n`` spiked, for the units of words ``w0:w1``: their rows of ``S^T grad``. Threads
    split the words, and each unit sums its rows in order whatever their number."""
    for r in range(masks.shape[0]):
        g = grad[r]
        for w in range(w0, w1):
            bits = masks[r, w]
            while bits != 0:
                o = out[w * 32 + _lowest_bit(bits)]
                for k in range(o.shape[0]):
                    o[k] += g[k]
                bits &= bits - np.uint32(1)


# --------------------------------------------------------------------------------------------
# The readout's leaky integration
# --------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, **_JIT)
def leaky_filter(k0, k1, drive, out, alpha_syn, alpha_mem, backwards):
    """Columns ``k0:k1`` of the potential of non-spiking LIF neurons driven by ``drive``
    (n_steps, n): ``out[n]`` is ``U[n + 1]`` of ``U[n + 1] = alpha_mem U[n] + (1 - alpha_mem)
    I[n]``, ``I[n + 1] = alpha_syn I[n] + drive[n]`` from zero, in float64 whatever the
    arrays' dtype (as :func:`sksnn.readout.leaky_readout` computes it).

    The potential is the drive convolved with the PSP kernel, so the gradient of the drive
    is the gradient of the potential convolved with the same kernel backwards in time: with
    ``backwards`` the recursion runs from the last step to the first."""
    c_mem = 1.0 - alpha_mem
    u = np.zeros(k1 - k0)
    i = np.zeros(k1 - k0)
    n_steps = drive.shape[0]
    for step in range(n_steps):
        t = n_steps - 1 - step if backwards else step
        d = drive[t, k0:k1]
        o = out[t, k0:k1]
        for k in range(k1 - k0):
            v = alpha_mem * u[k] + c_mem * i[k]
            i[k] = alpha_syn * i[k] + d[k]
            u[k] = v
            o[k] = v
