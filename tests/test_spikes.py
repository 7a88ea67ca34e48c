"""SpikeTrains: construction, indexing, persistence, bad input, and estimators fed events."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from sksnn import SpikeTimeBinner, SpikeTrains, SpikingClassifier, SpikingRegressor
from sksnn import _trainer as trainer
from sksnn.datasets import load_shd, make_randman

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _random_spikes(shape, density, seed):
    return (np.random.default_rng(seed).random(shape) < density).astype(np.float32)


@pytest.fixture(scope="module")
def dense():
    return _random_spikes((37, 11, 13), 0.1, 0)


# --------------------------------------------------------------------------- construction


def test_from_dense_round_trip(dense):
    st = SpikeTrains.from_dense(dense)
    assert st.shape == dense.shape and len(st) == 37 and st.ndim == 3
    assert st.n_events == int(dense.sum())
    assert st.density == dense.mean(dtype=np.float64)
    np.testing.assert_array_equal(st.to_dense(), dense)
    assert st.to_dense(np.uint8).dtype == np.uint8


def test_from_events_in_any_order_equals_from_dense(dense):
    sample, step, unit = np.nonzero(dense)
    order = np.random.default_rng(1).permutation(len(sample))
    st = SpikeTrains.from_events(sample[order], step[order], unit[order], shape=dense.shape)
    assert st == SpikeTrains.from_dense(dense)


def test_samples_without_spikes(dense):
    empty = np.zeros((4, 3, 2), np.float32)
    empty[2, 1, 0] = 1
    st = SpikeTrains.from_dense(empty)
    np.testing.assert_array_equal(st.to_dense(), empty)
    assert SpikeTrains.from_events([], [], [], shape=(3, 2, 2)).n_events == 0


def test_from_spike_times_bins_like_load_shd():
    # bins of 0.1: times sit mid-bin so that no rounding question arises
    times = [np.array([0.05, 0.15, 0.17, 0.95, 1.0, 1.3]), np.array([0.55, 0.55]), []]
    units = [np.array([0, 1, 1, 3, 2, 2]), np.array([4, 4]), []]
    st = SpikeTrains.from_spike_times(times, units, n_steps=10, n_units=5, max_time=1.0)
    expected = np.zeros((3, 10, 5), np.float32)
    expected[0, 0, 0] = expected[0, 1, 1] = expected[0, 9, 3] = 1  # 1.0 and 1.3 dropped
    expected[1, 5, 4] = 1  # two spikes in one bin count once
    np.testing.assert_array_equal(st.to_dense(), expected)


def test_load_shd_sparse_equals_dense(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    path = tmp_path / "shd.h5"
    n = 2100  # more than one read chunk
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            k = rng.integers(0, 30)
            times[i] = rng.uniform(0, 1.6, k).astype(np.float32)
            units[i] = rng.integers(0, 40, k).astype(np.uint16)
        f.create_dataset("labels", data=rng.integers(0, 5, n).astype(np.uint8))
    X, y = load_shd(path, n_steps=20, n_units=40)
    st, y_sparse = load_shd(path, n_steps=20, n_units=40, sparse=True)
    assert isinstance(st, SpikeTrains)
    np.testing.assert_array_equal(y_sparse, y)
    np.testing.assert_array_equal(st.to_dense(), X)
    with pytest.raises(ValueError, match="counts"):
        load_shd(path, n_units=40, binary=False, sparse=True)


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    "key",
    [
        slice(3, 20),
        slice(None, None, -3),
        slice(30, 5),
        np.array([5, 0, 5, 36]),
        [-1, 2],
        np.arange(37) % 3 == 0,
        np.array([], dtype=np.int64),
    ],
    ids=[
        "slice",
        "reversed-step",
        "empty-slice",
        "array-repeats",
        "negative-list",
        "mask",
        "empty",
    ],
)
def test_indexing_matches_the_dense_array(dense, key):
    st = SpikeTrains.from_dense(dense)
    expected = dense[key]
    np.testing.assert_array_equal(st[key].to_dense(), expected)
    np.testing.assert_array_equal(st.dense_samples(key), expected)
    np.testing.assert_array_equal(st[key, ...].to_dense(), expected)


def test_int_index_keeps_the_sample_axis(dense):
    st = SpikeTrains.from_dense(dense)
    np.testing.assert_array_equal(st[-2].to_dense(), dense[[-2]])


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (37, "out of range"),
        (np.array([0, 37]), "lie in"),
        (np.ones(5, bool), "mask"),
        (np.array([0.0, 1.0]), "integer"),
        ((0, 1), "samples only"),
    ],
)
def test_bad_index(dense, key, match):
    with pytest.raises(IndexError, match=match):
        SpikeTrains.from_dense(dense)[key]


def test_immutable_and_compact_pickle(dense):
    st = SpikeTrains.from_dense(_random_spikes((200, 50, 100), 0.02, 2))
    with pytest.raises(AttributeError):
        st.shape = (1, 1, 1)
    with pytest.raises(ValueError, match="read-only"):
        st._cells[0] = 3
    blob = pickle.dumps(st)
    assert pickle.loads(blob) == st
    # events only: int64 offsets and int32 cells, plus a small header
    assert len(blob) < 8 * (len(st) + 1) + 4 * st.n_events + 1000
    assert st[10:20] == SpikeTrains.from_dense(st.to_dense()[10:20])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 1], [0], [0, 1], (2, 2, 2)), "same length"),
        (([0, 2], [0, 0], [0, 1], (2, 2, 2)), "sample indices"),
        (([0, 1], [0, -1], [0, 1], (2, 2, 2)), "step indices"),
        (([0, 1], [0, 0], [0, 5], (2, 2, 2)), "unit indices"),
        (([0.0, 1.0], [0, 0], [0, 1], (2, 2, 2)), "integers"),
        (([0, 1], [0, 0], [0, 1], (2, 0, 2)), "at least one"),
        (([0, 1], [0, 0], [0, 1], (2, 2)), "three integers"),
        (
            ([1, 0, 1], [1, 0, 1], [1, 1, 1], (2, 2, 2)),
            "duplicate event.*sample 1, step 1, unit 1",
        ),
    ],
)
def test_from_events_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        SpikeTrains.from_events(*args[:3], shape=args[3])


def test_from_dense_rejects_non_spikes():
    with pytest.raises(ValueError, match="only 0 and 1"):
        SpikeTrains.from_dense(np.full((2, 3, 4), 0.5))
    with pytest.raises(ValueError, match="3-D"):
        SpikeTrains.from_dense(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("times", "units", "match"),
    [
        ([[0.1, -0.2]], [[0, 1]], ">= 0"),
        ([[0.1, np.nan]], [[0, 1]], "finite"),
        ([[0.1, 0.2]], [[0]], "2 spike times but 1 unit"),
        ([[0.1]], [[9]], "n_units=4"),
        ([[0.1]], [[1.0]], "integers"),
        ([[0.1], [0.2]], [[1]], "2 samples but units has 1"),
    ],
)
def test_from_spike_times_rejects(times, units, match):
    with pytest.raises(ValueError, match=match):
        SpikeTrains.from_spike_times(times, units, n_steps=5, n_units=4, max_time=1.0)


def test_spike_trains_for_a_model_fitted_on_tabular_data(dense):
    rng = np.random.default_rng(0)
    clf = SpikingClassifier((8,), n_steps=5, max_iter=1, random_state=0)
    clf.fit(rng.normal(size=(20, 13)), rng.integers(0, 2, 20))
    with pytest.raises(ValueError, match=r"SpikeTrains .*fitted on 2-D"):
        clf.predict(SpikeTrains.from_dense(dense))


def test_spike_trains_with_the_wrong_number_of_units(dense):
    clf = SpikingClassifier((8,), max_iter=1, random_state=0).fit(dense, np.arange(37) % 2)
    other = SpikeTrains.from_dense(_random_spikes((5, 11, 12), 0.1, 0))
    with pytest.raises(ValueError, match=r"12 features.*expecting 13"):
        clf.predict(other)


# --------------------------------------------------------------------------- estimators


def _same_weights(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def randman():
    X, y = make_randman(n_samples=240, n_classes=3, n_units=60, n_steps=30, random_state=0)
    return X, y


@pytest.mark.parametrize(
    ("hidden", "events"), [((256,), True), ((32,), False)], ids=["events", "dense-batches"]
)
@pytest.mark.parametrize("early_stopping", [False, True])
def test_classifier_identical_on_spike_trains(
    randman, monkeypatch, hidden, events, early_stopping
):
    X, y = randman
    st = SpikeTrains.from_dense(X)
    paths = []
    real = trainer.input_events

    def spy(data, module, device):
        index = real(data, module, device)
        paths.append(index is not None)
        return index

    monkeypatch.setattr("sksnn._base.input_events", spy)
    params = dict(max_iter=2, early_stopping=early_stopping, random_state=0)
    a = SpikingClassifier(hidden, **params).fit(X, y)
    b = SpikingClassifier(hidden, **params).fit(st, y)
    # the dense array and the spike trains take the same path, the one the width calls for
    assert paths == [events, events]
    assert _same_weights(a, b)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(st))
    np.testing.assert_array_equal(a.predict_proba(X), a.predict_proba(st))
    sim_a, sim_b = a.simulate(X[:7], n_trials=2), b.simulate(st[:7], n_trials=2)
    np.testing.assert_array_equal(sim_a.output, sim_b.output)
    assert a.score(X, y) == b.score(st, y)


def test_partial_fit_and_regressor_identical(randman):
    X, y = randman
    st = SpikeTrains.from_dense(X)
    target = X.sum(axis=(1, 2)) / 10.0 + y
    a = SpikingRegressor((64,), max_iter=2, random_state=1).fit(X, target)
    b = SpikingRegressor((64,), max_iter=2, random_state=1).fit(st, target)
    assert _same_weights(a, b)
    np.testing.assert_array_equal(a.predict(X), b.predict(st))
    c = SpikingClassifier((16,), random_state=2).partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    d = SpikingClassifier((16,), random_state=2).partial_fit(st[:100], y[:100], classes=[0, 1, 2])
    c.partial_fit(X[100:], y[100:])
    d.partial_fit(st[100:], y[100:])
    assert _same_weights(c, d)


def test_never_densifies_more_than_a_batch_or_chunk(randman, monkeypatch):
    X, y = randman
    st = SpikeTrains.from_dense(X)
    sizes = []
    real = SpikeTrains.dense_samples

    def spy(self, key, dtype=np.float32):
        out = real(self, key, dtype)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(SpikeTrains, "dense_samples", spy)
    monkeypatch.setattr(SpikeTrains, "to_dense", lambda *a, **k: pytest.fail("densified"))
    clf = SpikingClassifier((32,), batch_size=50, max_iter=1, random_state=0).fit(st, y)
    assert sizes and max(sizes) <= 50 * 5  # training batches; the init draws up to 256
    sizes.clear()
    import sksnn._inference as inference

    monkeypatch.setattr(inference, "_MIN_CHUNK", 64)
    monkeypatch.setattr(inference, "_INFERENCE_ELEMENTS", 1)
    clf.predict(st)
    assert max(sizes) == 64 and sum(sizes) == len(st)


# --------------------------------------------------------------------------- scikit-learn


def test_model_selection_on_spike_trains(randman):
    X, y = randman
    st = SpikeTrains.from_dense(X)
    params = dict(hidden_layer_sizes=(16,), max_iter=2, random_state=0)
    dense_scores = cross_val_score(SpikingClassifier(**params), X, y, cv=3)
    event_scores = cross_val_score(SpikingClassifier(**params), st, y, cv=3)
    np.testing.assert_array_equal(dense_scores, event_scores)
    X_tr, X_te, _, _ = train_test_split(st, y, random_state=0)
    assert isinstance(X_tr, SpikeTrains) and len(X_tr) + len(X_te) == len(st)
    search = GridSearchCV(
        SpikingClassifier(**params), {"noise_temperature": [0.0, 0.1]}, cv=2, n_jobs=2
    ).fit(st, y)
    assert isinstance(search.best_estimator_, SpikingClassifier)
    assert clone(search.best_estimator_).get_params() == search.best_estimator_.get_params()


def _raw_events(n, seed):
    """Per-sample (times, units): class 1 fires early, class 0 late."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = []
    for label in y:
        units = rng.integers(0, 10, 20)
        times = rng.uniform(0.0, 0.5, 20) + (0.0 if label else 0.5)
        X.append((times, units))
    return X, y


