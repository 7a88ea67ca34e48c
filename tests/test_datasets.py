"""Tests for sksnn.datasets: the random-manifold generator and the SHD/SSC reader."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from sksnn.datasets import load_shd, make_randman

# alpha=2 keeps 32 Fourier modes instead of 1000, which makes most tests here ~30x cheaper;
# the defaults are exercised by the separability test.
SMALL = dict(n_samples=60, n_classes=3, n_units=8, n_steps=20, alpha=2.0)


# --------------------------------------------------------------------------- make_randman


def test_randman_shapes_and_dtypes():
    X, y = make_randman(**SMALL, random_state=0)
    assert X.shape == (60, 20, 8)
    assert X.dtype == np.float32
    assert y.shape == (60,)
    assert y.dtype == np.int64
    assert set(np.unique(X).tolist()) <= {0.0, 1.0}
    assert set(np.unique(y).tolist()) == {0, 1, 2}


def test_randman_default_signature_runs():
    X, y = make_randman(n_samples=20, random_state=0)
    assert X.shape == (20, 100, 20)
    assert np.bincount(y).tolist() == [2] * 10


def test_randman_one_spike_per_sample_and_unit():
    X, _ = make_randman(**SMALL, random_state=1)
    np.testing.assert_array_equal(X.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("n_steps", "step_frac"), [(20, 0.5), (10, 0.3), (7, 0.5), (1, 0.5), (13, 1.0), (50, 0.01)]
)
def test_randman_spikes_only_in_first_steps(n_steps, step_frac):
    params = {**SMALL, "n_steps": n_steps}
    X, _ = make_randman(**params, step_frac=step_frac, random_state=2)
    n_active = math.ceil(step_frac * n_steps)
    assert X[:, n_active:, :].sum() == 0
    # The window is used from its first step up to its last one: min-max normalisation puts
    # each unit's earliest spike of a class at step 0 and its latest at the window's end.
    steps = X.argmax(axis=1)
    assert steps.min() == 0
    assert steps.max() == n_active - 1


def test_randman_class_balance():
    _, y = make_randman(**SMALL, random_state=3)
    assert np.bincount(y).tolist() == [20, 20, 20]


def test_randman_remainder_goes_to_first_classes():
    params = {**SMALL, "n_samples": 11, "n_classes": 4}
    X, y = make_randman(**params, random_state=3)
    assert len(X) == 11
    assert np.bincount(y, minlength=4).tolist() == [3, 3, 3, 2]


def test_randman_is_shuffled():
    _, y = make_randman(**SMALL, random_state=4)
    assert not np.all(np.diff(y) >= 0)


def test_randman_deterministic_for_same_seed():
    X1, y1 = make_randman(**SMALL, random_state=5)
    X2, y2 = make_randman(**SMALL, random_state=5)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


def test_randman_accepts_random_state_instance():
    X1, y1 = make_randman(**SMALL, random_state=np.random.RandomState(6))
    X2, y2 = make_randman(**SMALL, random_state=6)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


def test_randman_differs_for_other_seed():
    X1, _ = make_randman(**SMALL, random_state=7)
    X2, _ = make_randman(**SMALL, random_state=8)
    assert not np.array_equal(X1, X2)


def test_randman_none_seed_is_random():
    X1, _ = make_randman(**SMALL, random_state=None)
    X2, _ = make_randman(**SMALL, random_state=None)
    assert not np.array_equal(X1, X2)


def test_randman_dim_manifold_2():
    X, y = make_randman(**SMALL, dim_manifold=2, random_state=9)
    assert X.shape == (60, 20, 8)
    np.testing.assert_array_equal(X.sum(axis=1), 1.0)
    assert np.bincount(y).tolist() == [20, 20, 20]


def test_randman_n_samples_equal_n_classes():
    X, y = make_randman(**{**SMALL, "n_samples": 3}, random_state=10)
    assert sorted(y.tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(X.sum(axis=1), 1.0)


def _one_nn_accuracy(X: np.ndarray, y: np.ndarray) -> float:
    # Spike-time representation: the step at which each unit fires, shape (n_samples, n_units).
    times = X.argmax(axis=1)
    t_train, t_test, y_train, y_test = train_test_split(
        times, y, test_size=0.25, random_state=0, stratify=y
    )
    return KNeighborsClassifier(n_neighbors=1).fit(t_train, y_train).score(t_test, y_test)


def test_randman_classes_are_separable():
    # Chance is 1/5 = 0.2. Each class is a curve in 20-D time space, drawn independently, so
    # curves of different classes almost never come close and 1-NN held-out accuracy measured
    # 0.96-1.00 over seeds 0-7 with these settings; 0.8 leaves a wide margin for RNG-stream
    # changes while still failing if labels and manifolds got decoupled (shuffling the labels
    # of this very data set gives 0.14).
    X, y = make_randman(
        n_samples=400, n_classes=5, n_units=20, n_steps=50, dim_manifold=1, random_state=0
    )
    assert _one_nn_accuracy(X, y) >= 0.8


def test_randman_2d_classes_are_separable():
    # 2-D manifolds need more samples to cover, so 1-NN is weaker than in 1-D: with alpha=2
    # (smooth) it measured 0.95-0.99 over seeds 0-7 (0.75-0.90 with the rougher alpha=1).
    # 0.7 is 3.5x chance (0.2) and still far below the measured range.
    X, y = make_randman(
        n_samples=400,
        n_classes=5,
        n_units=20,
        n_steps=50,
        dim_manifold=2,
        alpha=2.0,
        random_state=0,
    )
    assert _one_nn_accuracy(X, y) >= 0.7


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 2.0}, "n_classes"),
        ({"n_classes": True}, "n_classes"),
        ({"n_samples": 2, "n_classes": 3}, "n_samples"),
        ({"n_samples": "100"}, "n_samples"),
        ({"n_units": 0}, "n_units"),
        ({"n_steps": 0}, "n_steps"),
        ({"dim_manifold": 0}, "dim_manifold"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"step_frac": 0.0}, "step_frac"),
        ({"step_frac": 1.5}, "step_frac"),
        ({"step_frac": -0.1}, "step_frac"),
        ({"step_frac": float("inf")}, "step_frac"),
    ],
)
def test_randman_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_randman(**{**SMALL, **kwargs})


def test_randman_does_not_import_torch_or_sksnn():
    """Module level: only load_shd(sparse=True) imports SpikeTrains, when it is called."""
    import ast
    import inspect

    import sksnn.datasets

    tree = ast.parse(inspect.getsource(sksnn.datasets))
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    assert not imported & {"torch", "sksnn", "."}


# --------------------------------------------------------------------------- load_shd


def _write_shd(path, times, units, labels, skip=()):
    """Write an SHD-layout file: vlen 'spikes/times' (float), 'spikes/units' (int), 'labels'."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        if "spikes/times" not in skip:
            ds = spikes.create_dataset(
                "times", (len(times),), dtype=h5py.vlen_dtype(np.dtype("float32"))
            )
            for i, t in enumerate(times):
                ds[i] = np.asarray(t, dtype=np.float32)
        if "spikes/units" not in skip:
            ds = spikes.create_dataset(
                "units", (len(units),), dtype=h5py.vlen_dtype(np.dtype("uint16"))
            )
            for i, u in enumerate(units):
                ds[i] = np.asarray(u, dtype=np.uint16)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))
    return path


