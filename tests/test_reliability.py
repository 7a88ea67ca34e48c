"""Reliability: bad input, divergence, interruption, concurrency, determinism, memory."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from sksnn import SpikingClassifier, SpikingRegressor, TrainingDivergedError

TINY = dict(hidden_layer_sizes=(4,), n_steps=3, max_iter=1, random_state=0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


# ------------------------------------------------------------------------------------------
# 1. The bad-input matrix
# ------------------------------------------------------------------------------------------
# Each case builder returns (X, y, sample_weight, accepted) where `accepted` is None when the
# fit must succeed, else a tuple of substrings of which the error message must contain one.
def _X(rng, n, f, dtype=np.float64):
    return rng.randn(n, f).astype(dtype)


def _labels(n):
    return np.arange(n) % 2


X_CASES = {
    "float64": lambda r, n, f: (_X(r, n, f), None),
    "float32": lambda r, n, f: (_X(r, n, f, np.float32), None),
    "float16": lambda r, n, f: (_X(r, n, f, np.float16), None),
    "int64": lambda r, n, f: ((_X(r, n, f) * 10).astype(np.int64), None),
    "int8": lambda r, n, f: ((_X(r, n, f) * 10).astype(np.int8), None),
    "bool": lambda r, n, f: (_X(r, n, f) > 0, None),
    "object-numbers": lambda r, n, f: (_X(r, n, f).astype(object), None),
    "list": lambda r, n, f: (_X(r, n, f).tolist(), None),
    "3-D spikes": lambda r, n, f: ((r.rand(n, 4, f) < 0.3).astype(np.float32), None),
    "dataframe-str-columns": lambda r, n, f: (_frame(_X(r, n, f), str), None),
    "dataframe-int-columns": lambda r, n, f: (_frame(_X(r, n, f), int), None),
    "dataframe-mixed-columns": lambda r, n, f: (
        _frame(_X(r, n, max(f, 2)), "mixed"),
        ("Feature names are only supported if all input features have string names",),
    ),
    "object-strings": lambda r, n, f: (
        np.full((n, f), "a", dtype=object),
        ("could not convert", "string"),
    ),
    "unicode": lambda r, n, f: (np.full((n, f), "abc"), ("dtype", "string", "convert")),
    "complex": lambda r, n, f: (_X(r, n, f) + 1j, ("Complex data not supported",)),
    "nan": lambda r, n, f: (_poke(_X(r, n, f), np.nan), ("NaN",)),
    "inf": lambda r, n, f: (_poke(_X(r, n, f), np.inf), ("infinity",)),
    "-inf": lambda r, n, f: (_poke(_X(r, n, f), -np.inf), ("infinity",)),
    "huge-for-float32": lambda r, n, f: (_poke(_X(r, n, f), 1e300), ("too large",)),
    "scalar": lambda r, n, f: (np.float64(1.0), ("scalar", "2D")),
    "1-D": lambda r, n, f: (_X(r, n, 1)[:, 0], ("1D array",)),
    "4-D": lambda r, n, f: (_X(r, n, f).reshape(n, f, 1, 1), ("dim 4",)),
    "no-samples": lambda r, n, f: (np.empty((0, f)), ("0 sample",)),
    "no-features": lambda r, n, f: (np.empty((n, 0)), ("0 feature",)),
    "3-D no-steps": lambda r, n, f: (np.empty((n, 0, f)), ("at least one step",)),
    "sparse": lambda r, n, f: (_sparse(_X(r, n, f)), ("Sparse data", "dense data")),
    "ragged": lambda r, n, f: (
        [[1.0] * f] + [[1.0] * (f + 1)] * (n - 1),
        ("inhomogeneous", "sequence"),
    ),
}

Y_CASES_CLASSIFIER = {
    "ints": lambda n: (_labels(n), None),
    "strings": lambda n: (np.array(["a", "b"])[_labels(n)], None),
    "column": lambda n: (_labels(n).reshape(-1, 1), None),
    "nan": lambda n: (np.where(_labels(n) == 0, np.nan, 1.0), ("NaN", "Unknown label type")),
    "continuous": lambda n: (np.linspace(0, 1, n) + 0.01, ("Unknown label type",)),
    "one-class": lambda n: (np.zeros(n), ("one class",)),
    "short": lambda n: (_labels(n)[:-1], ("inconsistent numbers of samples",)),
    "2-D": lambda n: (np.c_[_labels(n), _labels(n)], ("1d array", "y should be")),
}

Y_CASES_REGRESSOR = {
    "floats": lambda n: (np.linspace(-1, 1, n), None),
    "2-D": lambda n: (np.c_[np.linspace(-1, 1, n), np.ones(n)], None),
    "ints": lambda n: (np.arange(n), None),
    "nan": lambda n: (np.r_[np.nan, np.ones(n - 1)], ("NaN",)),
    "strings": lambda n: (np.array(["x"] * n, dtype=object), ("convert", "string", "numeric")),
    "short": lambda n: (np.ones(n - 1), ("inconsistent numbers of samples",)),
}

SW_CASES = {
    "none": lambda n: (None, None),
    "ones": lambda n: (np.ones(n), None),
    "negative": lambda n: (-np.ones(n), ("negative",)),
    "zeros": lambda n: (np.zeros(n), ("non-zero", "sums to zero")),
    "short": lambda n: (np.ones(max(n - 1, 0)), ("shape", "sample_weight")),
    "nan": lambda n: (np.r_[np.nan, np.ones(n - 1)], ("NaN",)),
}


def _poke(X, value):
    X = X.copy()
    X[0, 0] = value
    return X


def _frame(X, kind):
    pd = pytest.importorskip("pandas")
    f = X.shape[1]
    columns = {
        str: [f"c{i}" for i in range(f)],
        int: list(range(f)),
        "mixed": ["c0", *range(1, f)],
    }[kind]
    return pd.DataFrame(X, columns=columns)


def _sparse(X):
    sparse = pytest.importorskip("scipy.sparse")
    return sparse.csr_matrix(X)


OUTCOMES: collections.Counter = collections.Counter()


def _n_samples(X):
    if isinstance(X, list):
        return len(X)
    return X.shape[0] if getattr(X, "ndim", 0) >= 1 else 0


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    estimator=st.sampled_from(["classifier", "regressor"]),
    x_case=st.sampled_from(sorted(X_CASES)),
    y_index=st.integers(0, 7),
    sw_case=st.sampled_from(sorted(SW_CASES)),
    n=st.integers(2, 12),
    f=st.integers(1, 4),
)
def test_bad_input_matrix(estimator, x_case, y_index, sw_case, n, f):
    """Every combination fits correctly or fails with an error naming its problem."""
    rng = np.random.RandomState(n * 10 + f)
    X, x_err = X_CASES[x_case](rng, n, f)
    n_rows = _n_samples(X) or n
    y_cases = Y_CASES_CLASSIFIER if estimator == "classifier" else Y_CASES_REGRESSOR
    y_case = sorted(y_cases)[y_index % len(y_cases)]
    y, y_err = y_cases[y_case](n_rows)
    sw, sw_err = SW_CASES[sw_case](n_rows)
    if estimator == "classifier" and y_err is None and n_rows < 2:
        y_err = ("one class",)
    expected = [e for e in (x_err, y_err, sw_err) if e is not None]
    Est = SpikingClassifier if estimator == "classifier" else SpikingRegressor
    est = Est(**TINY)
    try:
        est.fit(X, y, sample_weight=sw)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        accepted = [s for group in expected for s in group]
        assert expected, f"{x_case}/{y_case}/{sw_case} should fit, raised {exc!r}"
        assert any(s in message for s in accepted), (x_case, y_case, sw_case, message)
        # the error came before any training
        assert not hasattr(est, "module_") or getattr(est, "n_iter_", 0) == 0
        OUTCOMES[f"{type(exc).__name__} naming the problem"] += 1
        return
    assert not expected, f"{x_case}/{y_case}/{sw_case} fitted but should have failed"
    pred = est.predict(X)
    assert len(pred) == n_rows
    if estimator == "classifier":
        assert set(np.unique(pred)) <= set(est.classes_)
        proba = est.predict_proba(X)
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
    else:
        assert np.isfinite(pred).all()
        assert np.shape(pred) == np.shape(np.asarray(y, dtype=float))
    OUTCOMES["correct fit"] += 1


def test_bad_input_matrix_summary(capsys):
    # runs after the matrix in file order; prints how the cases ended (pytest -s shows it)
    if OUTCOMES:
        with capsys.disabled():
            print(f"\nbad-input matrix: {sum(OUTCOMES.values())} cases: {dict(OUTCOMES)}")
    assert all(v >= 0 for v in OUTCOMES.values())


# ------------------------------------------------------------------------------------------
# 2. Divergence
# ------------------------------------------------------------------------------------------
def test_inputs_whose_filtered_amplitude_overflows_float32_are_refused():
    # 3e38 is a finite float32, but 50 steps of it summed by the membrane filter are not: the
    # simulation could only produce inf/NaN, so fit must refuse before training.
    X = np.full((20, 50, 3), 3e38, dtype=np.float32)
    y = np.arange(20) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow in sklearn's check
        with pytest.raises(ValueError, match="too large for float32"):
            SpikingClassifier(max_iter=1, hidden_layer_sizes=(4,)).fit(X, y)


def test_divergence_keeps_last_finite_weights_and_can_continue():
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 5), np.arange(60) % 3
    clf = SpikingClassifier(**TINY, warm_start=True, learning_rate_init=1e30)
    last = None
    for _ in range(20):  # one epoch per call, until the absurd step size blows up
        try:
            clf.fit(X, y)
        except TrainingDivergedError as exc:
            assert "diverged" in str(exc)
            break
        last = {k: v.clone() for k, v in clf.module_.state_dict().items()}
    else:
        pytest.fail("learning_rate_init=1e30 did not diverge in 20 epochs")
    assert last is not None, "diverged in the first epoch: nothing to compare with"
    # the weights are those after the last completed epoch; the history agrees with them
    after = clf.module_.state_dict()
    assert all(torch.equal(last[k], after[k]) for k in last)
    assert clf.n_iter_ == len(clf.loss_curve_) and np.isfinite(clf.loss_curve_).all()
    assert np.isfinite(clf.predict_proba(X)).all()
    # the estimator stays usable: a sensible cold refit works
    clf.set_params(learning_rate_init=1e-3, warm_start=False).fit(X, y)
    assert clf.n_iter_ == 1 and np.isfinite(clf.loss_curve_).all()


# ------------------------------------------------------------------------------------------
# 3. Interruption
# ------------------------------------------------------------------------------------------
def test_keyboard_interrupt_keeps_last_completed_epoch(monkeypatch):
    import sksnn._trainer as estimators

    rng = np.random.RandomState(0)
    X, y = rng.randn(80, 5), np.arange(80) % 2
    real_train_epoch = estimators.train_epoch
    calls = {"epochs": 0}

    def interrupted_train_epoch(*args, **kwargs):
        calls["epochs"] += 1
        if calls["epochs"] < 3:
            return real_train_epoch(*args, **kwargs)

        def stop_after_first_batch(loss):
            raise KeyboardInterrupt

        # one optimiser step of epoch 3 happens before the interrupt
        return real_train_epoch(*args, **{**kwargs, "on_batch": stop_after_first_batch})

    reference = SpikingClassifier(**{**TINY, "max_iter": 2, "batch_size": 20}).fit(X, y)
    clf = SpikingClassifier(**{**TINY, "max_iter": 10, "batch_size": 20})
    monkeypatch.setattr(estimators, "train_epoch", interrupted_train_epoch)
    with pytest.warns(UserWarning, match="interrupted during epoch 3"):
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X, y)
    assert clf.n_iter_ == 2 == len(clf.loss_curve_)
    # the kept weights are exactly those after epoch 2 (a 2-epoch fit with the same seed)
    ref = reference.module_.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in clf.module_.state_dict().items())
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    monkeypatch.setattr(estimators, "train_epoch", real_train_epoch)
    clf.set_params(warm_start=True, max_iter=2)
    clf.fit(X, y)
    assert clf.n_iter_ == 4 == len(clf.loss_curve_)


# ------------------------------------------------------------------------------------------
# 4. Concurrency
# ------------------------------------------------------------------------------------------
def _run_threads(fns):
    results = [None] * len(fns)
    errors = []

    def run(i):
        try:
            results[i] = fns[i]()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return results


def test_concurrent_predictions_match_serial():
    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 6), np.arange(200) % 3
    clf = SpikingClassifier(hidden_layer_sizes=(16,), n_steps=10, max_iter=2, random_state=0)
    clf.set_params(predict_trials=3).fit(X, y)
    serial = clf.predict_proba(X)
    chunks = np.array_split(np.arange(200), 8)
    results = _run_threads([lambda c=c: clf.predict_proba(X[c]) for c in chunks])
    np.testing.assert_array_equal(np.vstack(results), serial)
    results = _run_threads([lambda: clf.predict_proba(X) for _ in range(8)])
    for r in results:
        np.testing.assert_array_equal(r, serial)


def test_concurrent_fits_do_not_interfere():
    rng = np.random.RandomState(0)
    X, y = rng.randn(100, 6), np.arange(100) % 2
    params = [
        dict(hidden_layer_sizes=(8,), n_steps=8, max_iter=3, random_state=1),
        dict(hidden_layer_sizes=(12,), n_steps=6, max_iter=3, random_state=2, surrogate="atan"),
    ]
    serial = [SpikingClassifier(**p).fit(X, y).predict_proba(X) for p in params]
    threaded = _run_threads(
        [lambda p=p: SpikingClassifier(**p).fit(X, y).predict_proba(X) for p in params]
    )
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# 5. Determinism across processes
# ------------------------------------------------------------------------------------------
_FIT_AND_HASH = """
import hashlib, warnings
import numpy as np, torch
from sklearn.datasets import load_digits
from sksnn import SpikingClassifier
warnings.simplefilter("ignore")
torch.set_num_threads(1)
X, y = load_digits(return_X_y=True)
clf = SpikingClassifier(hidden_layer_sizes=(32,), n_steps=10, max_iter=2, random_state=7)
clf.fit(X[:300] / 16, y[:300])
h = hashlib.sha256()
for k, v in clf.module_.state_dict().items():
    h.update(k.encode()); h.update(v.numpy().tobytes())
