"""sksnn's helper threads.

One helper thread draws a layer's uniform numbers while the network prepares the layer's input
(:mod:`sksnn.network`); a small pool scans spike inputs for their active entries in parallel
(:mod:`sksnn._sparse`). Both run NumPy code that releases the GIL for milliseconds at a time;
torch's own operations use torch's intra-op threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

__all__ = ["background", "map_threads"]

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()
# Workers of map_threads, separate from the helper thread so that a scan does not queue
# behind a noise draw running there.
_pool: ThreadPoolExecutor | None = None
_pool_key = (0, 0)


def background(fn: Callable, *args) -> Future:
    """Run ``fn(*args)`` on sksnn's one helper thread (created on first use, per process).

    A forked child inherits the executor object but not its thread, hence the process check.
    Tasks must not wait on other tasks of this executor.
    """
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sksnn")
            _executor_pid = os.getpid()
        return _executor.submit(fn, *args)


def map_threads(fn: Callable[[int], object], n_tasks: int) -> list:
    """``[fn(0), ..., fn(n_tasks - 1)]``, run on as many threads as torch is allowed.

    For tasks that spend their time in code that releases the GIL (NumPy array operations)
    and are large enough (milliseconds each) to pay for a hand-over between threads.
    """
    global _pool, _pool_key
    n_threads = min(torch.get_num_threads(), n_tasks)
    if n_threads < 2:
        return [fn(k) for k in range(n_tasks)]
    with _executor_lock:
        if _pool is None or _pool_key != (os.getpid(), n_threads):
            _pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="sksnn-map")
            _pool_key = (os.getpid(), n_threads)
        pool = _pool
    return list(pool.map(fn, range(n_tasks)))
