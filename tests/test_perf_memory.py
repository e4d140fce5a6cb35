"""Memory per pending task (issue 15): a queued call keeps one small pickle, not also its
arguments; what needs the arguments (an error log, a large call) still has them."""

import gc
import os
import weakref

import pytest

import funcs
from hpcfutures import SingleNodeExecutor
from hpcfutures.scheduling.task import SMALL_CALL


def _blocked_pool(tmp_path, exe):
    """Both workers held by a gate the test opens; returns (gate path, blocker futures)."""
    gate = str(tmp_path / "gate")
    return gate, [exe.submit(funcs.wait_for_file, gate, True, 60.0) for _ in range(exe.max_workers)]


@pytest.mark.timeout(60)
def test_a_queued_small_call_drops_its_arguments_and_still_runs(tmp_path):
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        gate, blockers = _blocked_pool(tmp_path, exe)
        tokens = [funcs.Token(i) for i in range(20)]
        watched = [weakref.ref(t) for t in tokens]
        futures = [exe.submit(funcs.token_value, t) for t in tokens]
        keyword = funcs.Token(5)
        watched.append(weakref.ref(keyword))
        kw = exe.submit(funcs.token_value, token=keyword)  # keyword arguments go too
        del tokens, keyword
        gc.collect()
        try:
            assert not any(f.done() for f in futures)  # still queued behind the gate
            assert all(w() is None for w in watched)  # nothing in the driver holds them any more
        finally:
            open(gate, "w").close()
        assert all(b.result(timeout=30) for b in blockers)
        assert [f.result(timeout=30) for f in futures] == list(range(20))
        assert kw.result(timeout=30) == 5


@pytest.mark.timeout(60)
def test_a_large_call_keeps_its_arguments_not_its_pickle_once_sent(tmp_path):
    """Above SMALL_CALL the arguments stay (the user holds them anyway) and the pickle goes
    once the worker has it: a large argument's pickle is not kept while it runs."""
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        gate, blockers = _blocked_pool(tmp_path, exe)
        data = b"x" * (2 * SMALL_CALL)
        future = exe.submit(len, data)
        open(gate, "w").close()
        assert future.result(timeout=30) == len(data)
        assert all(b.result(timeout=30) for b in blockers)


@pytest.mark.timeout(60)
def test_error_log_still_names_the_arguments_of_a_queued_call(tmp_path):
    log = tmp_path / "errors.log"
    with SingleNodeExecutor(max_workers=1, block_allocation=True, resource_dict={"error_log_file": str(log)}) as exe:
        gate, blockers = _blocked_pool(tmp_path, exe)
        future = exe.submit(funcs.raise_at, 7, 7)
        open(gate, "w").close()
        with pytest.raises(Exception):
            future.result(timeout=30)
    text = log.read_text()
    assert "raise_at" in text and "args: (7, 7)" in text
