"""The compiled engine (numba time loops) against the reference autograd loop.

Same cases as the fused engine's tests (tests/test_lif.py): every reset mode, detach on/off,
stochastic and deterministic, each built-in escape noise and surrogate, dense and projected
(event-driven) layers, in float64 (round-off ~1e-15, so a wrong term of the adjoint shows up
orders of magnitude above the tolerance) and float32. The compiled loops evaluate ``exp`` and
fused multiply-adds in their own way, so membranes are compared to a few ulp instead of bit
for bit; spikes must be identical (a spike could only differ where the potential lies within
an ulp of its threshold or noise draw, which none of these fixed-seed cases comes near).
"""

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from test_lif import (
    PROJECTED_CASES,
    RTOL32,
    RTOL64,
    _inputs,
    _params,
    _projected_case,
    lif_layer,
)
from test_lif import _assert_same as _lif_assert_same

from sksnn import SpikingClassifier, SpikingRegressor
from sksnn.engines import ENGINES, get_engine
from sksnn.engines import compiled as compiled_module
from sksnn.neuron import LIFParameters
from sksnn.surrogates import Surrogate, get_escape_noise, get_surrogate

# membranes: a few ulp of the largest membrane value
ULPS = {torch.float64: 1e-14, torch.float32: 4e-6}


def _assert_same(params, dtype, stochastic, record, rtol, recurrent=False, shape=(30, 8, 12)):
    return _lif_assert_same(
        params,
        dtype,
        recurrent,
        stochastic,
        record,
        rtol,
        shape=shape,
        engine="compiled",
        ulps=ULPS[dtype],
    )


def _takes_compiled_path(params, drive) -> bool:
    return compiled_module._modes(params, drive, None) is not None


def test_auto_is_the_compiled_engine_when_numba_imports(monkeypatch):
    assert ENGINES[0] == "compiled"
    assert type(get_engine("auto")).__name__ == "CompiledEngine"
    import sksnn.engines

    monkeypatch.setattr(sksnn.engines, "compiled_available", lambda: False)
    assert type(get_engine("auto")).__name__ == "FusedEngine"
    # numba is a dependency but may not load (e.g. built for another NumPy)
    with pytest.warns(RuntimeWarning, match="needs numba"):
        assert type(get_engine("compiled")).__name__ == "FusedEngine"


def test_a_numba_that_does_not_load_falls_back_with_a_warning(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, globals=None, locals=None, fromlist=(), level=0):
        if fromlist and "_kernels" in fromlist:
            raise ImportError("numba needs another NumPy")
        return real_import(name, globals, locals, fromlist, level)

    compiled_module.compiled_available.cache_clear()
    monkeypatch.setattr(builtins, "__import__", broken)
    try:
        with pytest.warns(RuntimeWarning, match="do not load"):
            assert compiled_module.compiled_available() is False
    finally:
        monkeypatch.undo()
        compiled_module.compiled_available.cache_clear()
    assert compiled_module.compiled_available() is True


def test_uniform_numbers_are_broadcast_or_refused_as_torch_does():
    """The kernels check no bounds: the layer broadcasts the uniform numbers first (as the
    reference's comparison does) and refuses a shape that does not broadcast."""
    params = _params("zero", True, 0.2)
    drive, _, uniform, _, _ = _inputs(torch.float32, False, True)
    narrow = uniform[:, :1]  # one sample's numbers for every sample
    s_ref, _ = lif_layer(drive, params, narrow, engine="reference")
    s_com, _ = lif_layer(drive, params, narrow, engine="compiled")
    assert torch.equal(s_com, s_ref)
    with pytest.raises(RuntimeError):
        lif_layer(drive, params, uniform[:-1], engine="compiled")


def test_wider_uniform_numbers_keep_the_torch_path():
    """float64 numbers for a float32 layer: torch compares in float64, the kernels would
    round the numbers to float32 first; such a layer runs on the torch path."""
    params = _params("zero", True, 0.2)
    drive, _, uniform, _, _ = _inputs(torch.float32, False, True)
    assert compiled_module._modes(params, drive, None, uniform.double()) is None
    assert compiled_module._modes(params, drive, None, uniform) is not None


def test_potentials_far_below_threshold_never_fire():
    """exp underflows to 0 (not to a floor probability) and overflows to inf in the kernels:
    a uniform number of exactly 0 does not make a neuron far below threshold fire. (Between
    about 1e-45 and 1e-38 torch's float32 exp keeps subnormal probabilities that the kernels
    flush to 0; only a uniform number of exactly 0 could tell them apart.)"""
    for noise in ("sigmoid", "exponential"):
        params = LIFParameters(
            temperature=0.001,
            escape_noise=get_escape_noise(noise),
            surrogate=get_surrogate("matched", 1000.0, noise),
        )
        drive = torch.full((5, 2, 3), -50.0)
        uniform = torch.zeros(5, 2, 3)
        s_ref, _ = lif_layer(drive, params, uniform, engine="reference")
        s_com, _ = lif_layer(drive, params, uniform, engine="compiled")
        assert torch.equal(s_com, s_ref) and s_com.sum() == 0


