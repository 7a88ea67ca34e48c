"""sksnn's thread pool for work that releases the GIL: scanning spike inputs
(:mod:`sksnn._sparse`) and running the compiled kernels (:mod:`sksnn.engines.compiled`) on all
of torch's threads.

Both run code that releases the GIL for milliseconds at a time. Work of that kind must
not run *alongside* torch's operations: torch's OpenMP threads spin between the many small
operations of a time loop, and a third busy thread on the same cores slows every one of them
down (measurements in benchmarks/results.md, "Measurements behind the code").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["map_threads"]

_pool: ThreadPoolExecutor | None = None
_pool_key = (0, 0)
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object (not its threads) and maybe a held lock.
    global _pool, _pool_key, _pool_lock
    _pool, _pool_key, _pool_lock = None, (0, 0), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def map_threads(fn: Callable[[int], object], n_tasks: int) -> list:
    """``[fn(0), ..., fn(n_tasks - 1)]``, run on as many threads as torch is allowed.

    For tasks that spend their time in code that releases the GIL (NumPy, compiled kernels)
    and are large enough (milliseconds each) to pay for a hand-over between threads. One pool
    per process and torch thread count.
    """
    global _pool, _pool_key
    n_threads = torch.get_num_threads()
    if n_threads < 2 or n_tasks < 2:
        return [fn(k) for k in range(n_tasks)]
    with _pool_lock:
        if _pool is None or _pool_key != (os.getpid(), n_threads):
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="sksnn")
            _pool_key = (os.getpid(), n_threads)
        pool = _pool
    return list(pool.map(fn, range(n_tasks)))
