"""The fused LIF engine against the reference autograd loop.

The reference loop (``lif_reference``) is the definition; the fused engine must produce the
same spikes and membranes bit for bit (it consumes the same uniform numbers and mirrors the
arithmetic) and the same gradients to round-off. Gradients are compared in float64, where
round-off is ~1e-15, so a missing or wrong term of the hand-written adjoint shows up as an
error many orders of magnitude above the tolerance; a float32 run checks the default dtype.
"""

import itertools

import pytest
import torch

from sksnn._sparse import binary_pattern
from sksnn.engines import ENGINES, _fused, get_engine
from sksnn.engines.reference import lif_reference
from sksnn.losses import reduce_readout
from sksnn.network import SpikingNetwork
from sksnn.neuron import LIFParameters
from sksnn.noise import CounterUniform, GeneratorNoise
from sksnn.surrogates import Surrogate, get_escape_noise, get_surrogate


def lif_layer(drive, params, uniform=None, rec=None, record=False, engine="auto"):
    """One layer driven by currents, on the named engine."""
    return get_engine(engine).run_currents(drive, params, uniform, rec, record)


# float64: the two gradient computations differ only in the order of additions (~1e-15
# relative); 1e-10 leaves a wide margin and still catches any wrong term (errors of 1e-2+).
RTOL64 = 1e-10
# float32: rounding differences accumulate over 30 steps of recursion; 1e-4 of the largest
# gradient is about 1000 ulp, far below the size of any real error.
RTOL32 = 1e-4

T, B, N = 30, 8, 12


def _inputs(dtype=torch.float64, recurrent=False, stochastic=False, seed=0, shape=(T, B, N)):
    g = torch.Generator().manual_seed(seed)
    n_units = shape[-1]
    # Mean drive 0.3 with spread 0.8: neurons fire at a few percent to tens of percent.
    drive = (torch.randn(shape, generator=g, dtype=dtype) * 0.8 + 0.3).requires_grad_()
    rec = None
    if recurrent:
        rec = (torch.randn(n_units, n_units, generator=g, dtype=dtype) * 0.3).requires_grad_()
    uniform = torch.rand(shape, generator=g, dtype=dtype) if stochastic else None
    w_spikes = torch.randn(shape, generator=g, dtype=dtype)
    w_membrane = torch.randn(shape, generator=g, dtype=dtype)
    return drive, rec, uniform, w_spikes, w_membrane


def _run(engine, params, drive, rec, uniform, w_spikes, w_membrane, record):
    """Spikes, membrane and the gradients of a loss through spikes (and membrane if recorded)."""
    spikes, membrane = lif_layer(drive, params, uniform, rec, record, engine=engine)
    loss = (spikes * w_spikes).sum()
    if record:
        loss = loss + (membrane * w_membrane).sum()
    wrt = [drive] if rec is None else [drive, rec]
    return spikes, membrane, torch.autograd.grad(loss, wrt)


def _assert_same(
    params, dtype, recurrent, stochastic, record, rtol, shape=(T, B, N), engine="fused", ulps=0
):
    """``engine`` against the reference: identical spikes, membranes within ``ulps`` (relative
    and absolute; 0: bit for bit), gradients to ``rtol`` of the largest."""
    args = _inputs(dtype, recurrent, stochastic, shape=shape)
    s_ref, u_ref, g_ref = _run("reference", params, *args, record)
    s_fus, u_fus, g_fus = _run(engine, params, *args, record)
    assert torch.equal(s_fus, s_ref)
    if record and ulps:
        torch.testing.assert_close(u_fus, u_ref, rtol=ulps, atol=ulps)
    elif record:
        assert torch.equal(u_fus, u_ref)
    else:
        assert u_fus is None
    for a, b in zip(g_fus, g_ref, strict=True):
        scale = b.abs().max().item()
        assert scale > 0  # the gradient is not trivially zero
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale)
    # the configuration is not degenerate: neurons fire, but not all the time
    rate = s_ref.mean().item()
    assert 0.01 < rate < 0.9
    return g_ref


