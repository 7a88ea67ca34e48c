"""sksnn's threads for work that releases the GIL: scanning spike inputs
(:mod:`sksnn._sparse`) and running the compiled kernels (:mod:`sksnn.engines.compiled`) on all
of torch's threads.

Where torch runs its operations on an OpenMP runtime that exports the GNU OpenMP interface
(torch's Linux wheels bundle ``libgomp``), the tasks run on torch's own OpenMP threads: after
each of its parallel operations torch's worker threads keep spinning for a while, waiting for
the next one, and a thread of ours started beside them would share a core with a spinning
thread and run at half speed (measured in benchmarks/results.md). Given a task, the spinning
thread runs it instead. Elsewhere (other platforms and runtimes, forked children) a pool of
Python threads runs them.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["map_threads", "tasks_run_torch_single_threaded"]

_pool: ThreadPoolExecutor | None = None
_pool_key = (0, 0)
_pool_lock = threading.Lock()
_forked = False
_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# Basenames of the OpenMP runtimes that export GOMP_parallel and omp_get_thread_num.
_OPENMP_RUNTIMES = ("libgomp", "libiomp5", "libomp")


def _forget_threads_in_child() -> None:
    # A forked child inherits the pool object (not its threads), maybe a held lock, and an
    # OpenMP runtime whose threads it does not have.
    global _pool, _pool_key, _pool_lock, _forked
    _pool, _pool_key, _pool_lock, _forked = None, (0, 0), threading.Lock(), True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_in_child)


def map_threads(fn: Callable[[int], object], n_tasks: int) -> list:
    """``[fn(0), ..., fn(n_tasks - 1)]``, run on as many threads as torch is allowed.

    For tasks that spend their time in code that releases the GIL (NumPy, compiled kernels)
    and are large enough (milliseconds each) to pay for a hand-over between threads. Task
    ``k`` runs on thread ``k mod n_threads`` (fewer where the OpenMP runtime gives fewer); the
    first exception raised is re-raised once all tasks have ended.
    """
    n_threads = min(torch.get_num_threads(), n_tasks)
    if n_threads < 2:
        return [fn(k) for k in range(n_tasks)]
    runtime = None if _forked else _openmp_runtime()
    if runtime is not None:
        return _on_openmp_threads(runtime, fn, n_tasks, n_threads)
    return _on_pool(fn, n_tasks, n_threads)


def tasks_run_torch_single_threaded() -> bool:
    """Whether :func:`map_threads` runs its tasks on torch's OpenMP threads, where a torch
    operation in a task runs on its task's thread alone (inside a parallel region); on the
    pool it would start torch's threads from each task."""
    return not _forked and _openmp_runtime() is not None


def _on_openmp_threads(runtime, fn, n_tasks: int, n_threads: int) -> list:
    """The tasks in one OpenMP parallel region of ``n_threads`` threads (the calling thread
    is the first of them)."""
    results: list = [None] * n_tasks
    errors: list[BaseException] = []

    def body(_data) -> None:
        # the team may be smaller than asked for (inside another parallel region, under a
        # thread limit): its threads share out all the tasks
        k, team = runtime.omp_get_thread_num(), runtime.omp_get_num_threads()
        try:
            for task in range(k, n_tasks, team):
                results[task] = fn(task)
        except BaseException as error:  # an exception cannot cross the C runtime
            errors.append(error)

    task = _TASK(body)  # referenced until the region ends
    runtime.GOMP_parallel(task, None, n_threads, 0)
    if errors:
        raise errors[0]
    return results


def _on_pool(fn, n_tasks: int, n_threads: int) -> list:
    global _pool, _pool_key
    with _pool_lock:
        if _pool is None or _pool_key != (os.getpid(), n_threads):
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="sksnn")
            _pool_key = (os.getpid(), n_threads)
        pool = _pool
    return list(pool.map(fn, range(n_tasks)))


@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """torch's OpenMP runtime with its GNU interface, or None where it cannot be told apart:
    not Linux, torch not built on OpenMP, or several runtimes loaded and none of them
    torch's own copy."""
    if not sys.platform.startswith("linux"):
        return None
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "/" in line}
    except OSError:
        return None
    loaded = sorted(p for p in paths if os.path.basename(p).startswith(_OPENMP_RUNTIMES))
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
    own = [p for p in loaded if os.path.realpath(p).startswith(torch_dir)]
    candidates = own or loaded
    if len(candidates) != 1:
        return None
    try:
        runtime = ctypes.CDLL(candidates[0])
        runtime.GOMP_parallel.argtypes = [_TASK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        runtime.GOMP_parallel.restype = None
        runtime.omp_get_thread_num.restype = ctypes.c_int
        runtime.omp_get_num_threads.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return runtime
