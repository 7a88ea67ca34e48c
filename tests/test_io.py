"""Safe model files (sksnn.io): exact round trips and rejection of anything untrusted."""

import hashlib
import io
import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import sksnn.io as sio
from sksnn import InconsistentVersionWarning, SpikingClassifier, SpikingRegressor
from sksnn.datasets import make_randman
from sksnn.surrogates import SURROGATES, Atan, Surrogate, register_surrogate

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = dict(hidden_layer_sizes=(8,), n_steps=6, max_iter=2, random_state=0)


def _data(n=48, n_features=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    y = np.array(["cat", "dog", "emu"])[np.arange(n) % 3]
    return X, y


def _roundtrip(estimator, tmp_path):
    path = tmp_path / "model.sksnn"
    sio.save(estimator, path)
    return sio.load(path)


def _assert_same_simulation(a, b, X):
    ra = a.simulate(X, n_trials=2, record_membrane=True)
    rb = b.simulate(X, n_trials=2, record_membrane=True)
    np.testing.assert_array_equal(ra.output, rb.output)
    for sa, sb in zip(ra.spikes, rb.spikes, strict=True):
        np.testing.assert_array_equal(sa, sb)
    for ma, mb in zip(ra.membranes, rb.membranes, strict=True):
        np.testing.assert_array_equal(ma, mb)


def _assert_same_state(a, b):
    # Every attribute comes back: a new fitted attribute that io.py does not store fails here.
    assert set(vars(a)) == set(vars(b))
    for name in ("n_features_in_", "n_outputs_", "n_iter_", "t_", "loss_curve_", "best_loss_"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.firing_rates_, b.firing_rates_)
    for (ka, va), (kb, vb) in zip(
        a.module_.state_dict().items(), b.module_.state_dict().items(), strict=True
    ):
        assert ka == kb
        assert va.dtype == vb.dtype
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------
def test_classifier_string_labels_roundtrip(tmp_path):
    X, y = _data()
    clf = SpikingClassifier(**SMALL, predict_trials=3).fit(X, y)
    loaded = _roundtrip(clf, tmp_path)
    assert type(loaded) is SpikingClassifier
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    _assert_same_simulation(clf, loaded, X)
    _assert_same_state(clf, loaded)


def test_object_dtype_labels_and_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = SpikingClassifier(**SMALL).fit(frame, pd.Series(y, dtype=object))
    assert clf.classes_.dtype == object  # the case io.py must convert to a typed array
    loaded = _roundtrip(clf, tmp_path)
    assert loaded.classes_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, clf.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame.rename(columns={"a": "z"}))


def test_integer_labels_keep_dtype(tmp_path):
    X, _ = _data()
    y = np.arange(len(X)) % 2 + 10
    clf = SpikingClassifier(**SMALL).fit(X, y)
    loaded = _roundtrip(clf, tmp_path)
    assert loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_regressor_multi_output_roundtrip(tmp_path):
    X, _ = _data()
    Y = np.c_[X[:, 0] * 3 + 1, X[:, 1] - X[:, 2]]
    reg = SpikingRegressor(**SMALL, predict_trials=4).fit(X, Y)
    loaded = _roundtrip(reg, tmp_path)
    mean, std = reg.predict(X, return_std=True)
    mean2, std2 = loaded.predict(X, return_std=True)
    assert mean.shape == (len(X), 2)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)
    _assert_same_simulation(reg, loaded, X)
    _assert_same_state(reg, loaded)


