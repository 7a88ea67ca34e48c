"""Hyper-parameter search on a Dask cluster through joblib's dask backend.

A local two-process cluster on the loopback interface stands in for a real one: the search must
give exactly the results of the same search run in this process.
"""

import logging
import warnings

import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")
from joblib import parallel_config  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from sksnn import SpikingClassifier  # noqa: E402

# One torch/OpenMP thread per worker process: two single-threaded workers on two cores, and the
# same thread count as the local reference run below, so that results can be bit-identical.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env=WORKER_ENV,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def _search(n_jobs):
    X, y = make_classification(
        n_samples=90, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    search = GridSearchCV(
        SpikingClassifier(hidden_layer_sizes=(16,), n_steps=10, max_iter=5, random_state=0),
        {"surrogate": ["matched", "superspike"], "noise_temperature": [0.0, 0.1]},
        cv=3,
        # A continuous score: equal results then mean equal probabilities, not just equal
        # counts of correct predictions.
        scoring="neg_log_loss",
        n_jobs=n_jobs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(X, y)


def _local_search():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _search(n_jobs=1)
    finally:
        torch.set_num_threads(threads)


def test_workers_use_one_torch_thread(client):
    threads = client.run(lambda: __import__("torch").get_num_threads())
    assert len(threads) == 2
    assert set(threads.values()) == {1}


def test_grid_search_on_dask_matches_local(client):
    local = _local_search()
    with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
        remote = _search(n_jobs=-1)
    # The fits really ran on the cluster, on both workers.
    assert len(stream.data) >= 12  # 4 candidates x 3 folds
    assert len({task["worker"] for task in stream.data}) == 2

    assert remote.best_params_ == local.best_params_
    for key in ("params", "mean_test_score", "rank_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    for split in range(3):
        key = f"split{split}_test_score"
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    # All candidates score differently, so the best parameters are not decided by a tie.
    assert len(set(local.cv_results_["mean_test_score"])) == 4
