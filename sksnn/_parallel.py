"""Running sksnn's time loops on two threads, and its one helper thread.

Samples of a batch are independent, so the fused LIF loop (:mod:`sksnn._fused`) can simulate
two halves of a batch at once: one on a helper thread, one on the caller's (torch operations
release the GIL). The same helper thread draws the next layer's uniform numbers while the
network projects its input (:mod:`sksnn.network`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import torch

__all__ = ["background", "loop_threads", "row_parts", "run_parts"]

# Below this many elements per step each part of the time loop runs on one thread. Each step
# is a handful of operations on (n_samples, n_units) tensors; splitting such small operations
# over threads saves microseconds on an idle machine, but when another process holds a core
# every operation waits for the descheduled worker at its barrier and the loop runs many times
# slower (measured: a W1 training step went from 0.3 s to 1-2 s on a loaded 2-core machine).
_THREADED_LOOP_ELEMENTS = 1 << 18
# Two halves of the batch on two threads when a step has at least this many elements.
# Measured on 2 cores (training steps, best of several): W1 (256 x 256 per step) 0.141 s split
# vs 0.173 s not; W3 (200 x 128) 0.021 s split vs 0.019 s not, its halves being too small
# to pay for the hand-overs between the threads.
_SPLIT_ELEMENTS = 1 << 15
# Rows are split where the element offset is a multiple of this (vector block of the
# elementwise kernels: 2 x 16 float32 with AVX-512; 64 leaves room for wider ones).
_SPLIT_ALIGN = 64

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


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


@contextmanager
def loop_threads(n_elements: int) -> Iterator[None]:
    """Run the enclosed per-step operations single-threaded when they are small."""
    n_threads = torch.get_num_threads()
    if n_threads == 1 or n_elements >= _THREADED_LOOP_ELEMENTS:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


def row_parts(n_samples: int, n_units: int, device: torch.device) -> list[slice]:
    """The batch rows each thread simulates: two halves, or all rows on this thread."""
    if (
        device.type != "cpu"
        or torch.get_num_threads() < 2
        or n_samples * n_units < _SPLIT_ELEMENTS
    ):
        return [slice(0, n_samples)]
    unit = _SPLIT_ALIGN // math.gcd(_SPLIT_ALIGN, n_units)  # rows per aligned block
    mid = round(n_samples / (2 * unit)) * unit
    if not 0 < mid < n_samples:
        return [slice(0, n_samples)]
    return [slice(0, mid), slice(mid, n_samples)]


def run_parts(fn: Callable[[int, slice], None], parts: list[slice], n_elements: int) -> None:
    """``fn(index, rows)`` for every part: the first on the helper thread, the rest here."""
    inference = torch.is_inference_mode_enabled()

    def run(index: int) -> None:
        # Grad and inference modes are per thread; the buffers were made in the caller's.
        with torch.inference_mode(inference), torch.no_grad(), loop_threads(n_elements):
            fn(index, parts[index])

    pending = background(run, 0) if len(parts) > 1 else None
    try:
        for index in range(1 if pending is not None else 0, len(parts)):
            run(index)
    finally:
        if pending is not None:
            pending.result()