@pytest.mark.parametrize(
    ("reset", "detach", "temperature", "recurrent"),
    list(itertools.product(["zero", "subtract", "none"], [True, False], [0, 0.2], [False, True])),
)
def test_gradients_match_reference(reset, detach, temperature, recurrent):
    params = _params(reset, detach, temperature)
    assert _takes_compiled_path(params, torch.zeros(1, dtype=torch.float64))
    for dtype, record, rtol in [
        (torch.float64, True, RTOL64),
        (torch.float64, False, RTOL64),
        (torch.float32, True, RTOL32),
    ]:
        _assert_same(params, dtype, temperature > 0, record, rtol, recurrent=recurrent)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_units", [33, 70, 96])
def test_recurrent_layers_wider_than_a_spike_summary(dtype, n_units):
    """The recurrent current is summed from the spiking units, found through a 32-bit summary
    of each step's spikes (bit ``n mod 32``): layers of more units than bits, not a multiple
    of 32, at spike rates of tens of percent, against the reference's matrix product."""
    rtol = RTOL32 if dtype == torch.float32 else RTOL64
    for reset in ("zero", "subtract"):
        params = _params(reset, False, 0.2)
        _assert_same(params, dtype, True, True, rtol, recurrent=True, shape=(25, 5, n_units))


@pytest.mark.parametrize(
    ("surrogate", "noise", "temperature", "beta"),
    [
        ("superspike", "sigmoid", 0.2, 5.0),
        ("atan", "exponential", 0.3, 4.0),
        ("triangle", "erf", 0.0, 3.0),
        ("matched", "erf", 0.2, 5.0),  # the matched surrogate of erf noise: gaussian
        ("matched", "exponential", 0.2, 5.0),  # asymmetric
        ("matched", "sigmoid", 0.2, 3.0),  # logistic, beta != 1 / T
        ("sigmoid", "sigmoid", 0.1, 10.0),
        ("gaussian", "sigmoid", 0.1, 4.0),
        ("exponential", "erf", 0.1, 5.0),
        ("boxcar", "sigmoid", 0.1, 5.0),
    ],
)
def test_surrogates_and_escape_noises(surrogate, noise, temperature, beta):
    params = LIFParameters(
        temperature=temperature,
        escape_noise=get_escape_noise(noise),
        surrogate=get_surrogate(surrogate, beta, noise),
    )
    assert _takes_compiled_path(params, torch.zeros(1))
    _assert_same(params, torch.float64, temperature > 0, True, RTOL64, recurrent=True)
    _assert_same(params, torch.float32, temperature > 0, True, RTOL32)


def test_user_defined_surrogates_keep_the_torch_path():
    """A surrogate the kernels do not know (or a subclass redefining a built-in derivative)
    runs on the fused engine's torch path, with the reference's results."""
    from dataclasses import dataclass

    from sksnn.surrogates import Sigmoid

    @dataclass(frozen=True)
    class Doubled(Sigmoid):
        def derivative(self, x):
            return 2.0 * super().derivative(x)

    class Shifted(Surrogate):
        def derivative(self, x):
            return torch.exp(-self.beta * (x - 0.1) ** 2) * (1.0 + x)

    for surrogate in (Doubled(5.0), Shifted(4.0)):
        params = LIFParameters(surrogate=surrogate)
        assert not _takes_compiled_path(params, torch.zeros(1))
        _assert_same(params, torch.float64, False, True, RTOL64)


def test_other_dtypes_and_devices_keep_the_torch_path():
    params = _params("zero", True, 0.2)
    assert compiled_module._modes(params, torch.zeros(1, dtype=torch.float16), None) is None
    assert compiled_module._modes(params, torch.zeros(1, device="meta"), None) is None