def test_binner_pipeline_grid_search():
    X, y = _raw_events(120, 0)
    pipe = Pipeline(
        [
            ("bin", SpikeTimeBinner(max_time=1.0, n_units=10)),
            ("snn", SpikingClassifier((16,), max_iter=3, random_state=0)),
        ]
    )
    search = GridSearchCV(pipe, {"bin__n_steps": [10, 20]}, cv=2).fit(X, y)
    assert search.best_estimator_.named_steps["snn"].n_features_in_ == 10
    assert search.best_estimator_.predict(X[:5]).shape == (5,)
    binned = SpikeTimeBinner(n_steps=10).fit(X).transform(X)
    assert binned.shape == (120, 10, 10)  # n_units learned as the largest index + 1


def test_binner_structured_events_and_errors():
    events = np.zeros(3, dtype=[("t", float), ("x", int), ("p", int)])
    events["t"], events["x"] = [0.1, 0.2, 0.9], [0, 3, 1]
    st = SpikeTimeBinner(n_steps=5, max_time=1.0).fit_transform([events, events[:1]])
    assert st.shape == (2, 5, 4) and st.n_events == 4
    with pytest.raises(ValueError, match="raw events"):
        SpikeTimeBinner().fit(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="pair"):
        SpikeTimeBinner().fit([np.zeros(4)])
    fitted = SpikeTimeBinner(n_steps=5).fit([(np.array([0.1]), np.array([2]))])
    with pytest.raises(ValueError, match="n_units=3"):
        fitted.transform([(np.array([0.1]), np.array([3]))])


def test_binner_parameters_are_validated():
    X = [(np.array([0.1]), np.array([0]))]
    for params in ({"n_steps": 0}, {"max_time": 0.0}, {"n_units": 0}):
        with pytest.raises(ValueError, match=next(iter(params))):
            SpikeTimeBinner(**params).fit(X)
