"""pickle / joblib round-trips of fitted estimators."""

import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone

from sksnn import InconsistentVersionWarning, SpikingClassifier, SpikingRegressor

SMALL = dict(hidden_layer_sizes=(12, 6), n_steps=8, max_iter=2, random_state=0)
RNG = np.random.RandomState(0)
X = RNG.randn(40, 5)
Y = np.array(["no", "yes"])[np.arange(40) % 2]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield


def _fitted():
    return SpikingClassifier(**SMALL, predict_trials=3, recurrent=True).fit(X, Y)


def test_pickle_round_trip_identical_predictions():
    clf = _fitted()
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    a, b = clf.simulate(X[:3], n_trials=2), loaded.simulate(X[:3], n_trials=2)
    np.testing.assert_array_equal(a.spikes[1], b.spikes[1])
    # the pickle holds no torch objects (weights as numpy arrays) and records the version
    state = clf.__getstate__()
    assert state["_sksnn_version"] == __import__("sksnn").__version__
    assert "module_" not in state and "_optimizer" not in state
    assert all(isinstance(v, np.ndarray) for v in state["weights"].values())
    assert b"torch" not in pickle.dumps(state)


def test_round_trip_keeps_training_state_for_warm_start():
    clf = SpikingClassifier(**SMALL, warm_start=True).fit(X, Y)
    copy = pickle.loads(pickle.dumps(clf))
    clf.fit(X, Y)
    copy.fit(X, Y)
    a, b = clf.module_.state_dict(), copy.module_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_regressor_round_trip():
    reg = SpikingRegressor(**SMALL, predict_trials=2).fit(X, RNG.randn(40, 2))
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


def test_other_version_warns():
    clf = _fitted()
    state = clf.__getstate__()
    state["_sksnn_version"] = "0.0.1"
    fresh = SpikingClassifier.__new__(SpikingClassifier)
    with pytest.warns(InconsistentVersionWarning, match="0.0.1"):
        fresh.__setstate__(state)
    np.testing.assert_array_equal(fresh.predict(X), clf.predict(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        pickle.loads(pickle.dumps(clf))  # same version: silent


def test_clone_is_unfitted_with_same_params():
    clf = _fitted()
    c = clone(clf)
    assert c.get_params() == clf.get_params() and not hasattr(c, "module_")


def test_joblib_round_trip_in_a_fresh_process(tmp_path):
    clf = _fitted()
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    np.save(tmp_path / "X.npy", X)
    expected = clf.predict_proba(X)
    code = (
        "import sys, joblib, numpy as np; d = sys.argv[1]; "
        "m = joblib.load(d + '/model.joblib'); "
        "np.save(d + '/p.npy', m.predict_proba(np.load(d + '/X.npy')))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)