def test_3d_input_model_roundtrip(tmp_path):
    X, y = make_randman(n_samples=40, n_classes=2, n_units=5, n_steps=12, random_state=0)
    clf = SpikingClassifier(**SMALL).fit(X, y)
    loaded = _roundtrip(clf, tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    _assert_same_simulation(clf, loaded, X)
    with pytest.raises(ValueError, match="3-D"):
        loaded.predict(X[:, 0, :])


def test_recurrent_early_stopping_model_roundtrip_and_training_continues(tmp_path):
    X, y = _data(n=60)
    params = {**SMALL, "hidden_layer_sizes": (8, 6)}
    clf = SpikingClassifier(**params, recurrent=True, early_stopping=True).fit(X, y)
    assert clf._best_state is not None
    loaded = _roundtrip(clf, tmp_path)
    assert loaded.module_.recurrent
    assert loaded.validation_scores_ == clf.validation_scores_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    _assert_same_state(clf, loaded)
    for key, value in clf._best_state.items():
        np.testing.assert_array_equal(loaded._best_state[key].numpy(), value.numpy())
    # Optimiser moments and the generator were saved: one more epoch gives the same weights.
    clf.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert loaded.loss_curve_ == clf.loss_curve_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_surrogate_instance_parameter_roundtrip(tmp_path):
    X, y = _data()
    clf = SpikingClassifier(**SMALL, surrogate=Atan(beta=3.0), surrogate_beta=None).fit(X, y)
    loaded = _roundtrip(clf, tmp_path)
    assert loaded.surrogate == Atan(beta=3.0)
    assert loaded.module_.lif == clf.module_.lif
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@dataclass(frozen=True)
class _IoTestRamp(Surrogate):
    """A user-defined surrogate with an extra field (registered only inside its test)."""

    width: float = 1.0
    name = "io_test_ramp"

    def derivative(self, x):
        return self.beta * (x.abs() < self.width).to(x.dtype)


@dataclass(frozen=True)
class _Unregistered(Surrogate):
    def derivative(self, x):
        return self.beta * (x.abs() < 1.0).to(x.dtype)


@pytest.fixture
def registered_ramp():
    # The registry is global: other test modules parametrize over it, so clean up afterwards.
    register_surrogate(_IoTestRamp)
    yield _IoTestRamp
    del SURROGATES[_IoTestRamp.name]


def test_registered_user_surrogate_roundtrip_and_unregistered_rejected(tmp_path, registered_ramp):
    X, y = _data()
    clf = SpikingClassifier(**SMALL, surrogate=registered_ramp(beta=2.0, width=0.5)).fit(X, y)
    path = tmp_path / "ramp.sksnn"
    sio.save(clf, path)
    loaded = sio.load(path)
    assert loaded.surrogate == registered_ramp(beta=2.0, width=0.5)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    del SURROGATES[registered_ramp.name]
    try:
        with pytest.raises(sio.ModelFileError, match="Unknown surrogate 'io_test_ramp'"):
            sio.load(path)
    finally:
        register_surrogate(registered_ramp)
    with pytest.raises(TypeError, match="not registered"):
        sio.save(SpikingClassifier(surrogate=_Unregistered()), tmp_path / "bad.sksnn")


def test_unfitted_estimator_and_file_objects():
    buffer = io.BytesIO()
    sio.save(SpikingRegressor(hidden_layer_sizes=(3, 4), tol=0.5), buffer)
    buffer.seek(0)
    loaded = sio.load(buffer)
    assert loaded.get_params() == SpikingRegressor(hidden_layer_sizes=(3, 4), tol=0.5).get_params()
    assert not hasattr(loaded, "module_")


def test_random_state_instance_is_stored_as_none(tmp_path):
    X, y = _data()
    clf = SpikingClassifier(**{**SMALL, "random_state": np.random.RandomState(0)}).fit(X, y)
    with pytest.warns(UserWarning, match="RandomState"):
        sio.save(clf, tmp_path / "m.sksnn")
    loaded = sio.load(tmp_path / "m.sksnn")
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_save_rejects_other_estimators(tmp_path):
    with pytest.raises(TypeError, match="SpikingClassifier or SpikingRegressor"):
        sio.save(LogisticRegression(), tmp_path / "m.sksnn")


# --------------------------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = SpikingClassifier(**SMALL).fit(X, y)
    path = tmp_path_factory.mktemp("io") / "model.sksnn"
    sio.save(clf, path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(src, dst, *, params=None, arrays=None, header=None, extra=None, checksum=True):
    """Write a modified copy of a model file; by default with consistent checksums."""
    members = _members(src)
    document = json.loads(members["params.json"])
    if params is not None:
        params(document)
        members["params.json"] = json.dumps(document).encode()
    if arrays is not None:
        with np.load(io.BytesIO(members["arrays.npz"])) as npz:
            content = {k: npz[k] for k in npz.files}
        arrays(content)
        buffer = io.BytesIO()
        np.savez(buffer, **content)
        members["arrays.npz"] = buffer.getvalue()
    head = json.loads(members["header.json"])
    if checksum:
        for name in ("params.json", "arrays.npz"):
            head["sha256"][name] = hashlib.sha256(members[name]).hexdigest()
    if header is not None:
        header(head)
    members["header.json"] = json.dumps(head).encode()
    members.update(extra or {})
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def test_consistent_rewrite_loads(saved, tmp_path):
    # The rewriting helper itself produces loadable files, so the rejections below are caused
    # by the one change each makes.
    X, _ = _data()
    loaded = sio.load(_rewrite(saved, tmp_path / "same.sksnn"))
    np.testing.assert_array_equal(loaded.predict_proba(X), sio.load(saved).predict_proba(X))


def test_tampered_bytes_rejected(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    at = data.index(b'"SpikingClassifier"')
    data[at + 1 : at + 6] = b"Evil!"
    path = tmp_path / "tampered.sksnn"
    path.write_bytes(bytes(data))
    with pytest.raises(sio.ModelFileError):
        sio.load(path)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
def test_truncated_file_rejected(saved, tmp_path, fraction):
    data = saved.read_bytes()
    path = tmp_path / "truncated.sksnn"
    path.write_bytes(data[: int(fraction * len(data))])
    with pytest.raises(sio.ModelFileError):
        sio.load(path)


def test_wrong_checksum_rejected(saved, tmp_path):
    def edit(document):
        document["params"]["max_iter"] = 3

    path = _rewrite(saved, tmp_path / "m.sksnn", params=edit, checksum=False)
    with pytest.raises(sio.ModelFileError, match=r"Checksum mismatch for params\.json"):
        sio.load(path)


def test_unknown_estimator_type_rejected(saved, tmp_path):
    def edit(document):
        document["estimator"] = "LogisticRegression"

    with pytest.raises(sio.ModelFileError, match="Unknown estimator type 'LogisticRegression'"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", params=edit))


def test_unknown_parameter_rejected(saved, tmp_path):
    def edit(document):
        document["params"]["n_neurons"] = 3

    with pytest.raises(sio.ModelFileError, match="n_neurons"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", params=edit))


def test_unregistered_surrogate_name_rejected(saved, tmp_path):
    def edit(document):
        document["params"]["surrogate"] = {"__surrogate__": {"name": "nope", "fields": {}}}

    with pytest.raises(sio.ModelFileError, match="Unknown surrogate 'nope'"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", params=edit))


def test_extra_array_rejected(saved, tmp_path):
    def edit(arrays):
        arrays["payload"] = np.zeros(3)

    with pytest.raises(sio.ModelFileError, match=r"unexpected arrays.*payload"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", arrays=edit))


def test_missing_array_rejected(saved, tmp_path):
    def edit(arrays):
        del arrays["weights.readout.bias"]

    with pytest.raises(sio.ModelFileError, match=r"missing the array 'weights\.readout\.bias'"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", arrays=edit))


def test_wrong_shape_rejected(saved, tmp_path):
    def edit(arrays):
        arrays["weights.layers.0.weight"] = np.zeros((8, 5), dtype=np.float32)

    with pytest.raises(sio.ModelFileError, match=r"'weights.layers.0.weight' has shape \(8, 5\)"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", arrays=edit))


def test_inconsistent_n_features_rejected(saved, tmp_path):
    def edit(document):
        document["fitted"]["n_features_in_"] = 5

    with pytest.raises(sio.ModelFileError, match="does not match n_features_in_"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", params=edit))


def test_extra_member_rejected(saved, tmp_path):
    path = _rewrite(saved, tmp_path / "m.sksnn", extra={"run_me.py": b"print('hi')"})
    with pytest.raises(sio.ModelFileError, match=r"unexpected.*run_me\.py"):
        sio.load(path)


def test_newer_format_version_rejected(saved, tmp_path):
    def edit(header):
        header["format_version"] = sio.FORMAT_VERSION + 1

    with pytest.raises(sio.ModelFileError, match="Unsupported model file format version"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", header=edit))


def test_other_sksnn_version_warns(saved, tmp_path):
    def edit(header):
        header["sksnn_version"] = "0.0.1"

    with pytest.warns(InconsistentVersionWarning, match="0.0.1"):
        sio.load(_rewrite(saved, tmp_path / "m.sksnn", header=edit))


class _Marker:
    """Unpickling this object creates a file: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_file_is_not_unpickled(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(sio.ModelFileError, match="Not a readable sksnn model file"):
        sio.load(path)
    assert not marker.exists()
    # The payload is live: plain pickle would have run it.
    pickle.loads(path.read_bytes()).close()
    assert marker.exists()


def test_pickled_object_array_is_not_unpickled(saved, tmp_path):
    marker = tmp_path / "executed"

    def edit(arrays):
        arrays["classes_"] = np.array([_Marker(marker), "b", "c"], dtype=object)

    path = _rewrite(saved, tmp_path / "m.sksnn", arrays=edit)
    with pytest.raises(sio.ModelFileError, match="allow_pickle"):
        sio.load(path)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# skops
# --------------------------------------------------------------------------------------------
# The sksnn types a skops file of a default SpikingClassifier asks to trust (documented in
# the README); skops refuses to load it until the user lists them.
SKOPS_TYPES = {
    "sksnn.estimators.SpikingClassifier",
    "sksnn.neuron.LIFParameters",
    "sksnn.surrogates.Matched",
    "sksnn.surrogates.SigmoidNoise",
}


def test_skops_roundtrip(tmp_path):
    skops_io = pytest.importorskip("skops.io")
    X, y = _data()
    clf = SpikingClassifier(**SMALL).fit(X, y)
    path = tmp_path / "m.skops"
    skops_io.dump(clf, path)
    untrusted = set(skops_io.get_untrusted_types(file=path))
    assert untrusted == SKOPS_TYPES
    with pytest.raises(Exception, match=r"[Uu]ntrusted"):
        skops_io.load(path)
    loaded = skops_io.load(path, trusted=sorted(SKOPS_TYPES))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


# --------------------------------------------------------------------------------------------
# Forged configurations: a consistent checksum does not make a file trustworthy
# --------------------------------------------------------------------------------------------
def _set(path, value):
    """An edit of params.json that sets the entry at ``path`` (keys from the top)."""

    def edit(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


_MODULE = ("fitted", "network", "__dict__")
_LIF = (*_MODULE, "lif", "__lif__")
FORGED = {
    "n_steps 1e8 (float)": _set((*_MODULE, "n_steps"), 1e8),
    "n_steps 10**8": _set((*_MODULE, "n_steps"), 10**8),
    "n_steps 0": _set((*_MODULE, "n_steps"), 0),
    "n_steps parameter 10**8": _set(("params", "n_steps"), 10**8),
    "predict_trials 10**9": _set(("params", "predict_trials"), 10**9),
    "hidden size 100000": _set((*_MODULE, "hidden_layer_sizes"), [100000]),
    "hidden size 0": _set((*_MODULE, "hidden_layer_sizes"), [0]),
    "hidden sizes empty": _set((*_MODULE, "hidden_layer_sizes"), []),
    "hidden size string": _set((*_MODULE, "hidden_layer_sizes"), ["8"]),
    "n_inputs negative": _set((*_MODULE, "n_inputs"), -4),
    "recurrent as string": _set((*_MODULE, "recurrent"), "yes"),
    "recurrent without arrays": _set((*_MODULE, "recurrent"), True),
    "unknown encoding": _set((*_MODULE, "encoding"), "morse"),
    "unknown engine": _set((*_MODULE, "engine"), "gpu"),
    "extra network key": _set((*_MODULE, "dropout"), 0.5),
    "alpha_mem string": _set((*_LIF, "alpha_mem"), "0.9"),
    "alpha_mem above 1": _set((*_LIF, "alpha_mem"), 1.5),
    "alpha_syn negative": _set((*_LIF, "alpha_syn"), -0.1),
    "negative temperature": _set((*_LIF, "temperature"), -5.0),
    "infinite temperature": _set((*_LIF, "temperature"), float("inf")),
    "zero threshold": _set((*_LIF, "threshold"), 0.0),
    "threshold NaN": _set((*_LIF, "threshold"), float("nan")),
    "unknown reset": _set((*_LIF, "reset"), "maybe"),
    "detach_reset number": _set((*_LIF, "detach_reset"), 1),
    "surrogate as string": _set((*_LIF, "surrogate"), "matched"),
    "missing lif field": lambda d: d["fitted"]["network"]["__dict__"]["lif"]["__lif__"].pop(
        "threshold"
    ),
    "input ndim 7": _set(("fitted", "_input_ndim"), 7),
    "prediction seed 2**40": _set(("fitted", "_predict_seed"), 2**40),
    "n_iter_ negative": _set(("fitted", "n_iter_"), -1),
    "loss curve too short": _set(("fitted", "loss_curve_"), [0.5]),
    "loss curve strings": _set(("fitted", "loss_curve_"), ["a", "b"]),
    "rng of another kind": _set(("fitted", "rng", "__tuple__", 0), "PCG64"),
    "rng position 10**6": _set(("fitted", "rng", "__tuple__", 2), 10**6),
    "negative step scale": _set(("fitted", "lr_scales", 0), -1.0),
    "step scales missing one": lambda d: d["fitted"]["lr_scales"].pop(),
    "unknown optimizer entry": _set(("fitted", "optimizer", "__dict__", "0"), ["momentum"]),
    "optimizer entry for a parameter out of range": _set(
        ("fitted", "optimizer", "__dict__", "99"), {"__dict__": {}}
    ),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_configuration_rejected(saved, tmp_path, case):
    path = _rewrite(saved, tmp_path / "forged.sksnn", params=FORGED[case])
    with pytest.raises(sio.ModelFileError):
        sio.load(path)


def _poke_array(name, value):
    def edit(content):
        content[name] = content[name].copy()
        content[name].flat[0] = value

    return edit


@pytest.mark.parametrize(
    "name, value",
    [
        ("weights.layers.0.weight", np.nan),
        ("weights.readout.bias", np.inf),
        ("optimizer.0.exp_avg_sq", -1.0),
        ("firing_rates_", 2.0),
    ],
)
def test_forged_array_values_rejected(saved, tmp_path, name, value):
    path = _rewrite(saved, tmp_path / "forged.sksnn", arrays=_poke_array(name, value))
    with pytest.raises(sio.ModelFileError, match="(?i)" + name.split(".")[0]):
        sio.load(path)


def test_unsorted_classes_rejected(saved, tmp_path):
    def edit(content):
        content["classes_"] = content["classes_"][::-1].copy()

    with pytest.raises(sio.ModelFileError, match="classes_"):
        sio.load(_rewrite(saved, tmp_path / "forged.sksnn", arrays=edit))


def test_regressor_target_statistics_checked(tmp_path):
    X, _ = _data()
    reg = SpikingRegressor(**SMALL).fit(X, X[:, :2])
    path = tmp_path / "reg.sksnn"
    sio.save(reg, path)
    with pytest.raises(sio.ModelFileError, match="_y_scale"):
        sio.load(_rewrite(path, tmp_path / "a.sksnn", arrays=_poke_array("_y_scale", -1.0)))
    with pytest.raises(sio.ModelFileError, match="one output"):
        sio.load(_rewrite(path, tmp_path / "b.sksnn", params=_set(("fitted", "_y_ndim"), 1)))
    with pytest.raises(sio.ModelFileError, match="_y_count"):
        sio.load(_rewrite(path, tmp_path / "c.sksnn", params=_set(("fitted", "_y_count"), 0)))


def test_optimizer_settings_come_from_the_estimator_not_the_file(saved, tmp_path):
    assert b"param_groups" not in _members(saved)["params.json"]  # only Adam's moments

    def edit(document):
        document["params"]["learning_rate_init"] = 0.01

    loaded = sio.load(_rewrite(saved, tmp_path / "lr.sksnn", params=edit))
    X, y = _data()
    loaded.partial_fit(X, y)
    for group in loaded._optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.01 * group["lr_scale"])


def _is_real(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# field path in params.json -> does a value keep the file valid?
EDITABLE = {
    (*_MODULE, "n_steps"): lambda v: _is_int(v) and 1 <= v <= sio.MAX_STEPS,
    (*_LIF, "alpha_mem"): lambda v: _is_real(v) and 0 <= v <= 1,
    (*_LIF, "alpha_syn"): lambda v: _is_real(v) and 0 <= v <= 1,
    (*_LIF, "threshold"): lambda v: _is_real(v) and v > 0,
    (*_LIF, "temperature"): lambda v: _is_real(v) and v >= 0,
    (*_LIF, "reset"): lambda v: v in ("zero", "subtract", "none"),
    (*_LIF, "detach_reset"): lambda v: isinstance(v, bool),
    (*_MODULE, "encoding"): lambda v: v in ("current", "rate", "latency"),
    ("fitted", "_predict_seed"): lambda v: _is_int(v) and 0 <= v <= 2**31 - 1,
    ("params", "predict_trials"): lambda v: _is_int(v) and 1 <= v <= sio.MAX_PREDICT_TRIALS,
}
VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["zero", "none", "rate", "x", ""]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-2, 2), max_size=2),
)


@settings(max_examples=120, derandomize=True, deadline=None)
@given(field=st.sampled_from(sorted(EDITABLE)), value=VALUES)
def test_edited_file_loads_exactly_when_its_values_are_in_range(
    saved, tmp_path_factory, field, value
):
    path = _rewrite(saved, tmp_path_factory.mktemp("edit") / "m.sksnn", params=_set(field, value))
    if not EDITABLE[field](value):
        with pytest.raises(sio.ModelFileError):
            sio.load(path)
        return
    loaded = sio.load(path)
    if loaded.module_.n_steps <= 1000 and loaded.predict_trials <= 100:
        assert np.isfinite(loaded.predict_proba(_data()[0])).all()