def _params(reset="zero", detach=True, temperature=0.0, **kw):
    beta = 1.0 / temperature if temperature > 0 else 5.0
    kw.setdefault("surrogate", get_surrogate("matched", beta))
    return LIFParameters(temperature=temperature, reset=reset, detach_reset=detach, **kw)


def test_engines_in_order_of_preference():
    # "auto": the compiled engine where numba imports, else the fused one (test_compiled.py)
    assert ENGINES == ("compiled", "fused", "reference")


@pytest.mark.parametrize(
    ("reset", "detach", "recurrent", "temperature"),
    list(itertools.product(["zero", "subtract", "none"], [True, False], [False, True], [0, 0.2])),
)
def test_gradients_match_reference(reset, detach, recurrent, temperature):
    params = _params(reset, detach, temperature)
    _assert_same(params, torch.float64, recurrent, temperature > 0, True, RTOL64)
    _assert_same(params, torch.float64, recurrent, temperature > 0, False, RTOL64)


@pytest.mark.parametrize(("reset", "recurrent"), [("zero", True), ("subtract", False)])
@pytest.mark.parametrize("temperature", [0, 0.2])
def test_gradients_match_reference_float32(reset, recurrent, temperature):
    params = _params(reset, False, temperature)
    _assert_same(params, torch.float32, recurrent, temperature > 0, True, RTOL32)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_detaching_the_reset_changes_the_gradient(reset):
    """The detach on/off cases of the matrix above test different adjoints."""
    attached = _assert_same(_params(reset, False), torch.float64, False, False, False, RTOL64)
    detached = _assert_same(_params(reset, True), torch.float64, False, False, False, RTOL64)
    assert (attached[0] - detached[0]).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("surrogate", "noise", "temperature", "beta"),
    [
        ("superspike", "sigmoid", 0.2, 5.0),  # generic surrogate, stochastic
        ("atan", "exponential", 0.3, 4.0),
        ("triangle", "erf", 0.0, 3.0),  # compact support, deterministic
        ("matched", "erf", 0.2, 5.0),  # matched, but not the sigmoid shortcut
        ("matched", "sigmoid", 0.2, 3.0),  # sigmoid shortcut, beta != 1 / T
        ("sigmoid", "sigmoid", 0.1, 10.0),  # literature sigmoid: shortcut, reuses p
    ],
)
def test_gradients_match_reference_for_surrogates(surrogate, noise, temperature, beta):
    params = LIFParameters(
        temperature=temperature,
        escape_noise=get_escape_noise(noise),
        surrogate=get_surrogate(surrogate, beta, noise),
    )
    _assert_same(params, torch.float64, True, temperature > 0, True, RTOL64)


def test_user_defined_surrogate_subclass_is_not_taken_for_the_sigmoid():
    """A subclass of a built-in surrogate may change the derivative; the fused path uses it."""
    from dataclasses import dataclass

    from sksnn.surrogates import Sigmoid

    @dataclass(frozen=True)
    class Doubled(Sigmoid):
        def derivative(self, x):
            return 2.0 * super().derivative(x)

    params = LIFParameters(surrogate=Doubled(5.0))
    assert params.logistic_steepness is None
    g_doubled = _assert_same(params, torch.float64, False, False, False, RTOL64)
    g_plain = _assert_same(
        LIFParameters(surrogate=Sigmoid(5.0)), torch.float64, False, False, False, RTOL64
    )
    torch.testing.assert_close(g_doubled[0], 2 * g_plain[0])


