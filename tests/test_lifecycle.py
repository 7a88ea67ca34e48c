"""The lifecycle matrix: random sequences of fits, partial fits, parameter changes, saves and
predictions, under either torch default dtype. Each step must do what a user expects of a
scikit-learn estimator or fail with an error that names the problem, and never leave the
estimator in a state that predicts garbage."""

from __future__ import annotations

import collections
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

import sksnn.io as sio
from sksnn import SpikingClassifier, SpikingRegressor

TINY = dict(hidden_layer_sizes=(4,), n_steps=4, max_iter=2, random_state=0)
OPS = (
    "fit",
    "partial_fit",
    "partial_fit sorted chunk",
    "toggle warm_start",
    "toggle early_stopping",
    "change hidden_layer_sizes",
    "toggle recurrent",
    "change noise_temperature",
    "invalid learning_rate_init",
    "fewer features",
    "predict",
    "save and load",
    "pickle",
)
OUTCOMES: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_outcomes():
    # what the sequences tried, shown with pytest -s -p no:xdist
    yield
    if OUTCOMES:
        print(
            f"\nlifecycle matrix: {sum(OUTCOMES.values())} steps: {dict(sorted(OUTCOMES.items()))}"
        )


def _data(kind: str, n_features: int = 3, n: int = 24):
    rng = np.random.RandomState(n_features)
    if kind == "3-D":
        X = (rng.rand(n, 5, n_features) < 0.3).astype(np.float32)
    else:
        X = rng.randn(n, n_features)
    return X, X.reshape(n, -1)[:, 0]


class _Session:
    """Runs the operations and keeps what a user could know: the fitted architecture."""

    def __init__(self, estimator: str, kind: str) -> None:
        self.Est = SpikingClassifier if estimator == "classifier" else SpikingRegressor
        self.est = self.Est(**TINY)
        self.kind = kind
        self.X, signal = _data(kind)
        self.y = (signal > 0).astype(int) if estimator == "classifier" else signal
        self.built: tuple | None = None

    def arch(self) -> tuple:
        sizes = self.est.hidden_layer_sizes
        return (tuple(sizes), bool(self.est.recurrent))

    def attempt(self, op: str, call, expected: str | None) -> None:
        """Run ``call``; it must succeed when ``expected`` is None, else raise a ValueError
        containing ``expected``."""
        try:
            call()
        except ValueError as exc:
            assert expected is not None, f"{op} raised {exc!r}"
            assert expected in str(exc), (op, str(exc))
            OUTCOMES[f"{op}: refused"] += 1
            return
        assert expected is None, f"{op} succeeded but should have failed ({expected})"
        OUTCOMES[f"{op}: ok"] += 1

    def fit_like(self, op: str, X, y) -> None:
        incremental = op.startswith("partial_fit")
        continues = self.built is not None and (incremental or self.est.warm_start)
        expected = None
        if self.est.learning_rate_init <= 0:
            expected = "learning_rate_init"
        elif continues and self.built != self.arch():
            expected = "cannot change the network's architecture"
        elif continues and X.shape[-1] != self.est.n_features_in_:
            expected = "features"
        kwargs = {}
        if incremental and self.Est is SpikingClassifier and self.built is None:
            kwargs["classes"] = [0, 1]
        method = self.est.partial_fit if incremental else self.est.fit
        before = self.est.n_iter_ if self.built is not None else 0
        self.attempt(op, lambda: method(X, y, **kwargs), expected)
        if expected is None:
            self.built = self.arch()
            if X.shape[-1] != self.X.shape[-1]:
                self.X = _data(self.kind, n_features=X.shape[-1])[0]  # a cold fit's new width
            if incremental and continues:
                assert self.est.n_iter_ == before + 1
            assert len(self.est.loss_curve_) == self.est.n_iter_
            if not incremental:
                assert isinstance(self.est.validation_scores_, list) == self.est.early_stopping
            self.check_predictions()

    def check_predictions(self, other=None) -> None:
        X = self.X
        pred = self.est.predict(X)
        assert len(pred) == len(X)
        if self.Est is SpikingClassifier:
            proba = self.est.predict_proba(X)
            assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
        else:
            assert np.isfinite(pred).all()
        np.testing.assert_array_equal(self.est.predict(X), pred)  # predict does not mutate
        if other is not None:
            np.testing.assert_array_equal(other.predict(X), pred)

    def run(self, op: str) -> None:
        est = self.est
        if op == "fit":
            self.fit_like(op, self.X, self.y)
        elif op == "partial_fit":
            self.fit_like(op, self.X[:12], self.y[:12])
        elif op == "partial_fit sorted chunk":
            order = np.argsort(self.y, kind="stable")[-8:]
            y = self.y[order]
            if self.Est is SpikingClassifier:
                y = np.r_[0, y[1:]]  # a chunk of one class is fine for partial_fit
            self.fit_like(op, self.X[order], y)
        elif op == "toggle warm_start":
            est.set_params(warm_start=not est.warm_start)
        elif op == "toggle early_stopping":
            est.set_params(early_stopping=not est.early_stopping)
        elif op == "change hidden_layer_sizes":
            est.set_params(hidden_layer_sizes=(3, 2) if len(est.hidden_layer_sizes) == 1 else (4,))
        elif op == "toggle recurrent":
            est.set_params(recurrent=not est.recurrent)
        elif op == "change noise_temperature":
            est.set_params(noise_temperature=0.0 if est.noise_temperature > 0 else 0.2)
        elif op == "invalid learning_rate_init":
            est.set_params(learning_rate_init=-1.0 if est.learning_rate_init > 0 else 2e-3)
        elif op == "fewer features":
            X, _ = _data(self.kind, n_features=2)
            self.fit_like("partial_fit" if self.built is not None else "fit", X, self.y)
        elif op == "predict":
            if self.built is None:
                with pytest.raises(Exception, match="not fitted"):
                    est.predict(self.X)
            else:
                self.check_predictions()
        elif op in ("save and load", "pickle"):
            if op == "save and load" and est.learning_rate_init <= 0:
                # load would refuse the file: save says so instead of writing it
                with pytest.raises(ValueError, match="learning_rate_init"):
                    sio.save(est, io.BytesIO())
                OUTCOMES[f"{op}: refused"] += 1
                return
            if op == "pickle":
                copy = pickle.loads(pickle.dumps(est))
            else:
                buffer = io.BytesIO()
                sio.save(est, buffer)
                buffer.seek(0)
                copy = sio.load(buffer)
            assert copy.get_params() == est.get_params()
            if self.built is not None:
                self.check_predictions(copy)
            self.est = copy
        OUTCOMES[op] += 1


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    estimator=st.sampled_from(["classifier", "regressor"]),
    kind=st.sampled_from(["2-D", "3-D"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    ops=st.lists(st.sampled_from(OPS), min_size=3, max_size=8),
)
def test_lifecycle_matrix(estimator, kind, dtype, ops):
    session = _Session(estimator, kind)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)  # batch_size above n_samples etc.
            for op in ops:
                session.run(op)
    finally:
        torch.set_default_dtype(previous)
