"""
A grid search on Dask
=====================

Run a hyper-parameter search on a Dask cluster through joblib's dask backend.

The same ``GridSearchCV`` over surrogate x noise temperature runs twice: in this process
(``n_jobs=1``) and on a Dask cluster, inside ``joblib.parallel_config(backend="dask")``. The
cluster here is a ``LocalCluster`` on the loopback interface; to use a real one, replace it by
``Client("tcp://scheduler:8786")``. Both runs give the same results (same seeds, one torch thread
per fit); only the wall-clock time differs.

Run from the repository root (needs ``pip install "sksnn[distributed]"``)::

    python examples/scaling_out_dask.py [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import dask
import numpy as np
import torch
from distributed import Client, LocalCluster
from joblib import parallel_config
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingClassifier

GRID = {
    "spikingclassifier__surrogate": ["matched", "superspike", "atan"],
    "spikingclassifier__noise_temperature": [0.0, 0.05, 0.1],
}


def make_search(n_jobs: int | None) -> GridSearchCV:
    model = make_pipeline(
        StandardScaler(),
        SpikingClassifier(hidden_layer_sizes=(64,), n_steps=20, max_iter=10, random_state=0),
    )
    return GridSearchCV(model, GRID, cv=3, n_jobs=n_jobs)


def warm_up() -> None:
    """One tiny fit: a fresh process pays a few seconds for torch's lazy imports on the first
    optimiser it builds, which would otherwise be counted as search time."""
    X = np.random.RandomState(0).randn(20, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SpikingClassifier((4,), n_steps=2, max_iter=1).fit(X, np.arange(20) % 2)


def timed_fit(search: GridSearchCV, X: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    n_fits = 3 * int(np.prod([len(v) for v in GRID.values()]))
    print(f"GridSearchCV: {n_fits} fits of SpikingClassifier on {len(X)} digits")

    # Same thread count as the workers below, so both runs compute exactly the same numbers.
    torch.set_num_threads(1)
    warm_up()
    local = make_search(n_jobs=1)
    local_seconds = timed_fit(local, X, y)
    print(f"local (1 process, 1 thread):  {local_seconds:6.1f} s, best {local.best_params_}")

    # Each worker is a process with one thread; OMP_NUM_THREADS makes torch in the worker use
    # one thread too, so workers do not compete for the same cores. Dask starts workers with
    # MALLOC_TRIM_THRESHOLD_=65536, which (on glibc) also pins the mmap threshold at 128 KiB, so
    # every mid-sized torch tensor is mmap'ed and unmapped again; a larger mmap threshold,
    # which must be in the environment before the worker process starts, removes most of
    # those page faults (about 20 % faster fits here).
    spawn_env = {"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**25}
    with (
        dask.config.set(spawn_env),
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm_up)
        remote = make_search(n_jobs=-1)
        with parallel_config(backend="dask"):
            remote_seconds = timed_fit(remote, X, y)
    print(
        f"dask ({args.workers} workers x 1 thread): {remote_seconds:6.1f} s, "
        f"best {remote.best_params_}"
    )
    same = np.array_equal(
        local.cv_results_["mean_test_score"], remote.cv_results_["mean_test_score"]
    )
    print(f"identical cv_results_ scores: {same}; speed-up {local_seconds / remote_seconds:.2f}x")
    print(f"best cross-validated accuracy {remote.best_score_:.3f}")


if __name__ == "__main__":
    main()