def test_membrane_only_gradient():
    """A loss on the recorded membrane alone (no gradient arrives for the spikes)."""
    params = _params("subtract", False, 0.2)
    drive, rec, uniform, _, w_membrane = _inputs(stochastic=True, recurrent=True)
    grads = []
    for engine in ("reference", "fused"):
        _, membrane = lif_layer(drive, params, uniform, rec, True, engine=engine)
        grads.append(torch.autograd.grad((membrane * w_membrane).sum(), [drive, rec]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL64, atol=RTOL64 * b.abs().max().item())


def test_two_threads_give_the_one_thread_results():
    """The per-step operations on torch's threads: results as with one thread, bit for bit
    for the spikes (elementwise kernels split the work, they do not reorder it)."""
    shape = (20, 96, 400)
    params = _params("zero", False, 0.1)
    drive, rec, uniform, _, _ = _inputs(torch.float32, True, True, shape=shape)
    previous = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            s, u = lif_layer(drive, params, uniform, rec, True, engine="fused")
            results.append((s, u, torch.autograd.grad(s.sum() + u.sum(), [drive, rec])))
    finally:
        torch.set_num_threads(previous)
    (s1, u1, g1), (s2, u2, g2) = results
    assert torch.equal(s1, s2) and torch.equal(u1, u2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL32, atol=RTOL32 * b.abs().max().item())


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_inference_paths_match(mode):
    params = _params("zero", True, 0.2)
    drive, rec, uniform, _, _ = _inputs(torch.float32, True, True)
    s_ref, u_ref = lif_reference(drive.detach(), params, uniform, rec.detach(), True)
    context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with context:
        s, u = lif_layer(drive, params, uniform, rec, True, engine="fused")
        s_only, u_none = lif_layer(drive, params, uniform, rec, False, engine="fused")
    assert torch.equal(s, s_ref) and torch.equal(u, u_ref) and torch.equal(s_only, s_ref)
    assert u_none is None and not s.requires_grad


@pytest.mark.parametrize("engine", ["fused", "compiled"])
def test_transposed_and_expanded_drives(engine):
    """Batch-major views (3-D input) and stride-0 time axes (current encoding): read in
    place, their gradients the reference's."""
    params = _params("zero", True, 0.0)
    g = torch.Generator().manual_seed(3)
    base = (torch.randn(B, T, N, generator=g, dtype=torch.float64) * 0.8 + 0.3).requires_grad_()
    const = (torch.randn(B, N, generator=g, dtype=torch.float64) * 0.3 + 0.2).requires_grad_()
    w = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    for leaf, drive in [
        (base, base.transpose(0, 1)),
        (const, const.unsqueeze(0).expand(T, B, N)),
    ]:
        grads = []
        for name in ("reference", engine):
            s, _ = lif_layer(drive, params, engine=name)
            grads.append(torch.autograd.grad((s * w).sum(), leaf)[0])
        torch.testing.assert_close(grads[1], grads[0], rtol=RTOL64, atol=1e-12)
        assert grads[0].abs().max() > 0


def test_stochastic_needs_uniform_and_engine_must_exist():
    params = _params("zero", True, 0.2)
    drive = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="uniform noise"):
        lif_layer(drive, params, engine="fused")
    with pytest.raises(ValueError, match="Unknown LIF engine"):
        lif_layer(drive, params, engine="turbo")


def test_no_graph_is_kept_per_step():
    """The fused layer is one autograd node: the spikes' grad_fn leads straight to the drive."""
    params = _params("zero", True, 0.0)
    drive = _inputs(torch.float32)[0]
    spikes, _ = lif_layer(drive, params, engine="fused")
    assert type(spikes.grad_fn).__name__ == "_FusedLIFBackward"
    assert spikes.grad_fn.next_functions[0][0].variable is drive