# With max_time=1.0 and n_steps=10 the bins are 0.1 s wide; times sit mid-bin so float32
# storage cannot move them across a bin edge.
TIMES = [
    [0.05, 0.15, 0.17, 0.95, 1.0, 1.3],  # 1.0 and 1.3 are at/after max_time: dropped
    [0.55, 0.55, 0.55],
    [],
]
UNITS = [
    [0, 1, 1, 3, 2, 2],
    [4, 4, 0],
    [],
]
LABELS = [3, 0, 19]


@pytest.fixture
def shd_file(tmp_path):
    pytest.importorskip("h5py")
    return _write_shd(tmp_path / "tiny.h5", TIMES, UNITS, LABELS)


def test_load_shd_bins_known_spikes(shd_file):
    X, y = load_shd(shd_file, n_steps=10, max_time=1.0, n_units=5, binary=False)
    assert X.shape == (3, 10, 5)
    assert X.dtype == np.float32
    assert y.dtype == np.int64
    assert y.tolist() == LABELS

    expected = np.zeros((3, 10, 5), dtype=np.float32)
    expected[0, 0, 0] = 1  # 0.05 s
    expected[0, 1, 1] = 2  # 0.15 s and 0.17 s share bin 1
    expected[0, 9, 3] = 1  # 0.95 s, last bin
    expected[1, 5, 4] = 2
    expected[1, 5, 0] = 1
    np.testing.assert_array_equal(X, expected)


