"""The estimators inside scikit-learn's model-selection tools."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingClassifier


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


class _ThreadRecorder(SpikingClassifier):
    """Records the torch thread count seen inside fit (as it runs in a joblib worker)."""

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight)
        self.torch_threads_ = torch.get_num_threads()
        return self


def test_grid_search_over_surrogates_and_temperatures(digits):
    X, y = digits
    pipe = make_pipeline(
        StandardScaler(),
        SpikingClassifier(
            hidden_layer_sizes=(32,), n_steps=15, max_iter=5, batch_size=30, random_state=0
        ),
    )
    grid = {
        "spikingclassifier__surrogate": ["matched", "superspike", "atan"],
        "spikingclassifier__noise_temperature": [0.0, 0.05, 0.2],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)
    results = pd.DataFrame(search.cv_results_)
    assert len(results) == 9 and results["mean_test_score"].notna().all()
    assert search.best_params_ in search.cv_results_["params"]
    assert search.best_score_ == results["mean_test_score"].max()
    # chance is 0.1: every configuration learns something in 5 epochs of 5 batches
    assert results["mean_test_score"].min() > 0.3
    assert search.best_estimator_.score(X, y) > 0.8


def test_workers_do_not_oversubscribe(digits):
    X, y = digits
    est = _ThreadRecorder(hidden_layer_sizes=(8,), n_steps=5, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = cross_validate(est, X, y, cv=2, n_jobs=2, return_estimator=True)
    cores = os.cpu_count() or 1
    # joblib's loky workers limit the OpenMP pool to cores // n_jobs, and torch follows
    assert all(e.torch_threads_ <= max(1, cores // 2) for e in out["estimator"])


def test_cross_val_score_is_reproducible(digits):
    X, y = digits
    est = make_pipeline(
        StandardScaler(),
        SpikingClassifier(hidden_layer_sizes=(16,), n_steps=10, max_iter=2, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cross_val_score(est, X, y, cv=3)
        b = cross_val_score(est, X, y, cv=3, n_jobs=2)
    np.testing.assert_array_equal(a, b)