@pytest.mark.parametrize(
    ("x_shape", "density", "recurrent", "hidden", "projected"),
    [
        ((16, 40, 30), 0.05, True, (24, 20), 0),  # narrow layers: dense projections
        ((16, 40, 60), 0.01, True, (128, 64), 1),  # sparse input: projection in the layer
        ((16, 10), None, False, (32,), 0),  # 2-D current input
    ],
)
def test_network_engines_agree(monkeypatch, x_shape, density, recurrent, hidden, projected):
    """Whole networks: same spikes, readout and parameter gradients from both engines, and
    the fused engine takes the projected (event-driven) path where the input is sparse."""
    import sksnn.engines.fused

    calls = []
    original = sksnn.engines.fused.lif_fused_projected
    monkeypatch.setattr(
        sksnn.engines.fused,
        "lif_fused_projected",
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    g = torch.Generator().manual_seed(0)
    if density is not None:
        x = (torch.rand(x_shape, generator=g) < density).float()
    else:
        x = torch.randn(x_shape, generator=g)
    y = torch.randint(0, 3, (x_shape[0],), generator=g)
    lif = LIFParameters(temperature=0.1, surrogate=get_surrogate("matched", 10.0))
    results = []
    for engine in ("reference", "fused"):
        net = SpikingNetwork(x.shape[-1], hidden, 3, lif, recurrent=recurrent, engine=engine)
        net.initialize(x, torch.Generator().manual_seed(1), GeneratorNoise(2))
        out = net(x, GeneratorNoise(5))
        loss = torch.nn.functional.cross_entropy(reduce_readout(out.output, "max"), y)
        grads = torch.autograd.grad(loss, list(net.parameters()))
        results.append((out, grads))
    assert len(calls) == projected
    (out_r, g_r), (out_f, g_f) = results
    for s_r, s_f in zip(out_r.spikes, out_f.spikes, strict=True):
        assert torch.equal(s_r, s_f)
    assert out_r.spikes[-1].sum() > 0
    torch.testing.assert_close(out_f.output, out_r.output, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_f, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL32, atol=RTOL32 * max(b.abs().max(), 1e-6))


def test_counter_numbers_are_computed_where_used_as_drawn():
    """A layer handed counter-based numbers (computed inside the compiled loop) spikes as it
    does when handed the same numbers as an array, on every engine."""
    drive = torch.randn(20, 33, 17, generator=torch.Generator().manual_seed(0))
    params = LIFParameters(temperature=0.3, surrogate=get_surrogate("matched", 1 / 0.3))
    counters = GeneratorNoise(5).counters(1, tuple(drive.shape), torch.device("cpu"))
    for engine in ENGINES:
        lazy, _ = lif_layer(drive, params, counters, engine=engine)
        eager, _ = lif_layer(drive, params, counters.tensor(), engine=engine)
        assert torch.equal(lazy, eager), engine
        assert 0 < lazy.mean() < 1


def test_counter_numbers_of_another_shape_are_refused():
    drive = torch.randn(4, 3, 2)
    params = LIFParameters(temperature=0.3)
    counters = GeneratorNoise(5).counters(1, (4, 3, 5), torch.device("cpu"))
    for engine in ENGINES:
        with pytest.raises(ValueError, match="uniform numbers have shape"):
            lif_layer(drive, params, counters, engine=engine)
    with pytest.raises(ValueError, match="one base per sample"):
        CounterUniform(torch.zeros(2, dtype=torch.int64), (4, 3, 5))


def test_network_noise_is_the_same_on_one_and_two_threads():
    """Training noise is computed on all of torch's threads in layers this large; the
    numbers, hence the spikes, are those of one thread."""
    from sksnn.engines import compiled

    x = (torch.rand(16, 64, 40, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    lif = LIFParameters(temperature=0.1, surrogate=get_surrogate("matched", 10.0))
    net = SpikingNetwork(40, (256, 256), 2, lif, engine="fused")
    net.initialize(x, torch.Generator().manual_seed(1), GeneratorNoise(2))
    assert 64 * 16 * 256 >= compiled._PARALLEL_CELLS  # each layer's numbers are split
    previous = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outputs.append(net(x, GeneratorNoise(7)))
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(outputs[0].spikes, outputs[1].spikes, strict=True):
        assert torch.equal(a, b)
    assert outputs[0].spikes[1].sum() > 0


class _Shifted(Surrogate):
    """A deliberately non-symmetric surrogate to make sign errors visible."""

    def derivative(self, x):
        return torch.exp(-self.beta * (x - 0.1) ** 2) * (1.0 + x)


def test_asymmetric_surrogate():
    params = _params("zero", False, 0.0, surrogate=_Shifted(4.0))
    _assert_same(params, torch.float64, True, False, True, RTOL64)


def _projected_case(params, recurrent, stochastic, batch_major, input_grad, shape, seed=0):
    """Gradients of the fused projected layer and of einsum + bias + reference loop."""
    n_steps, n_samples, n_in, n_units = shape
    g = torch.Generator().manual_seed(seed)
    dims = (n_samples, n_steps, n_in) if batch_major else (n_steps, n_samples, n_in)
    leaf = (torch.rand(dims, generator=g) < 0.1).double().requires_grad_(input_grad)
    x = leaf.transpose(0, 1) if batch_major else leaf
    weight = (torch.randn(n_units, n_in, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    bias = (torch.randn(n_units, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    rec = None
    if recurrent:
        rec = (
            torch.randn(n_units, n_units, generator=g, dtype=torch.float64) * 0.1
        ).requires_grad_()
    out_shape = (n_steps, n_samples, n_units)
    uniform = torch.rand(out_shape, generator=g, dtype=torch.float64) if stochastic else None
    w_s = torch.randn(out_shape, generator=g, dtype=torch.float64)
    w_u = torch.randn(out_shape, generator=g, dtype=torch.float64)
    wrt = [weight, bias] + ([rec] if recurrent else []) + ([leaf] if input_grad else [])
    rows = (leaf if batch_major else x).detach().reshape(-1, n_in)
    pattern = binary_pattern(rows, None, known_binary=True)
    assert pattern is not None
    results = []
    for fused in (False, True):
        if fused:
            s, u = _fused.lif_fused_projected(x, weight, pattern, params, uniform, rec, True, bias)
        else:
            drive = torch.einsum("tbi,oi->tbo", x, weight) + bias
            s, u = lif_reference(drive, params, uniform, rec, True)
        loss = (s * w_s).sum() + (u * w_u).sum()
        results.append((s, u, torch.autograd.grad(loss, wrt)))
    return results


#: (reset, detach, recurrent, temperature, batch_major, input_grad) of the projected-layer tests
PROJECTED_CASES = [
    ("zero", True, False, 0.2, True, False),  # W1's first layer
    ("zero", True, True, 0.2, False, True),  # W2's second layer
    ("zero", False, True, 0.0, True, True),
    ("subtract", False, False, 0.2, False, True),
    ("subtract", True, True, 0.0, True, False),
    ("none", False, False, 0.2, False, False),
]


@pytest.mark.parametrize(
    ("reset", "detach", "recurrent", "temperature", "batch_major", "input_grad"), PROJECTED_CASES
)
def test_projected_layer_matches_projection_plus_reference(
    reset, detach, recurrent, temperature, batch_major, input_grad
):
    """The layer with the projection inside (block-wise currents, recomputed from checkpoints
    in the backward pass) against einsum + the reference loop; 23 steps make blocks of 5 with
    a shorter last one."""
    params = _params(reset, detach, temperature)
    (s_r, u_r, g_r), (s_f, u_f, g_f) = _projected_case(
        params, recurrent, temperature > 0, batch_major, input_grad, (23, 6, 30, 20)
    )
    assert torch.equal(s_f, s_r)
    assert 0.01 < s_r.mean().item() < 0.9
    # the currents are summed in another order: membranes agree to round-off
    torch.testing.assert_close(u_f, u_r, rtol=RTOL64, atol=1e-12)
    for a, b in zip(g_f, g_r, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=RTOL64, atol=RTOL64 * b.abs().max().item())


def test_projected_layer_keeps_no_full_history():
    """Pattern mode saves spikes and O(sqrt(T)) checkpoints, not per-step histories."""
    params = _params("zero", True, 0.0)
    x = (torch.rand(100, 8, 30, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    weight = torch.randn(20, 30, requires_grad=True)
    pattern = binary_pattern(x.reshape(-1, 30), None, known_binary=True)
    spikes, _ = _fused.lif_fused_projected(x, weight, pattern, params)
    others = {spikes.data_ptr(), weight.data_ptr()}
    saved = [t for t in spikes.grad_fn.saved_tensors if t is not None]
    elements = sum(t.numel() for t in saved if t.data_ptr() not in others)
    assert elements <= 10 * 2 * 8 * 20  # 10 checkpoints of (U, I)