h.update(clf.predict_proba(X[300:400] / 16).tobytes())
print(h.hexdigest())
"""


def test_same_seed_bitwise_equal_across_fresh_processes():
    digests = {
        subprocess.run(
            [sys.executable, "-c", _FIT_AND_HASH],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64


# ------------------------------------------------------------------------------------------
# 7. Bounded memory
# ------------------------------------------------------------------------------------------
_PREDICT_PEAK = """
import resource, sys, numpy as np, torch, warnings
from sksnn import SpikingClassifier
warnings.simplefilter("ignore")
torch.set_num_threads(1)
n = int(sys.argv[1])
rng = np.random.RandomState(0)
clf = SpikingClassifier(hidden_layer_sizes=(8,), n_steps=50, max_iter=1, random_state=0)
clf.fit(rng.randn(200, 2), np.arange(200) % 2)
X = rng.randn(n, 2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
proba = clf.predict_proba(X)
assert proba.shape == (n, 2) and np.isfinite(proba).all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024)
"""


@pytest.mark.slow
def test_predict_on_a_million_rows_runs_in_bounded_memory():
    def growth(n):
        out = subprocess.run(
            [sys.executable, "-c", _PREDICT_PEAK, str(n)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return int(out.stdout.strip())

    small, large = growth(10**5), growth(10**6)
    # Unchunked, each (50 steps x 1e6 rows x 8 units) float32 tensor alone would take 1.6 GB.
    # Chunked, only per-row arrays grow with n: X (float64 and its float32 copy), the
    # readouts and probabilities, ~100 bytes a row, so 9e5 more rows need ~90 MB more.
    assert large - small < 200 * 2**20, (small / 2**20, large / 2**20)
    assert large < 600 * 2**20, large / 2**20


def test_a_batch_that_cannot_fit_fails_early(monkeypatch):
    import sksnn._trainer as training

    monkeypatch.setattr(training, "available_memory", lambda device: 10 * 2**20)
    clf = SpikingClassifier(hidden_layer_sizes=(256,), n_steps=100, batch_size=200)
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match="smaller batch_size or n_steps"):
        clf.fit(rng.randn(300, 4), np.arange(300) % 2)
    assert not hasattr(clf, "module_")
    # the estimate is not absurdly conservative: a small model fits in 10 MiB
    SpikingClassifier(**TINY).fit(rng.randn(30, 4), np.arange(30) % 2)


def test_sksnn_io_rejects_a_pickle_without_running_it(tmp_path):
    io = pytest.importorskip("sksnn.io")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "model.sksnn"
    import pickle

    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError):
        io.load(path)
    assert not marker.exists()