def test_load_shd_binary_clips_counts(shd_file):
    X, _ = load_shd(shd_file, n_steps=10, max_time=1.0, n_units=5)
    assert X.max() == 1
    assert X[0, 1, 1] == 1
    assert X[1, 5, 4] == 1
    assert X.sum() == 5


def test_load_shd_drops_spikes_at_or_after_max_time(shd_file):
    # Unit 2 fires only at 1.0 s and 1.3 s: gone at max_time=1.0, both kept at max_time=1.4.
    X, _ = load_shd(shd_file, n_steps=10, max_time=1.0, n_units=5, binary=False)
    assert X[0, :, 2].sum() == 0
    assert X[0].sum() == 4
    X, _ = load_shd(shd_file, n_steps=14, max_time=1.4, n_units=5, binary=False)
    assert X[0, :, 2].sum() == 2
    assert X[0].sum() == 6


def test_load_shd_default_arguments_and_dtype(shd_file):
    X, _ = load_shd(str(shd_file), dtype=np.uint8)
    assert X.shape == (3, 100, 700)
    assert X.dtype == np.uint8
    # 14 ms bins: all six spikes of sample 0 (1.3 s < 1.4 s included) land in distinct cells;
    # sample 1's two unit-4 spikes at 0.55 s share one, so 6 + 2 cells are set.
    assert X.sum() == 8


def test_load_shd_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="zenkelab"):
        load_shd(tmp_path / "nope.h5")


@pytest.mark.parametrize("key", ["spikes/times", "spikes/units", "labels"])
def test_load_shd_missing_key(tmp_path, key):
    path = _write_shd(tmp_path / "bad.h5", TIMES, UNITS, LABELS, skip=(key,))
    with pytest.raises(ValueError, match=key):
        load_shd(path, n_units=5)


def test_load_shd_unit_out_of_range(shd_file):
    with pytest.raises(ValueError, match="n_units"):
        load_shd(shd_file, n_steps=10, max_time=1.0, n_units=4)


def test_load_shd_length_mismatch(tmp_path):
    path = _write_shd(tmp_path / "bad.h5", TIMES, UNITS, LABELS[:2])
    with pytest.raises(ValueError, match="labels"):
        load_shd(path, n_units=5)


def test_load_shd_ragged_mismatch(tmp_path):
    path = _write_shd(tmp_path / "bad.h5", [[0.1, 0.2]], [[0]], [0])
    with pytest.raises(ValueError, match="Sample 0"):
        load_shd(path, n_units=5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_steps": 0}, "n_steps"), ({"max_time": 0.0}, "max_time"), ({"n_units": 0}, "n_units")],
)
def test_load_shd_invalid_arguments(shd_file, kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_shd(shd_file, **kwargs)


def test_load_shd_without_h5py_names_extra(shd_file, monkeypatch):
    # A None entry in sys.modules makes `import h5py` raise ImportError.
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"sksnn\[data\]"):
        load_shd(shd_file)
