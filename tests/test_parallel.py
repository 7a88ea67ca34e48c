"""sksnn's threads (:mod:`sksnn._parallel`): torch's OpenMP threads where it can use them, a
pool of Python threads elsewhere; the same results either way."""

import multiprocessing
import threading

import pytest
import torch

from sksnn import _parallel
from sksnn._parallel import map_threads


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=[True, False], ids=["openmp", "pool"])
def openmp(request, two_threads, monkeypatch):
    """Whether tasks run on torch's OpenMP threads (skipped where that runtime is not
    usable) or on the pool (the runtime hidden)."""
    if request.param and _parallel._openmp_runtime() is None:
        pytest.skip("torch's OpenMP runtime is not usable here")
    if not request.param:
        monkeypatch.setattr(_parallel, "_openmp_runtime", lambda: None)
    return request.param


def _where(k: int) -> tuple[int, int]:
    return k, threading.get_ident()


def test_tasks_run_on_two_threads_in_order(openmp):
    out = map_threads(_where, 7)
    assert [k for k, _ in out] == list(range(7))
    if openmp:  # the calling thread is the team's first; task k runs on thread k mod 2
        assert {ident for k, ident in out if k % 2 == 0} == {threading.get_ident()}
        others = {ident for k, ident in out if k % 2 == 1}
        assert len(others) == 1 and threading.get_ident() not in others
    else:  # the pool's threads take the tasks in turn, whichever is free
        assert threading.get_ident() not in {ident for _, ident in out}


def test_the_first_exception_is_raised_after_all_tasks(openmp):
    done = []

    def task(k):
        if k == 1:
            raise ZeroDivisionError("task 1")
        done.append(k)
        return k

    with pytest.raises(ZeroDivisionError, match="task 1"):
        map_threads(task, 2)
    assert done == [0]


def test_a_smaller_team_still_runs_every_task(two_threads):
    """Inside another OpenMP parallel region the runtime gives a team of one thread (nested
    parallelism is off by default): that thread runs all the tasks."""
    runtime = _parallel._openmp_runtime()
    if runtime is None:
        pytest.skip("torch's OpenMP runtime is not usable here")
    inner = []

    def outer(_data):
        if runtime.omp_get_thread_num() == 0:
            inner.append(map_threads(_where, 5))

    task = _parallel._TASK(outer)
    runtime.GOMP_parallel(task, None, 2, 0)
    assert [k for k, _ in inner[0]] == list(range(5))
    assert len({ident for _, ident in inner[0]}) == 1


def test_one_thread_runs_the_tasks_in_the_calling_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = map_threads(_where, 3)
    finally:
        torch.set_num_threads(previous)
    assert out == [(k, threading.get_ident()) for k in range(3)]


def _in_child(queue) -> None:
    torch.set_num_threads(2)
    queue.put(sorted(k for k, _ in map_threads(_where, 4)))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform"
)
def test_a_forked_child_runs_its_tasks(two_threads):
    """A child forked after torch's OpenMP threads ran tasks does not have those threads:
    it runs its tasks on a pool (an OpenMP region there could wait for them forever)."""
    map_threads(_where, 2)
    torch.ones(1 << 20).sum()  # an OpenMP region of torch's own
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [0, 1, 2, 3]
