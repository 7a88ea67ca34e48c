"""sksnn's thread pool for NumPy work: scanning spike inputs (:mod:`sksnn._sparse`) and
drawing uniform numbers (:mod:`sksnn.noise`) on all of torch's threads.

Both run NumPy code that releases the GIL for milliseconds at a time. Work of that kind must
not run *alongside* torch's operations: torch's OpenMP threads spin between the many small
operations of a time loop, and a third busy thread on the same cores slows every one of them
down (measured on 2 cores: a W1 forward pass took 36 ms with its noise drawn on a helper
thread meanwhile, against 13 ms + 11 ms drawing first).
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


def map_threads(fn: Callable[[int], object], n_tasks: int) -> list:
    """``[fn(0), ..., fn(n_tasks - 1)]``, run on as many threads as torch is allowed.

    For tasks that spend their time in code that releases the GIL (NumPy array operations)
    and are large enough (milliseconds each) to pay for a hand-over between threads. The pool
    is made per process (a forked child inherits the object but not its threads) and thread
    count.
    """
    global _pool, _pool_key
    n_threads = min(torch.get_num_threads(), n_tasks)
    if n_threads < 2:
        return [fn(k) for k in range(n_tasks)]
    with _pool_lock:
        if _pool is None or _pool_key != (os.getpid(), n_threads):
            _pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="sksnn")
            _pool_key = (os.getpid(), n_threads)
        pool = _pool
    return list(pool.map(fn, range(n_tasks)))