@pytest.mark.parametrize(
    ("reset", "detach", "recurrent", "temperature", "batch_major", "input_grad"), PROJECTED_CASES
)
def test_projected_layer_matches_projection_plus_reference(
    monkeypatch, reset, detach, recurrent, temperature, batch_major, input_grad
):
    """The event-driven layer (currents recomputed block by block from checkpoints, with the
    recurrent currents of the saved spikes) against einsum + bias + the reference loop; 23
    steps make blocks of 5 with a shorter last one."""
    from sksnn.engines import _fused

    calls = []

    def projected(x, weight, pattern, params, uniform, rec, record, bias):
        modes = compiled_module._modes(params, weight, rec)
        calls.append(modes)
        spikes, membrane, _ = compiled_module._run(
            x, weight, pattern, bias, rec, params, modes, uniform, record
        )
        return spikes, membrane

    monkeypatch.setattr(_fused, "lif_fused_projected", projected)
    params = _params(reset, detach, temperature)
    (s_r, u_r, g_r), (s_c, u_c, g_c) = _projected_case(
        params, recurrent, temperature > 0, batch_major, input_grad, (23, 6, 30, 20)
    )
    assert calls and calls[0] is not None
    assert type(s_c.grad_fn).__name__ == "_CompiledLIFBackward"
    assert torch.equal(s_c, s_r)
    torch.testing.assert_close(u_c, u_r, rtol=RTOL64, atol=1e-12)
    for a, b in zip(g_c, g_r, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=RTOL64, atol=RTOL64 * b.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("record", [False, True])
def test_constant_input_is_projected_once_and_its_gradient_summed(dtype, record):
    """A layer input that is the same every step (the current encoding) is projected once;
    the adjoint adds up the current's gradient over the steps. Against the reference on the
    expanded projection: identical spikes, gradients to round-off for the input, the weight
    and the bias."""
    from sksnn.engines import LayerInput

    rtol = RTOL32 if dtype == torch.float32 else RTOL64
    g = torch.Generator().manual_seed(5)
    n_steps, n_samples, n_in, n_units = 40, 9, 7, 150
    x = torch.randn(n_samples, n_in, generator=g, dtype=dtype).requires_grad_()
    weight = (torch.randn(n_units, n_in, generator=g, dtype=dtype) * 0.6).requires_grad_()
    bias = (torch.randn(n_units, generator=g, dtype=dtype) * 0.2 + 0.3).requires_grad_()
    uniform = torch.rand(n_steps, n_samples, n_units, generator=g, dtype=dtype)
    w_spikes = torch.randn(n_steps, n_samples, n_units, generator=g, dtype=dtype)
    params = _params("subtract", False, 0.3)
    results = []
    for engine in ("compiled", "reference"):
        layer_input = LayerInput(x.unsqueeze(0).expand(n_steps, n_samples, n_in))
        s, u = get_engine(engine).run_layer(
            layer_input, weight, params, uniform, None, record, bias
        )
        loss = (s * w_spikes).sum() + (u.sum() if record else 0)
        results.append((s, u, torch.autograd.grad(loss, [x, weight, bias])))
    (s_c, u_c, g_c), (s_r, u_r, g_r) = results
    assert type(s_c.grad_fn).__name__ == "_CompiledLIFBackward"
    assert torch.equal(s_c, s_r)
    assert 0.01 < s_r.mean() < 0.9
    if record:
        torch.testing.assert_close(u_c, u_r, rtol=ULPS[dtype], atol=ULPS[dtype])
    for a, b in zip(g_c, g_r, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item())


def test_recurrent_weight_gradient_with_a_batch_major_drive():
    """The recurrent weight's gradient is scattered from the spiking units' rows of the
    current's gradient, laid out batch-major when the drive is (3-D input): against the
    reference's matrix product."""
    params = _params("zero", False, 0.2)
    g = torch.Generator().manual_seed(4)
    base = (torch.randn(6, 40, 45, generator=g, dtype=torch.float64) + 0.3).requires_grad_()
    rec = (torch.randn(45, 45, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    uniform = torch.rand(40, 6, 45, generator=g, dtype=torch.float64)
    w = torch.randn(40, 6, 45, generator=g, dtype=torch.float64)
    grads, spikes = [], []
    for engine in ("compiled", "reference"):
        s, _ = lif_layer(base.transpose(0, 1), params, uniform, rec, engine=engine)
        spikes.append(s)
        grads.append(torch.autograd.grad((s * w).sum(), [base, rec]))
    assert torch.equal(spikes[0], spikes[1])
    assert 0.01 < spikes[1].mean() < 0.9
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL64, atol=RTOL64 * b.abs().max().item())


def test_threads_change_nothing():
    """Samples are split over threads, never reordered within: bit-identical spikes and
    membranes on one and two threads, on a layer large enough to be split, and bit-identical
    gradients unless a recurrent product (a BLAS call) is involved."""
    shape = (20, 96, 400)
    assert shape[0] * shape[1] * shape[2] >= compiled_module._PARALLEL_CELLS
    params = _params("zero", False, 0.1)
    for recurrent in (False, True):
        drive, rec, uniform, _, _ = _inputs(torch.float32, recurrent, True, shape=shape)
        wrt = [drive] if rec is None else [drive, rec]
        previous = torch.get_num_threads()
        results = []
        try:
            for n_threads in (1, 2):
                torch.set_num_threads(n_threads)
                s, u = lif_layer(drive, params, uniform, rec, True, engine="compiled")
                results.append((s, u, torch.autograd.grad(s.sum() + u.sum(), wrt)))
        finally:
            torch.set_num_threads(previous)
        (s1, u1, g1), (s2, u2, g2) = results
        assert torch.equal(s1, s2) and torch.equal(u1, u2)
        # the recurrent products are torch's, which may split sums by thread count
        for a, b in zip(g1, g2, strict=True):
            if recurrent:
                torch.testing.assert_close(a, b, rtol=RTOL32, atol=RTOL32 * b.abs().max())
            else:
                assert torch.equal(a, b)


def test_recurrent_adjoint_on_each_threads_samples_matches_one_range(monkeypatch):
    """The recurrent adjoint run by each thread on its own samples (its rows of ``dL/dI V``
    included) gives the spikes and gradients of the whole batch run as one range, as where
    the tasks cannot run torch on their own thread (the thread pool)."""
    from sksnn._parallel import tasks_run_torch_single_threaded

    if not tasks_run_torch_single_threaded():
        pytest.skip("the tasks run on torch's OpenMP threads only where they exist")
    shape = (20, 96, 400)
    params = _params("zero", False, 0.1)
    drive, rec, uniform, w_s, _ = _inputs(torch.float32, True, True, shape=shape)
    results = []
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for per_thread in (True, False):
            monkeypatch.setattr(
                compiled_module, "tasks_run_torch_single_threaded", lambda p=per_thread: p
            )
            s, _ = lif_layer(drive, params, uniform, rec, False, engine="compiled")
            results.append((s, torch.autograd.grad((s * w_s).sum(), [drive, rec])))
    finally:
        torch.set_num_threads(previous)
    (s1, g1), (s2, g2) = results
    assert torch.equal(s1, s2) and 0.02 < s1.mean() < 0.6
    # the recurrent products are torch's on fewer rows per call, which a BLAS may sum in
    # another order: round-off of float32 over 20 steps (RTOL32)
    for a, b in zip(g1, g2, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=RTOL32, atol=RTOL32 * b.abs().max())


def test_event_weight_gradient_is_split_over_threads_by_input_rows(monkeypatch):
    """The weight gradient of an event-driven layer, scattered with the threads splitting the
    weight's input columns by their share of the events: on a skewed input (a third of the
    inputs never active, a few far more active than the rest) bit-identical on one and two
    threads, and equal to the reference's to round-off."""
    from sksnn.engines import LayerInput

    n_steps, n_samples, n_in, n_units = 12, 128, 90, 256
    g = torch.Generator().manual_seed(8)
    rate = torch.rand(n_in, generator=g) * 0.03
    rate[: n_in // 3] = 0.0
    rate[-4:] = 0.4
    x = (torch.rand(n_steps, n_samples, n_in, generator=g) < rate).double()
    weight = (torch.randn(n_units, n_in, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    bias = (torch.randn(n_units, generator=g, dtype=torch.float64) * 0.2).requires_grad_()
    uniform = torch.rand(n_steps, n_samples, n_units, generator=g, dtype=torch.float64)
    w_s = torch.randn(n_steps, n_samples, n_units, generator=g, dtype=torch.float64)
    params = _params("zero", True, 0.2)
    splits = []
    scatter = compiled_module._weight_grad

    def counted(pattern, start, stop, grad, out):
        splits.append(grad.numel() >= compiled_module._PARALLEL_CELLS)
        scatter(pattern, start, stop, grad, out)

    monkeypatch.setattr(compiled_module, "_weight_grad", counted)
    grads = []
    previous = torch.get_num_threads()
    try:
        for n_threads, engine in ((1, "compiled"), (2, "compiled"), (2, "reference")):
            torch.set_num_threads(n_threads)
            layer_input = LayerInput(x, binary=True)
            s, _ = get_engine(engine).run_layer(
                layer_input, weight, params, uniform, None, False, bias
            )
            grads.append(torch.autograd.grad((s * w_s).sum(), [weight, bias]))
    finally:
        torch.set_num_threads(previous)
    assert splits and all(splits)  # every block large enough to be split
    (gw1, gb1), (gw2, gb2), (gw_r, gb_r) = grads
    assert torch.equal(gw1, gw2) and torch.equal(gb1, gb2)
    active = x.sum((0, 1)) > 0
    # (an input active only in the last step has no effect on the spikes: a zero gradient)
    assert active.sum() > n_in // 2 and (gw_r[:, active] != 0).double().mean() > 0.9
    assert torch.equal(gw_r[:, ~active], torch.zeros_like(gw_r[:, ~active]))
    torch.testing.assert_close(gw2, gw_r, rtol=RTOL64, atol=RTOL64 * gw_r.abs().max().item())
    torch.testing.assert_close(gb2, gb_r, rtol=RTOL64, atol=RTOL64 * gb_r.abs().max().item())


#: (input kind, recurrent, record, extra spike gradient, readout gradient) of the last-layer tests
LAST_LAYER_CASES = [
    ("events", False, False, False, True),  # W1's layer: the readout term inside the adjoint
    ("constant", False, True, True, True),  # W3's layer, spikes also used elsewhere
    ("dense", False, False, True, False),  # the readout's currents unused
    ("dense", True, True, False, True),  # recurrent: dL/dS written out for the products
    ("events", True, False, True, True),
]


@pytest.mark.parametrize(
    ("kind", "recurrent", "record", "spike_grad", "readout_grad"), LAST_LAYER_CASES
)
def test_last_layer_computes_the_readout_currents_and_their_gradient(
    kind, recurrent, record, spike_grad, readout_grad
):
    """``run_last_layer``: the readout's currents and, in the backward pass, their gradient
    with respect to the spikes summed inside the adjoint; against the reference engine (its
    layer, then the dense projection): the same spikes and currents, gradients of the input,
    every weight and the bias to round-off."""
    from sksnn.engines import LayerInput

    n_steps, n_samples, n_in, n_units, n_outputs = 23, 7, 30, 40, 6
    g = torch.Generator().manual_seed(11)
    if kind == "events":
        x = (torch.rand(n_steps, n_samples, n_in, generator=g) < 0.1).double()
    elif kind == "constant":
        row = torch.randn(n_samples, n_in, generator=g, dtype=torch.float64)
        x = row.requires_grad_().unsqueeze(0).expand(n_steps, n_samples, n_in)
    else:
        x = torch.randn(n_steps, n_samples, n_in, generator=g, dtype=torch.float64)
        x.requires_grad_()
    weight = (torch.randn(n_units, n_in, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    bias = (torch.randn(n_units, generator=g, dtype=torch.float64) * 0.2 + 0.2).requires_grad_()
    readout = torch.randn(n_outputs, n_units, generator=g, dtype=torch.float64).requires_grad_()
    rec = None
    if recurrent:
        rec = torch.randn(n_units, n_units, generator=g, dtype=torch.float64) * 0.2
        rec.requires_grad_()
    shape = (n_steps, n_samples, n_units)
    uniform = torch.rand(shape, generator=g, dtype=torch.float64)
    w_s = torch.randn(shape, generator=g, dtype=torch.float64)
    w_u = torch.randn(shape, generator=g, dtype=torch.float64)
    w_c = torch.randn(n_steps, n_samples, n_outputs, generator=g, dtype=torch.float64)
    wrt = [weight, bias, readout] + ([rec] if recurrent else [])
    wrt += [] if kind == "events" else [x if x.is_leaf else row]
    params = _params("zero", False, 0.2)
    results = []
    for engine in ("compiled", "reference"):
        layer_input = LayerInput(x, binary=kind == "events")
        s, u, c = get_engine(engine).run_last_layer(
            layer_input, weight, params, uniform, rec, record, bias, readout
        )
        loss = (c * w_c).sum() if readout_grad else 0
        loss = loss + ((s * w_s).sum() if spike_grad else 0) + ((u * w_u).sum() if record else 0)
        grads = torch.autograd.grad(loss, wrt, allow_unused=True)
        results.append((s, u, c, grads))
    (s_c, u_c, c_c, g_c), (s_r, u_r, c_r, g_r) = results
    assert type(c_c.grad_fn).__name__ == "_CompiledLIFBackward"  # one node: layer and readout
    assert torch.equal(s_c, s_r)
    assert 0.02 < s_r.mean() < 0.8
    torch.testing.assert_close(c_c, c_r, rtol=RTOL64, atol=RTOL64)
    if record:
        torch.testing.assert_close(u_c, u_r, rtol=RTOL64, atol=1e-12)
    for a, b in zip(g_c, g_r, strict=True):
        if b is None:  # the readout's weight when its currents are unused
            assert a is None or not a.any()
            continue
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=RTOL64, atol=RTOL64 * b.abs().max().item())


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("n_units", [20, 32, 70, 256])
def test_spikes_carry_their_events(recurrent, n_units):
    """A compiled layer's spikes carry their events (summarised in bit masks by the forward
    loop, 32 units a word): exactly the non-zero entries of the spikes, by time-major row and
    then by column, for widths below, at and between multiples of 32."""
    from sksnn._sparse import StepPattern
    from sksnn.engines import LayerInput

    n_steps, n_samples, n_in = 9, 6, 25
    g = torch.Generator().manual_seed(12)
    x = (torch.rand(n_steps, n_samples, n_in, generator=g) < 0.3).float()
    weight = torch.randn(n_units, n_in, generator=g) * 0.8
    rec = torch.randn(n_units, n_units, generator=g) * 0.1 if recurrent else None
    uniform = torch.rand(n_steps, n_samples, n_units, generator=g)
    params = _params("zero", False, 0.2)
    s, _ = get_engine("compiled").run_layer(
        LayerInput(x, binary=True), weight, params, uniform, rec, False
    )
    events = getattr(s, compiled_module._EVENTS)
    assert isinstance(events, StepPattern) and 0.02 < s.mean() < 0.6
    rows, cols = torch.nonzero(s.reshape(-1, n_units), as_tuple=True)
    assert torch.equal(events.keys.long(), rows) and torch.equal(events.cols.long(), cols)
    counts = torch.bincount(rows, minlength=n_steps * n_samples)
    assert torch.equal(events.offsets[1:].long(), counts.cumsum(0))
    assert events.n_samples == n_samples and events.n_cols == n_units


@pytest.mark.parametrize("recurrent", [False, True])
def test_a_layer_takes_the_events_of_the_layer_below(monkeypatch, recurrent):
    """Stacked compiled layers: the second takes the first one's spike events (it scans
    nothing) and the two layers' spikes, and the gradients of every weight, equal the
    reference engine's."""
    from sksnn.engines import LayerInput

    # 256 units spiking at about 2 %: sparse enough for the event-driven product
    n_steps, n_samples, n_in, n_units = 15, 9, 30, 256
    g = torch.Generator().manual_seed(13)
    x = (torch.rand(n_steps, n_samples, n_in, generator=g) < 0.2).double()

    def parameter(*shape, scale):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()

    w1, w2 = parameter(n_units, n_in, scale=0.2), parameter(n_units, n_units, scale=0.6)
    b1, b2 = parameter(n_units, scale=0.1), parameter(n_units, scale=0.1)
    recs = [parameter(n_units, n_units, scale=0.1) for _ in range(2)] if recurrent else None
    shape = (n_steps, n_samples, n_units)
    uniforms = [torch.rand(shape, generator=g, dtype=torch.float64) for _ in range(2)]
    w_s = torch.randn(shape, generator=g, dtype=torch.float64)
    params = _params("zero", False, 0.2)
    wrt = [w1, w2, b1, b2] + (recs if recurrent else [])
    scanned = []
    original = compiled_module._pattern
    monkeypatch.setattr(compiled_module, "_pattern", lambda *a: scanned.append(a) or original(*a))
    results = []
    for engine in ("compiled", "reference"):
        run = get_engine(engine).run_layer
        rec1, rec2 = recs if recurrent else (None, None)
        s1, _ = run(LayerInput(x, binary=True), w1, params, uniforms[0], rec1, False, b1)
        s2, _ = run(LayerInput(s1, binary=True), w2, params, uniforms[1], rec2, False, b2)
        results.append((s1, s2, torch.autograd.grad((s2 * w_s).sum(), wrt)))
    assert len(scanned) == 1  # the compiled engine's first layer; the second took events
    (s1_c, s2_c, g_c), (s1_r, s2_r, g_r) = results
    assert torch.equal(s1_c, s1_r) and torch.equal(s2_c, s2_r)
    assert 0.005 < s1_r.mean() < 0.03 and 0.005 < s2_r.mean() < 0.6
    for a, b in zip(g_c, g_r, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=RTOL64, atol=RTOL64 * b.abs().max().item())

    # an output too narrow for the event-driven product, and any other tensor: no events
    assert compiled_module._spike_events(s1_c, n_units) is not None
    assert compiled_module._spike_events(s1_c, 32) is None
    assert compiled_module._spike_events(s1_c.clone(), n_units) is None


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_inference_paths(mode):
    params = _params("subtract", True, 0.2)
    drive, _, uniform, _, _ = _inputs(torch.float32, False, True)
    s_ref, u_ref = lif_layer(drive.detach(), params, uniform, None, True, engine="reference")
    context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with context:
        s, u = lif_layer(drive, params, uniform, None, True, engine="compiled")
        s_only, u_none = lif_layer(drive, params, uniform, None, False, engine="compiled")
    assert torch.equal(s, s_ref) and torch.equal(s_only, s_ref) and u_none is None
    torch.testing.assert_close(u, u_ref, rtol=ULPS[torch.float32], atol=ULPS[torch.float32])
    assert not s.requires_grad


def test_one_autograd_node_per_layer():
    params = _params("zero", True, 0.0)
    drive = _inputs(torch.float32)[0]
    spikes, _ = lif_layer(drive, params, engine="compiled")
    assert type(spikes.grad_fn).__name__ == "_CompiledLIFBackward"
    assert spikes.grad_fn.next_functions[0][0].variable is drive


@pytest.mark.parametrize("Est", [SpikingClassifier, SpikingRegressor])
def test_estimators_fit_alike_on_compiled_and_fused(Est):
    """A whole fit: the engines take the same steps (up to round-off in the gradients), so
    after a few epochs the predictions agree on almost every sample."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) if Est is SpikingClassifier else X[:, 0] - X[:, 2]
    kw = dict(hidden_layer_sizes=(16,), n_steps=12, max_iter=5, random_state=0)
    compiled = Est(engine="compiled", **kw).fit(X, y)
    fused = Est(engine="fused", **kw).fit(X, y)
    np.testing.assert_allclose(compiled.loss_curve_, fused.loss_curve_, rtol=1e-3)
    if Est is SpikingClassifier:
        # round-off may flip a spike somewhere in 5 epochs; allow 2 of 120 labels to differ
        assert (compiled.predict(X) != fused.predict(X)).sum() <= 2
    else:
        np.testing.assert_allclose(compiled.predict(X), fused.predict(X), atol=0.05)


def test_counter_noise_is_the_torch_expression_bit_for_bit(monkeypatch):
    """Inference noise from the compiled kernel equals the torch expression it replaces, for
    several seeds, trials, streams and shapes (odd sizes included)."""
    from sksnn import noise as noise_module

    keys = noise_module.sample_keys(torch.randn(37, 5, generator=torch.Generator().manual_seed(0)))
    cases = [(0, 0, 0, (3, 37, 7)), (2**32 - 1, 4, 2, (50, 37, 64)), (12345, 1, 9, (1, 37, 1))]
    for seed, trial, stream, shape in cases:
        source = noise_module.CounterNoise(seed, keys, trial)
        compiled = source.uniform(stream, shape, torch.device("cpu"))
        with monkeypatch.context() as m:
            m.setattr(noise_module, "_compiled_available", lambda: False)
            expected = source.uniform(stream, shape, torch.device("cpu"))
        assert compiled.dtype == expected.dtype == torch.float32
        assert torch.equal(compiled, expected)
        assert 0.0 <= compiled.min() and compiled.max() < 1.0


_BOUNDS_SCRIPT = """
import torch
from sksnn.engines import LayerInput, get_engine
from sksnn.engines._fused import _source
from sksnn.neuron import LIFParameters
from sksnn.noise import GeneratorNoise
from sksnn.surrogates import get_surrogate

g = torch.Generator().manual_seed(0)
engine = get_engine("compiled")
for dtype in (torch.float32, torch.float64):
    for reset, detach, temperature in (("zero", False, 0.2), ("subtract", True, 0.0)):
        beta = 1 / temperature if temperature else 5.0
        params = LIFParameters(
            temperature=temperature, reset=reset, detach_reset=detach,
            surrogate=get_surrogate("matched", beta),
        )
        shape = (37, 5, 33)
        noise = GeneratorNoise(1).counters(1, shape, torch.device("cpu")) if temperature else None
        array = torch.rand(shape, generator=g, dtype=dtype) if temperature else None
        drive = (torch.randn(shape, generator=g, dtype=dtype) + 0.3).requires_grad_()
        rec = (torch.randn(33, 33, generator=g, dtype=dtype) * 0.3).requires_grad_()
        weight = (torch.randn(33, 20, generator=g, dtype=dtype) * 0.5).requires_grad_()
        bias = torch.zeros(33, dtype=dtype, requires_grad=True)
        spikes_in = (torch.rand(37, 5, 20, generator=g) < 0.2).to(dtype)
        constant = torch.randn(5, 20, generator=g, dtype=dtype).unsqueeze(0).expand(37, 5, 20)
        for uniform in (noise, array):
            for v in (None, rec):
                s, u = engine.run_currents(drive, params, uniform, v, True)
                (s.sum() + u.sum()).backward()
                for x in (spikes_in, constant):
                    s, u = engine.run_layer(LayerInput(x, binary=x is spikes_in), weight,
                                            params, uniform, v, True, bias)
                    (s.sum() + u.sum()).backward()
                with torch.no_grad():
                    engine.run_currents(drive, params, uniform, v, False)
print("in bounds")
"""


@pytest.mark.slow
def test_kernels_stay_in_bounds(tmp_path):
    """The kernels check no bounds; compiled with numba's bounds checks, every mode reads and
    writes only inside its arrays (placeholders of unused arrays included)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDS_SCRIPT], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "in bounds" in result.stdout


def test_the_callers_floating_point_setting_is_restored():
    """The kernels flush subnormal numbers to zero while they run (x86), and only then: the
    calling thread computes subnormals afterwards as before."""
    tiny = np.array([1e-30], dtype=np.float32)
    before = (tiny * np.float32(1e-10))[0]
    assert before != 0  # a subnormal float32 (1e-40)
    params = _params("zero", True, 0.2)
    drive, _, uniform, _, _ = _inputs(torch.float32, False, True)
    spikes, _ = lif_layer(drive, params, uniform, engine="compiled")
    spikes.sum().backward()
    assert (tiny * np.float32(1e-10))[0] == before


def test_subnormal_values_are_flushed_only_below_float32_range():
    """A layer whose membranes decay into the subnormal range (no input after the first
    step): spikes as the reference's, membranes equal wherever they are normal numbers."""
    params = _params("zero", True, 0.0)
    drive = torch.zeros(1100, 2, 3)  # 0.905 ** 900 is about 1e-39
    drive[0] = 0.5
    s_ref, u_ref = lif_layer(drive, params, None, None, True, engine="reference")
    s_com, u_com = lif_layer(drive, params, None, None, True, engine="compiled")
    assert torch.equal(s_com, s_ref)
    normal = u_ref.abs() >= torch.finfo(torch.float32).tiny
    assert (~normal & (u_ref != 0)).any()  # the case reaches subnormals
    torch.testing.assert_close(u_com[normal], u_ref[normal], rtol=4e-6, atol=0)
    assert (u_com[~normal].abs() <= torch.finfo(torch.float32).tiny).all()


def test_one_sigmoid_serves_spike_and_surrogate_only_where_they_match():
    drive = torch.zeros(2, 2, 2)
    for surrogate, noise, temperature, beta, matched in [
        ("matched", "sigmoid", 0.2, 5.0, True),
        ("sigmoid", "sigmoid", 0.1, 10.0, True),  # the logistic surrogate at beta = 1 / T
        ("matched", "sigmoid", 0.2, 3.0, False),
        ("matched", "erf", 0.2, 5.0, False),
        ("superspike", "sigmoid", 0.2, 5.0, False),
    ]:
        params = LIFParameters(
            temperature=temperature,
            escape_noise=get_escape_noise(noise),
            surrogate=get_surrogate(surrogate, beta, noise),
        )
        assert compiled_module._modes(params, drive, None).matched is matched


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_steps", [1, 40, 300])
def test_compiled_readout_integration_is_the_toeplitz_readout(dtype, n_steps):
    from sksnn.readout import leaky_readout

    engine = get_engine("compiled")
    params = LIFParameters()
    a_syn, a_mem = params.alpha_syn, params.alpha_mem
    generator = torch.Generator().manual_seed(0)
    currents = torch.randn(n_steps, 70, 3, generator=generator, dtype=dtype)
    currents.requires_grad_(True)
    grad = torch.randn(n_steps, 70, 3, generator=generator, dtype=dtype)
    recursive = engine.integrate_readout(currents, a_syn, a_mem)
    products = leaky_readout(currents, a_syn, a_mem)
    # Both sum in float64, in different orders, and round to the dtype once: in float64 they
    # agree to its round-off; in float32 they can differ by one ulp (about 5e-7 for these
    # potentials of a few units) where the float64 sums straddle a rounding boundary.
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 0, "atol": 1e-6}
    torch.testing.assert_close(recursive, products, **tol)
    (g_recursive,) = torch.autograd.grad(recursive, currents, grad)
    (g_products,) = torch.autograd.grad(products, currents, grad)
    torch.testing.assert_close(g_recursive, g_products, **tol)
    # each sample's potential on its own: the same numbers in any batch
    part = engine.integrate_readout(currents.detach()[:, 5:9], a_syn, a_mem)
    assert torch.equal(part, recursive.detach()[:, 5:9])


def test_compiled_readout_integration_split_over_threads_is_the_same():
    # enough columns (samples x outputs) to split them over two threads
    engine = get_engine("compiled")
    params = LIFParameters()
    generator = torch.Generator().manual_seed(1)
    currents = torch.randn(60, 6000, 3, generator=generator).requires_grad_(True)
    grad = torch.randn(60, 6000, 3, generator=generator)
    assert currents.numel() // 16 >= compiled_module._PARALLEL_CELLS
    results = []
    previous = torch.get_num_threads()
    try:
        for n_threads in (2, 1):
            torch.set_num_threads(n_threads)
            v = engine.integrate_readout(currents, params.alpha_syn, params.alpha_mem)
            results.append((v, *torch.autograd.grad(v, currents, grad)))
    finally:
        torch.set_num_threads(previous)
    # each column is computed on its own: the same bits whichever thread runs it
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
