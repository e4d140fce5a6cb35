"""Futures made from futures: get_item_from_future, split_future, batched."""

from concurrent.futures import Future

import pytest

import funcs
from hpcfutures import SingleNodeExecutor, get_item_from_future, split_future
from hpcfutures.scheduling.derived_futures import batched

pytestmark = pytest.mark.timeout(60)


def test_get_item_and_split():
    source = Future()
    item = get_item_from_future(source, "b")
    a, b = split_future(Future(), 2)  # an unrelated source stays pending
    assert not item.done() and not a.done()
    source.set_result({"a": 1, "b": 2})
    assert item.result(timeout=1) == 2
    pair = Future()
    first, second = split_future(pair, 2)
    pair.set_result((10, 20))
    assert (first.result(timeout=1), second.result(timeout=1)) == (10, 20)


def test_derived_futures_take_failures_and_cancellation():
    failing = Future()
    item = get_item_from_future(failing, 0)
    failing.set_exception(KeyError("x"))
    with pytest.raises(KeyError):
        item.result(timeout=1)
    missing = Future()
    bad_key = get_item_from_future(missing, "nope")
    missing.set_result({})
    with pytest.raises(KeyError):
        bad_key.result(timeout=1)
    cancelled = Future()
    parts = split_future(cancelled, 2)
    cancelled.cancel()
    assert all(p.cancelled() for p in parts)
    short = Future()
    parts = split_future(short, 3)
    short.set_result((1, 2))
    with pytest.raises(ValueError, match="length 2"):
        parts[0].result(timeout=1)


def test_batched_completion_order_and_failures():
    sources = [Future() for _ in range(5)]
    batches = batched(sources, 2)
    assert len(batches) == 3
    for i in (3, 0, 4, 1):
        sources[i].set_result(i)
    assert batches[0].result(timeout=1) == [3, 0]
    assert batches[1].result(timeout=1) == [4, 1]
    assert not batches[2].done()
    sources[2].set_exception(ValueError("boom"))
    with pytest.raises(ValueError):
        batches[2].result(timeout=1)  # ends, does not wait forever
    with pytest.raises(ValueError):
        batched(sources, 0)


def test_with_executor_and_as_arguments():
    with SingleNodeExecutor(max_workers=2) as exe:
        pair = exe.submit(divmod, 7, 2)
        quotient, remainder = split_future(pair, 2)
        total = exe.submit(funcs.add, quotient, remainder)
        assert total.result(timeout=30) == 4
        squares = [exe.submit(funcs.add, i, i) for i in range(4)]
        groups = exe.batched(squares, 3)
        assert sorted(sum((g.result(timeout=30) for g in groups), [])) == [0, 2, 4, 6]
        assert [len(g.result()) for g in groups] == [3, 1]
