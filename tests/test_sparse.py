"""Event-driven products with binary matrices against the dense matrix products."""

import numpy as np
import pytest
import torch

from sksnn import _sparse
from sksnn._sparse import (
    SPARSE_MAX_DENSITY,
    SPARSE_MIN_WIDTH,
    SampleEvents,
    StepPattern,
    binary_linear,
    binary_matmul_t,
    binary_pattern,
    prefer_sparse,
)
from sksnn.engines import get_engine
from sksnn.engines.base import project as dense_project

# float32 sums of the same terms in a different order: a few ulp of the largest partial sum.
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _spikes(shape, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < density).float()


@pytest.mark.parametrize("density", [0.0, 0.005, 0.02, 0.08])
def test_projection_and_gradients_match_dense(density):
    x = _spikes((300, 50), density).requires_grad_()
    w = torch.randn(96, 50, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g = torch.randn(300, 96, generator=torch.Generator().manual_seed(2))
    pattern = binary_pattern(x, None, known_binary=True)
    assert pattern is not None and pattern.nnz == int(x.detach().sum())
    out = binary_linear(x, w, pattern)
    gx, gw = torch.autograd.grad(out, [x, w], g)
    dense = x @ w.T
    gx_d, gw_d = torch.autograd.grad(dense, [x, w], g)
    torch.testing.assert_close(out, dense, **TOL)
    torch.testing.assert_close(gw, gw_d, **TOL)
    torch.testing.assert_close(gx, gx_d, **TOL)


def test_weight_gradient_without_input_gradient():
    x = _spikes((200, 40), 0.03)
    w = torch.randn(80, 40, requires_grad=True)
    pattern = binary_pattern(x, None)
    (gw,) = torch.autograd.grad(binary_linear(x, w, pattern).sum(), [w])
    torch.testing.assert_close(gw, torch.ones(200, 80).T @ x, **TOL)


def test_numpy_and_torch_index_paths_agree():
    x = _spikes((120, 70), 0.04)
    rows_np, cols_np = _sparse._active_numpy(x, None, False)
    rows_t, cols_t = _sparse._active_torch(x, None, False)
    assert torch.equal(rows_np, rows_t) and torch.equal(cols_np, cols_t)
    assert torch.equal(x[rows_np, cols_np], torch.ones(len(rows_np)))
    assert int(x.sum()) == len(rows_np)


@pytest.mark.parametrize("finder", [_sparse._active_numpy, _sparse._active_torch])
def test_real_valued_or_dense_input_is_refused(finder):
    x = _spikes((100, 50), 0.03)
    real = x * 0.5  # sparse but not binary: a current, not spikes
    assert finder(real, None, known_binary=False) is None
    assert finder(_spikes((100, 50), 0.5), 256, known_binary=True) is None
    assert finder(x, None, known_binary=False) is not None


def test_binary_pattern_decides_by_density_and_width():
    sparse = _spikes((4000, 64), 0.01)
    assert binary_pattern(sparse, 256) is not None
    assert binary_pattern(sparse, SPARSE_MIN_WIDTH - 1) is None  # narrow output: dense
    assert binary_pattern(_spikes((4000, 64), 0.4), 256) is None
    assert binary_pattern(sparse * 0.5, 256) is None  # not 0/1
    assert binary_pattern(torch.zeros(0, 64), 256) is None
    # 2.5 %: below the cut-over at 256 outputs, above it at 64 (it scales with the width)
    middle = _spikes((4000, 64), 0.025)
    assert binary_pattern(middle, 256) is not None and binary_pattern(middle, 64) is None


def test_prefer_sparse_cut_over():
    assert prefer_sparse(SPARSE_MAX_DENSITY / 2, 256)
    assert prefer_sparse(SPARSE_MAX_DENSITY, 1024)
    assert not prefer_sparse(SPARSE_MAX_DENSITY * 2, 256)
    assert not prefer_sparse(SPARSE_MAX_DENSITY * 0.75, 128)
    assert prefer_sparse(SPARSE_MAX_DENSITY * 0.4, 128)
    assert not prefer_sparse(0.0001, SPARSE_MIN_WIDTH // 2)


def test_all_zero_input():
    x = torch.zeros(50, 30)
    w = torch.randn(70, 30, requires_grad=True)
    pattern = binary_pattern(x, 70, known_binary=True)
    assert pattern is not None and pattern.nnz == 0
    out = binary_linear(x, w, pattern)
    (gw,) = torch.autograd.grad(out.sum(), [w])
    assert torch.equal(out, torch.zeros(50, 70)) and torch.equal(gw, torch.zeros(70, 30))


@pytest.mark.parametrize("density", [0.02, 0.6])  # event-driven, and dense fallback
def test_binary_matmul_t(density):
    x = _spikes((400, 30), density)
    other = torch.randn(400, 128)
    torch.testing.assert_close(binary_matmul_t(x, other), x.T @ other, **TOL)


@pytest.mark.parametrize("layout", ["time_major", "batch_major_view", "expanded"])
def test_project_layouts_and_paths(layout):
    """project() gives x @ W.T per step for every input layout, sparse or dense."""
    g = torch.Generator().manual_seed(4)
    n_steps, n_samples, n_in, n_out = 12, 10, 40, 256
    if layout == "time_major":
        x = _spikes((n_steps, n_samples, n_in), 0.01)
    elif layout == "batch_major_view":
        x = _spikes((n_samples, n_steps, n_in), 0.01).transpose(0, 1)
    else:
        x = _spikes((n_samples, n_in), 0.01).unsqueeze(0).expand(n_steps, n_samples, n_in)
    w = torch.randn(n_out, n_in, generator=g, requires_grad=True)
    expected = torch.einsum("tbi,oi->tbo", x, w)
    grad = torch.randn(n_steps, n_samples, n_out, generator=g)
    (gw_expected,) = torch.autograd.grad(expected, [w], grad)
    for sparse in (False, True):
        out = project(x, w, sparse=sparse)
        event_driven = "_BinaryLinearBackward" in _graph_names(out)
        assert event_driven == (sparse and layout != "expanded")
        (gw,) = torch.autograd.grad(out, [w], grad)
        assert out.shape == (n_steps, n_samples, n_out)
        torch.testing.assert_close(out, expected, **TOL)
        torch.testing.assert_close(gw, gw_expected, **TOL)


def project(x, w, sparse):
    """The fused engine's projection (event-driven when sparse enough) or the dense one."""
    return get_engine("fused").project(x, w, binary=False) if sparse else dense_project(x, w)


def _graph_names(t):
    names, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    return names


def test_project_uses_the_event_driven_path_only_when_allowed_and_sparse():
    w = torch.randn(256, 50, requires_grad=True)
    sparse_x, dense_x = _spikes((20, 16, 50), 0.01), _spikes((20, 16, 50), 0.5)
    assert "_BinaryLinearBackward" in _graph_names(project(sparse_x, w, sparse=True))
    assert "_BinaryLinearBackward" not in _graph_names(project(sparse_x, w, sparse=False))
    assert "_BinaryLinearBackward" not in _graph_names(project(dense_x, w, sparse=True))


def test_sample_events_gather_the_scanned_and_regrouped_pattern():
    """A batch gathered from the data set's index equals the batch scanned and regrouped."""
    g = torch.Generator().manual_seed(3)
    data = (torch.rand(40, 9, 23, generator=g) < 0.08).float()
    events = SampleEvents(binary_pattern(data.reshape(-1, 23), None), 40, 9)
    samples = np.array([7, 0, 39, 7, 12, 25])  # any order, repeats allowed
    gathered = events.batch(samples)
    batch = data[samples]
    scanned = StepPattern.from_pattern(
        binary_pattern(batch.reshape(-1, 23), None), 9, len(samples), batch_major=True
    )
    for name in ("keys", "cols", "offsets"):
        assert torch.equal(getattr(gathered, name), getattr(scanned, name)), name
    weight_t = torch.randn(23, 5, generator=g)
    dense = (batch.transpose(0, 1).reshape(-1, 23) @ weight_t).reshape(9, len(samples), 5)
    torch.testing.assert_close(gathered.matmul(weight_t, 2, 6).view(4, -1, 5), dense[2:6])


def test_network_with_gathered_events_matches_scanning():
    """Training through SampleEvents gives bit-identical outputs and gradients."""
    from sksnn._trainer import input_events
    from sksnn.network import SpikingNetwork
    from sksnn.neuron import LIFParameters
    from sksnn.noise import GeneratorNoise
    from sksnn.surrogates import get_surrogate

    g = torch.Generator().manual_seed(4)
    data = (torch.rand(30, 20, 120, generator=g) < 0.02).float()
    lif = LIFParameters(temperature=0.1, surrogate=get_surrogate("matched", 10.0))
    net = SpikingNetwork(120, (256,), 3, lif, n_steps=20, engine="fused")
    net.initialize(data, torch.Generator().manual_seed(1), GeneratorNoise(2))
    events = input_events(data, net, torch.device("cpu"))
    assert events is not None  # 2 % density, 256 outputs: event-driven
    samples = np.array([3, 17, 0, 29, 8])
    results = []
    for batch in (data[samples], events.batch(samples)):
        out = net(batch, GeneratorNoise(5))
        grads = torch.autograd.grad(out.output.square().sum(), list(net.parameters()))
        results.append((out.output, grads))
    (o1, g1), (o2, g2) = results
    # the same pattern, so the same operations in the same order: equal to the bit
    assert torch.equal(o1, o2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
    narrow = SpikingNetwork(100, (256,), 3, lif, n_steps=20, engine="fused")
    with pytest.raises(ValueError, match="The events have 120 inputs, the network 100"):
        narrow(events.batch(samples), GeneratorNoise(5))
    net.engine = "reference"
    with pytest.raises(ValueError, match="reference engine does not take spike events"):
        net(events.batch(samples), GeneratorNoise(5))


def test_fit_with_indexed_events_equals_fit_scanning_each_batch(monkeypatch):
    """fit indexes sparse 3-D spike data once; the weights are those of scanning every batch."""
    import warnings

    from sksnn import SpikingClassifier
    from sksnn import _base as estimators

    rng = np.random.default_rng(0)
    X = (rng.random((60, 30, 150)) < 0.02).astype(np.float32)
    y = rng.integers(0, 3, 60)
    params = dict(hidden_layer_sizes=(256,), max_iter=2, batch_size=16, random_state=0)
    indexed = []
    real = estimators.input_events

    def spy(X_t, module, device):
        indexed.append(real(X_t, module, device))
        return indexed[-1]

    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 2 epochs
        monkeypatch.setattr(estimators, "input_events", spy)
        models.append(SpikingClassifier(**params).fit(X, y))
        monkeypatch.setattr(estimators, "input_events", lambda X_t, module, device: None)
        models.append(SpikingClassifier(**params).fit(X, y))
    assert indexed and indexed[0] is not None  # the first fit did use the index
    for a, b in zip(models[0].module_.parameters(), models[1].module_.parameters(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(models[0].predict_proba(X), models[1].predict_proba(X))


def test_density_estimate_is_not_fooled_by_a_stride_that_matches_the_steps():
    """Spike data active only from step 1 on: every 100th row (step 0 of each sample) is
    silent, yet the input is dense and must be recognised as such."""
    x = torch.ones(2048, 100, 8)
    x[:, 0] = 0
    rows = x.reshape(-1, 8)
    assert _sparse._sampled_density(rows) > 0.9
    assert binary_pattern(rows, 256) is None  # far above the cut-over: the dense product


def test_scan_gives_up_on_real_values_and_on_too_many_non_zeros():
    x = torch.zeros(5000, 300)
    x[-1, -1] = 0.5  # real-valued, in the last chunk only
    assert _sparse._active_numpy(x, None, False) is None
    dense_tail = torch.zeros(5000, 300)
    dense_tail[2500:] = 1.0  # half the rows full: far too dense for a sparse product
    assert _sparse._active_numpy(dense_tail, 256, True) is None
    sparse = torch.zeros(5000, 300)
    sparse[::50, ::30] = 1.0
    rows, cols = _sparse._active_numpy(sparse, 256, False)
    assert len(rows) == int(sparse.sum()) and torch.equal(
        sparse[rows.long(), cols.long()], torch.ones(len(rows))
    )
