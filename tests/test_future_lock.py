"""``TaskFuture``'s lock (issue 15, memory per pending task): a C ``RLock`` carrying the
condition-variable methods a ``concurrent.futures.Future`` calls. Every way a future is
waited for must still work: ``result``/``exception`` with and without a timeout, many
waiters at once, ``concurrent.futures.wait``/``as_completed``, ``cancel``; misuse raises as
``threading.Condition`` does."""

import threading
import tracemalloc
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, as_completed, wait
from concurrent.futures import TimeoutError as FutureTimeout  # the builtin one from Python 3.11 on

import pytest

from hpcfutures.scheduling.futures import FutureLock, TaskFuture

pytestmark = pytest.mark.timeout(60)


def test_a_result_set_by_another_thread_wakes_every_waiter():
    future = TaskFuture()
    started = threading.Barrier(9)
    got = []

    def waiter():
        started.wait()
        got.append(future.result(timeout=30))

    threads = [threading.Thread(target=waiter) for _ in range(8)]
    for t in threads:
        t.start()
    started.wait()
    future.set_result(42)
    for t in threads:
        t.join(30)
    assert got == [42] * 8
    assert not future._condition._sleepers  # every sleeper was woken and taken off


def test_a_timeout_raises_and_leaves_no_sleeper_behind():
    future = TaskFuture()
    with pytest.raises(FutureTimeout):
        future.result(timeout=0.01)
    with pytest.raises(FutureTimeout):
        future.exception(timeout=0)
    assert future._condition._sleepers == []
    future.set_exception(ValueError("late"))
    assert isinstance(future.exception(timeout=0), ValueError)


def test_wait_and_as_completed_see_futures_ended_by_other_threads():
    futures = [TaskFuture() for _ in range(5)]
    threading.Timer(0.05, futures[3].set_result, (3,)).start()
    done, pending = wait(futures, timeout=30, return_when=FIRST_COMPLETED)
    assert done == {futures[3]} and len(pending) == 4
    for i, f in enumerate(futures):
        if i != 3:
            threading.Timer(0.01 * i, f.set_result, (i,)).start()
    assert sorted(f.result() for f in as_completed(futures, timeout=30)) == list(range(5))


def test_cancel_wakes_a_waiter_at_once():
    future = TaskFuture()
    got = []
    ready = threading.Event()

    def waiter():
        ready.set()
        try:
            future.result(timeout=30)
        except CancelledError:
            got.append("cancelled")

    t = threading.Thread(target=waiter)
    t.start()
    ready.wait(30)
    assert future.cancel()
    t.join(30)
    assert got == ["cancelled"]


def test_misuse_raises_as_threading_condition_does():
    lock = FutureLock()
    with pytest.raises(RuntimeError):
        lock.wait(0)
    with pytest.raises(RuntimeError):
        lock.notify()
    with pytest.raises(RuntimeError):
        lock.notify_all()
    with lock:  # re-entrant, as the future's own code needs
        with lock:
            assert lock.wait(0) is False


def test_a_pending_future_is_far_smaller_than_a_stdlib_one():
    tracemalloc.start()
    try:
        ours = [TaskFuture() for _ in range(2000)]
        mine = tracemalloc.get_traced_memory()[0]
        theirs = [Future() for _ in range(2000)]
        both = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(ours) == len(theirs)
    assert mine < (both - mine) / 2  # ~360 bytes against ~1,600 each
