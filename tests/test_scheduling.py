"""Pure scheduling state: resource validation, the core budget, dependency helpers."""

import threading
from concurrent.futures import Future

import pytest

from hpcfutures.scheduling.budget import CoreBudget
from hpcfutures.scheduling.dependencies import find_futures, propagate, substitute, when_all_done
from hpcfutures.scheduling.resources import merge, validate

pytestmark = pytest.mark.timeout(20)


def test_validate_accepts_known_keys_and_copies():
    d = {"cores": 2, "threads_per_core": 1, "cwd": "/tmp", "run_time_max": 1.5}
    out = validate(d, "here")
    assert out == d and out is not d


@pytest.mark.parametrize(
    "bad, exc, text",
    [
        ({"core": 2}, ValueError, "unknown resource_dict key"),
        ({"cores": "2"}, TypeError, "cores"),
        ({"cores": 0}, ValueError, "cores"),
        ({"cores": True}, TypeError, "cores"),
        ({"threads_per_core": 1.5}, TypeError, "threads_per_core"),
        ({"run_time_max": -1}, ValueError, "run_time_max"),
        ({"slurm_cmd_args": ["-x", 3]}, TypeError, "slurm_cmd_args"),
        ([("cores", 1)], TypeError, "must be a dict"),
    ],
)
def test_validate_rejects(bad, exc, text):
    with pytest.raises(exc, match=text):
        validate(bad, "submit()")


def test_merge_task_wins():
    assert merge({"cores": 1, "cwd": None}, {"cores": 2}) == {"cores": 2, "cwd": None}


def test_budget_fifo_limits():
    b = CoreBudget(max_cores=4, max_running=3)
    assert b.fits(8)  # nothing running: even an oversized task may start, alone
    b.take(2)
    assert b.fits(2) and not b.fits(3)
    b.take(2)
    assert not b.fits(1)
    b.give(2)
    assert b.fits(1)
    b.take(1)
    b.take(0)
    assert not b.fits(0)  # max_running reached
    counted_only = CoreBudget(max_cores=None, max_running=2)
    counted_only.take(64)
    assert counted_only.fits(64)
    counted_only.take(64)
    assert not counted_only.fits(1)


def test_find_and_substitute_nested():
    f1, f2 = Future(), Future()
    args = (1, [f1, {"x": (f2,)}], {"k": 3})
    assert find_futures(args) == [f1, f2]
    f1.set_result("a")
    f2.set_result("b")
    assert substitute(args) == (1, ["a", {"x": ("b",)}], {"k": 3})


def test_when_all_done_ready_once():
    futures = [Future() for _ in range(3)]
    calls = []
    when_all_done(futures, lambda: calls.append("ready"), lambda f: calls.append("failed"))
    for f in futures:
        assert calls == []
        f.set_result(1)
    assert calls == ["ready"]


def test_when_all_done_failure_first_wins():
    futures = [Future() for _ in range(3)]
    calls = []
    when_all_done(futures, lambda: calls.append("ready"), lambda f: calls.append(f))
    futures[1].set_exception(KeyError("x"))
    futures[0].set_result(1)
    futures[2].cancel()
    assert calls == [futures[1]]


def test_propagate_exception_and_cancel():
    up, down = Future(), Future()
    up.set_exception(ValueError("up"))
    propagate(up, down)
    with pytest.raises(ValueError, match="up"):
        down.result(timeout=1)
    up2, down2 = Future(), Future()
    up2.cancel()
    propagate(up2, down2)
    assert down2.cancelled()


def test_when_all_done_threadsafe():
    futures = [Future() for _ in range(200)]
    hits = []
    when_all_done(futures, lambda: hits.append(1), lambda f: hits.append(0))
    threads = [threading.Thread(target=f.set_result, args=(1,)) for f in futures]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hits == [1]
