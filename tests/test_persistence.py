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


def test_state_without_hidden_biases_loads_with_zero_biases():
    """A fitted state written before hidden layers had bias currents (no ``layers.i.bias``,
    one step scale and optimizer index per remaining parameter) describes the same network
    with zero biases: it loads as that network, and its moments stay with their parameters."""
    from sksnn._state import fitted_state, restore_fitted_state

    clf = _fitted()
    module = clf.module_
    with torch.no_grad():
        for layer in module.layers:
            layer.bias.zero_()
    state = fitted_state(clf)
    names = list(state["weights"])
    biases = [k for k in names if k.startswith("layers.") and k.endswith(".bias")]
    assert len(biases) == 2
    old_names = [k for k in names if k not in biases]
    old = dict(state)
    old["weights"] = {k: state["weights"][k] for k in old_names}
    old["best_weights"] = None
    old["lr_scales"] = [
        s for k, s in zip(names, state["lr_scales"], strict=True) if k in old_names
    ]
    old["optimizer"] = {
        str(old_names.index(names[int(i)])): m
        for i, m in state["optimizer"].items()
        if names[int(i)] in old_names
    }
    loaded = SpikingClassifier(**SMALL, predict_trials=3, recurrent=True)
    restore_fitted_state(loaded, old, strict=True)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    restored = fitted_state(loaded)
    for k in biases:
        np.testing.assert_array_equal(restored["weights"][k], 0.0)
    assert restored["lr_scales"] == state["lr_scales"]  # a bias's step depends on lif only
    readout = str(names.index("readout.weight"))
    np.testing.assert_array_equal(
        restored["optimizer"][readout]["exp_avg"], state["optimizer"][readout]["exp_avg"]
    )
    assert all(names[int(i)] not in biases for i in restored["optimizer"])
