"""Futures made from other futures: an item of a result, a result split in parts, results
in batches. Each resolves by done-callback the moment its sources allow (no thread, no
polling), and each takes a source's exception or cancellation, so none waits forever."""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import CancelledError, Future

from hpcfutures.scheduling.dependencies import propagate
from hpcfutures.scheduling.futures import TaskFuture, claim

# derived future -> (source future, key or index): lets the dependency graph draw an edge
# from the call that made the source, labelled with the part taken
DERIVED: "weakref.WeakKeyDictionary[Future, tuple]" = weakref.WeakKeyDictionary()


def _follow(source: Future, target: Future, transform) -> None:
    def done(fut: Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            propagate(fut, target)
            return
        if not claim(target):
            return
        try:
            target.set_result(transform(fut.result()))
        except BaseException as err:  # a missing key, a result too short to split
            target.set_exception(err)

    source.add_done_callback(done)


def get_item_from_future(future: Future, key) -> Future:
    """A future for ``future.result()[key]``, ended the moment ``future`` ends (no thread,
    no polling); passed to ``submit()`` it is a dependency like any future, and the
    dependency graph draws it as an edge labelled ``key``. The name and behaviour are
    executorlib's ``get_item_from_future``.

    Args:
        future: the source (a ``concurrent.futures.Future`` of a dict, list, tuple, ...).
        key: the key or index taken from its result.

    Returns:
        A ``concurrent.futures.Future``: the item, or the source's exception (cancelled when
        the source was), or the ``KeyError``/``IndexError`` of a missing item.
    """
    target: Future = TaskFuture()
    DERIVED[target] = (future, key)
    _follow(future, target, lambda value: value[key])
    return target


def split_future(future: Future, n: int) -> list:
    """Split a future whose result is a sequence of length ``n`` into ``n`` futures.

    Args:
        future: the source; its result must be a tuple or list of exactly ``n`` items.
        n: the number of parts (an int >= 1).

    Returns:
        A list of ``n`` futures, the i-th for ``future.result()[i]``; each takes the
        source's exception or cancellation, and a result of another length fails every
        part with ``ValueError``.

    Raises:
        ValueError: ``n`` is not an int >= 1.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")

    def item(i):
        def pick(value):
            if len(value) != n:
                raise ValueError(f"split_future(..., n={n}) got a result of length {len(value)}")
            return value[i]

        return pick

    parts = []
    for i in range(n):
        target: Future = TaskFuture()
        DERIVED[target] = (future, i)
        _follow(future, target, item(i))
        parts.append(target)
    return parts


def batched(futures, n: int) -> list:
    """Group results in batches of ``n`` in completion order (executorlib's ``batched``).

    Args:
        futures: an iterable of futures.
        n: the batch size (an int >= 1).

    Returns:
        ``ceil(len(futures) / n)`` futures, each resolving to a list of ``n`` results (the
        last may be shorter); a batch whose members include a failed or cancelled future
        gets that exception.

    Raises:
        ValueError: ``n`` is not an int >= 1.
    """
    futures = list(futures)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    sizes = [min(n, len(futures) - start) for start in range(0, len(futures), n)]
    batches = [TaskFuture() for _ in sizes]
    lock = threading.Lock()
    state = {"batch": 0, "members": []}

    def done(fut: Future) -> None:
        with lock:
            index = state["batch"]
            members = state["members"]
            members.append(fut)
            if len(members) < sizes[index]:
                return
            state["batch"], state["members"] = index + 1, []
        target = batches[index]
        if not claim(target):
            return
        for member in members:
            if member.cancelled():
                target.set_exception(CancelledError("a future of this batch was cancelled"))
                return
            if member.exception() is not None:
                target.set_exception(member.exception())
                return
        target.set_result([member.result() for member in members])

    for fut in futures:
        fut.add_done_callback(done)
    return batches
