"""The task graph: chains, diamonds, failures in the middle, cancellation, retries."""

import concurrent.futures
import os
from concurrent.futures import CancelledError, Future

import pytest

import funcs
from hpcfutures import SingleNodeExecutor, WorkerCrashedError

MODES = [pytest.param(False, id="fresh"), pytest.param(True, id="warm")]


def test_chain_of_1000_dependent_calls():
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        fut = exe.submit(funcs.add, 0, 1)
        for _ in range(999):
            fut = exe.submit(funcs.add, fut, 1)
        assert fut.result(timeout=120) == 1000


@pytest.mark.parametrize("block", MODES)
def test_diamond(block):
    with SingleNodeExecutor(max_workers=2, block_allocation=block) as exe:
        top = exe.submit(funcs.add, 1, 1)
        left = exe.submit(funcs.add, top, 10)
        right = exe.submit(funcs.add, top, 100)
        bottom = exe.submit(funcs.add, left, b=right)
        assert bottom.result(timeout=60) == 12 + 102


def test_failure_in_the_middle_of_a_chain(tmp_path):
    ran = tmp_path / "ran"
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        chain = [exe.submit(funcs.mark_and_add, str(ran), 0, 1)]
        for _ in range(9):
            chain.append(exe.submit(funcs.raise_at, chain[-1], 5))
        after = exe.submit(funcs.mark_and_add, str(ran), chain[-1], 1)
        assert [f.result(timeout=30) for f in chain[:5]] == [1, 2, 3, 4, 5]
        root = chain[5].exception(timeout=30)
        assert isinstance(root, ValueError) and "bad value 5" in str(root)
        for fut in chain[6:] + [after]:
            exc = fut.exception(timeout=30)
            # same type and message, so `except ValueError` works; the cause is the
            # original failure and the note names the call that raised it
            assert type(exc) is ValueError and str(exc) == str(root)
            assert exc.__cause__ is root
            assert any("raise_at() raised this" in note for note in exc.__notes__)
        assert after.exception().__notes__[-1].endswith("mark_and_add() did not run")
        # the downstream functions never ran: only the first call wrote its mark
        assert ran.read_text() == "0\n"
        # and the executor carries on
        assert exe.submit(funcs.add, 1, 2).result(timeout=30) == 3


def test_upstream_from_elsewhere_failure_is_named_as_such():
    with SingleNodeExecutor(max_workers=1) as exe:
        foreign = Future()
        down = exe.submit(funcs.add, foreign, 1)
        foreign.set_exception(KeyError("k"))
        exc = down.exception(timeout=30)
        assert isinstance(exc, KeyError)
        assert "an upstream future raised this" in exc.__notes__[0]


def test_cancelled_queued_upstream_cancels_downstream():
    with SingleNodeExecutor(max_workers=1) as exe:
        blocker = exe.submit(funcs.sleep_then, 1.0, "first")
        queued = exe.submit(funcs.add, 1, 1)
        down = exe.submit(funcs.add, queued, 1)
        assert queued.cancel()
        assert down.cancelled()
        assert blocker.result(timeout=30) == "first"


@pytest.mark.parametrize("block", MODES)
def test_wait_wakes_up_for_futures_cancelled_by_shutdown(block):
    exe = SingleNodeExecutor(max_workers=1, block_allocation=block)
    exe.submit(funcs.sleep_then, 60)
    queued = exe.submit(funcs.add, 1, 1)
    waiting = exe.submit(funcs.add, Future(), 1)  # its upstream never finishes
    exe.shutdown(wait=True, cancel_futures=True)
    done, not_done = concurrent.futures.wait([queued, waiting], timeout=10)
    assert not not_done
    assert queued.cancelled() and waiting.cancelled()


@pytest.mark.parametrize("block", MODES)
def test_retries_after_the_worker_is_killed(tmp_path, block):
    counter = str(tmp_path / "count")
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        fut = exe.submit(funcs.die_until_attempt, counter, 3, "ok", resource_dict={"retries": 2})
        assert fut.result(timeout=60) == "ok"
        assert open(counter).read() == "xxx"
        # the pool is still there (a retry's restart does not count against restart_limit=0)
        assert exe.submit(funcs.add, 1, 1).result(timeout=30) == 2


@pytest.mark.parametrize("block", MODES)
def test_retries_exhausted_say_how_many_attempts(tmp_path, block):
    counter = str(tmp_path / "count")
    with SingleNodeExecutor(max_workers=1, block_allocation=block, restart_limit=5) as exe:
        fut = exe.submit(funcs.die_until_attempt, counter, 10, "ok", resource_dict={"retries": 1})
        with pytest.raises(WorkerCrashedError) as info:
            fut.result(timeout=60)
        assert "failed 2 times" in info.value.__notes__[-1]
        assert open(counter).read() == "xx"


def test_no_retry_by_default(tmp_path):
    counter = str(tmp_path / "count")
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(WorkerCrashedError):
            exe.submit(funcs.die_until_attempt, counter, 2, "ok").result(timeout=60)
    assert open(counter).read() == "x"


@pytest.mark.parametrize("block", MODES)
def test_retry_after_time_limit(tmp_path, block):
    counter = str(tmp_path / "count")
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        fut = exe.submit(
            funcs.hang_until_attempt, counter, 2, "second", resource_dict={"retries": 1, "run_time_max": 1}
        )
        assert fut.result(timeout=60) == "second"


@pytest.mark.parametrize("block", MODES)
def test_retry_on_named_exceptions_only(tmp_path, block):
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        counter = str(tmp_path / "a")
        ok = exe.submit(funcs.raise_until_attempt, counter, 3, 7, resource_dict={"retries": 2, "retry_on": ValueError})
        assert ok.result(timeout=60) == 7
        counter = str(tmp_path / "b")
        bad = exe.submit(funcs.raise_until_attempt, counter, 3, 7, resource_dict={"retries": 1, "retry_on": (ValueError,)})
        with pytest.raises(ValueError, match="attempt 2 failed") as info:
            bad.result(timeout=60)
        assert "failed 2 times" in info.value.__notes__[-1]
        counter = str(tmp_path / "c")  # not named: no retry
        other = exe.submit(funcs.raise_until_attempt, counter, 3, 7, resource_dict={"retries": 2, "retry_on": KeyError})
        with pytest.raises(ValueError, match="attempt 1 failed"):
            other.result(timeout=60)


def test_retry_on_must_name_exception_classes():
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(TypeError, match="retry_on"):
            exe.submit(funcs.add, 1, resource_dict={"retry_on": "ValueError"})
        with pytest.raises(ValueError, match="retries"):
            exe.submit(funcs.add, 1, resource_dict={"retries": -1})
