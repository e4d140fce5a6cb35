"""``map`` in chunks: how many items go into one message, how they are sent, and how the
results come back in order.

A warm worker answers a message in ~0.1 ms, but a ``map`` over thousands of tiny items
(emcee's walkers, pipefunc's grid, any library given ``pool=exe``) spent that per item.
Items are therefore grouped into chunks, each one message and one future:

* the policy for warm pools is ``multiprocessing.Pool``'s: about four chunks per worker,
  ``ceil(len(items) / (4 * workers))`` items each, so a slow chunk still leaves work to
  balance; a pool of 2 workers sends a 32-item map as 8 messages of 4;
* unless an earlier ``map`` of the same function on this executor showed its items to be
  cheap (``ItemCosts``): then chunks hold ``CHUNK_SECONDS`` (1 ms) of work, at most one
  chunk per worker — emcee's maps of 16 cheap walkers go as 2 messages, not 8;
* executors that start a fresh process (or a SLURM job) per call keep one item per call:
  that isolation is what the mode promises;
* ``chunksize=1`` (or any number) overrides the policy;
* a chunk of plain items (numbers, strings, bytes, numpy arrays: ``ItemList.plain``; a
  ``range``'s chunks are ranges) whose function is pickled already goes through the
  executor's cheaper ``submit_plain``: no futures can hide in it, so ``submit()``'s walk
  and checks are skipped and the whole call is one C-level ``pickle.dumps``;
* chunks of many items are handed to the worker threads one by one as they are made, so
  the workers compute while the next ones are pickled.

Results are yielded in input order, each chunk's list flattened in C. An item that fails
stops its chunk: the results of the items before it are yielded first, then its exception
is raised — the same place it would surface with one message per item. The items after it
in the same chunk do not run (as with ``multiprocessing.Pool``'s chunks); once the exception
reaches the caller, calls and chunks not started yet are cancelled, as ``concurrent.futures``
does.
"""

from __future__ import annotations

import itertools
import pickle
import sys
import time
import weakref
from concurrent.futures import Future

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Callable, Iterator

PARTIAL_ATTR = "_hpcfutures_done"
"""Attribute a failing chunk puts on its item's exception: the results before it (set in
``worker.pool_calls.run_chunk``, removed here before the exception reaches the user)."""

_WALKED = (Future, list, tuple, dict)  # argument types whose insides may hold futures
_OVERLAP_ITEMS = 256  # chunks of at least this many items are sent while the next is made


def check_chunksize(chunksize) -> None:
    """Refuse a ``chunksize`` that is not None or an int >= 1 (as ``ProcessPoolExecutor``
    refuses one below 1). executorlib ignored ``chunksize`` altogether; hpcfutures uses it,
    so a value it cannot use is an error rather than silently something else
    (docs/migrating.md).

    Args:
        chunksize: the value given to ``map``/``starmap``/``imap``.

    Raises:
        ValueError: 0, a negative, a float (even ``2.0``), a str, a bool, ...; the message
            says what is accepted.
    """
    if chunksize is not None and (not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1):
        raise ValueError(
            f"chunksize must be None (automatic) or an int >= 1, got {chunksize!r}; "
            "executorlib ignored chunksize, hpcfutures sends that many items per message: "
            "pass an int such as 1, or leave it out"
        )


def auto_chunksize(n_items: int, workers: int, seconds_per_item: float | None = None) -> int:
    """Items per message for a warm pool: about four chunks per worker, or fewer, bigger
    ones when earlier maps of the function showed its items to be cheap.

    Args:
        n_items: items in the map.
        workers: warm workers of the pool (1 or more).
        seconds_per_item: what one item cost in an earlier map of the same function on
            this executor (``ItemCosts``), an upper bound; None: not known.

    Returns:
        ``ceil(n_items / (4 * workers))`` (``multiprocessing.Pool``'s choice), at least 1;
        with ``seconds_per_item`` known, as many items as make ``CHUNK_SECONDS`` of work if
        that is more, but never more than ``ceil(n_items / workers)`` (one chunk per worker),
        evened out so that every worker gets as many chunks of about the same size.
    """
    workers = max(1, workers)
    size = max(1, -(-n_items // (4 * workers)))
    if seconds_per_item is not None:
        cheap = n_items if seconds_per_item <= 0 else int(CHUNK_SECONDS / seconds_per_item) + 1
        if cheap > size and n_items > size:
            # as many chunks as that makes, rounded up to a multiple of the workers, of equal
            # size: 20,000 items in chunks of ~5,900 on 2 workers are 4 of 5,000, not 11,800
            # items on one worker and 8,200 on the other
            chunks = -(-n_items // min(cheap, -(-n_items // workers)))
            chunks = -(-chunks // workers) * workers
            size = max(size, -(-n_items // chunks))
    return size


CHUNK_SECONDS = 0.001
"""Seconds of work below which a chunk costs more in messages than it gains in balance: a
message to a warm worker and its reply cost ~0.1 ms of the driver's and the worker's time."""


class ItemCosts:
    """What an item of each mapped function costs, per executor, as complete ``map`` calls
    showed it: ``auto_chunksize`` sends cheap items in fewer, bigger chunks (emcee's 16
    walkers per map on 2 workers: 8 messages a map under ``multiprocessing.Pool``'s policy,
    2 once the first map showed them to be cheap; issue 15).

    A map of ``n`` items on ``w`` workers that took ``t`` seconds from ``map()`` to its last
    result shows that an item costs at most ``t * w / n`` (the wall time also holds the
    messages and the caller's own work between results). Each map's bound replaces the
    known one when it is tighter; when it is looser, only if the map took longer than the
    known cost explains (twice the expected time plus ``SLACK`` seconds): then the items
    really got dearer. A looser bound from a short map (a 10-item warm-up whose 0.3 ms are
    all messages) is ignored: any map whose chunks were sized by a cost too low by that
    little ends within about ``SLACK`` anyway. Chunks are never bigger than one per worker.
    A bigger chunk changes no result; after a failing item it skips the rest of that chunk,
    as any chunk does.

    The idea is joblib's automatic batching (``batch_size="auto"``: batches sized from the
    measured duration of earlier ones), and so is its limit: when a function's items
    suddenly cost far more than its last map showed, and unevenly, that one map runs in
    one chunk per worker and a worker may idle while another works through the dear
    items (up to ``workers`` times the time Pool's smaller chunks would take); the map
    after it uses the new cost. ``chunksize=`` fixes the size where that matters.

    Costs are kept per function, and for a bound method per instance (``obj.f`` and
    ``other.f`` may work on data of different sizes). Functions and instances are held
    weakly: forgetting a cost only costs the policy's default.
    """

    SLACK = 0.002  # seconds

    def __init__(self):
        # id(function or instance) -> (weak reference to it, {function or None: seconds}):
        # found by identity, so a user's __hash__/__eq__ is never called (review G1)
        self._costs: dict[int, tuple] = {}

    @staticmethod
    def _key(fn) -> tuple:
        """(what the cost is kept under, weakly; the entry within it)."""
        try:
            owner, func = getattr(fn, "__self__", None), getattr(fn, "__func__", None)
        except Exception:  # a property of the user's that raises (review L1): the callable itself
            return fn, None
        if owner is not None and func is not None:  # a bound method is made anew at each access
            return owner, func
        return fn, None

    def get(self, fn) -> float | None:
        """The known cost of one item of ``fn``.

        Args:
            fn: the mapped function as the user gave it.

        Returns:
            Seconds per item (an upper bound), or None when no complete map of ``fn`` was seen.
        """
        key, part = self._key(fn)
        found = self._costs.get(id(key))
        if found is None or found[0]() is not key:
            return None
        return found[1].get(part)

    def record(self, fn, seconds: float, n_items: int, workers: int) -> None:
        """Learn from a complete map of ``fn`` (silently not, if it cannot be referred to
        weakly).

        Args:
            fn: the mapped function as the user gave it.
            seconds: wall time from ``map()`` to its last result.
            n_items: items of the map (1 or more).
            workers: warm workers the map ran on.
        """
        bound = seconds * workers / n_items
        known = self.get(fn)
        if known is not None and bound > known and seconds <= 2 * known * n_items / workers + self.SLACK:
            return  # no sign the items got dearer: the tighter bound stays
        key, part = self._key(fn)
        found = self._costs.get(id(key))
        if found is None or found[0]() is not key:
            costs = self._costs
            ident = id(key)

            def forget(ref, ident=ident) -> None:  # runs as the object goes, before its id is reused
                if costs.get(ident, (None,))[0] is ref:
                    del costs[ident]

            try:
                found = self._costs[ident] = (weakref.ref(key, forget), {})
            except TypeError:  # not weakly referable (a builtin, an object with __slots__)
                return
        found[1][part] = bound


class ItemList:
    """A chunk's items as the driver holds them: opaque to the walk that looks for futures
    among arguments (the items were checked once, in one C-level pass over their types),
    and a plain ``list`` once unpickled in the worker.

    ``plain=True`` (every item's arguments are numbers, strings, bytes or numpy arrays
    without Python objects inside) pickles the items with the standard pickler in one C
    call: cloudpickle, which the call around them needs, costs a Python-level hook per
    object, ~0.5 us per item.

    Args:
        items: the chunk's items, each the argument tuple of one call of the mapped function.
        plain: every item's arguments pickle the same with the standard pickler (checked
            by the caller); ``False``: cloudpickle pickles them with the call.
    """

    __slots__ = ("items", "plain")

    def __init__(self, items: list, plain: bool = False):
        self.items = items
        self.plain = plain

    def __reduce__(self):
        if self.plain:
            return (pickle.loads, (pickle.dumps(self.items, protocol=pickle.HIGHEST_PROTOCOL),))
        return (list, (self.items,))

    def __len__(self) -> int:
        return len(self.items)


_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _plain_types(types: set, args: list) -> bool:
    """Whether arguments of these types pickle the same with the standard pickler as with
    cloudpickle: nothing in them refers to a function or class by name."""
    rest = types - _PLAIN
    if not rest:
        return True
    numpy = sys.modules.get("numpy")
    if numpy is None or rest != {numpy.ndarray}:
        return False
    # an object array may hold instances of a class defined in __main__
    return not any(a.dtype.hasobject for a in args if type(a) is numpy.ndarray)


def _argument_types(args: list) -> set:
    """The types of all arguments, in one C-level pass (``map(type, ...)``): a map of
    100,000 numbers costs ~5 ms here instead of a Python-level walk of every item."""
    return set(map(type, args))


def _may_hold_futures(types: set) -> bool:
    """Whether an argument of one of these types is a Future or may hold one."""
    return any(issubclass(t, _WALKED) for t in types)


def submit_chunks(
    submit: Callable, run_chunk: Callable, fn, items: list, size: int, star: bool = True, submit_plain: Callable | None = None
) -> tuple[list, list]:
    """Submit ``run_chunk(fn, chunk, star)`` per chunk of ``size`` items.

    Args:
        submit: the executor's ``submit``.
        submit_plain: ``submit_plain(run_chunk, fn, chunk, star)``, the executor's cheaper
            submit for a chunk whose items are all plain (see ``ItemList``): the whole call
            pickles with the standard pickler and skips the walk for futures; ``None``:
            every chunk goes through ``submit``.
        run_chunk: the worker-side adapter that calls ``fn`` on each item of a chunk.
        fn: the function.
        items: one tuple of positional arguments per item (``star``), or one argument each.
        size: items per chunk (1 or more).
        star: whether each item is a tuple of arguments (``fn(*item)``) or one (``fn(item)``);
            a map over one iterable sends the values themselves: no tuple per item to
            pickle, unpickle and unpack.

    Returns:
        The futures (one per chunk) and the number of items each stands for.
    """
    futures, sizes = [], []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]  # of a range: a range, sent as its three numbers
        opaque, plain = _chunk_kind(chunk, star)
        if plain and submit_plain is not None:
            futures.append(submit_plain(run_chunk, fn, chunk, star))
        else:
            futures.append(submit(run_chunk, fn, ItemList(chunk, plain) if opaque else chunk, star))
        sizes.append(len(chunk))
        if size >= _OVERLAP_ITEMS:
            # let a worker thread send this chunk now (it waits for the GIL this thread
            # holds for up to the 5 ms switch interval otherwise): the workers compute while
            # the next chunks are pickled, as multiprocessing.Pool's task thread lets them.
            # Not for small chunks: all of them are submitted in less than a hand-off costs
            time.sleep(0)
    return futures, sizes



def _chunk_kind(chunk, star: bool) -> tuple[bool, bool]:
    """(opaque, plain) of one chunk: no argument is or may hold a future (``submit()``'s
    walk can be skipped); every argument pickles the same with the standard pickler
    (``ItemList.plain``). A chunk of a ``range`` is both without looking at its numbers."""
    if type(chunk) is range:
        return True, True
    args = list(itertools.chain.from_iterable(chunk)) if star else chunk
    types = _argument_types(args)
    opaque = not _may_hold_futures(types)  # futures among the items: let submit() find them
    return opaque, opaque and _plain_types(types, args)


def take_partial(exc: BaseException) -> list:
    """The results a failing chunk computed before its failing item (removed from ``exc``);
    ``[]`` when there are none or they could not travel back."""
    done = getattr(exc, "__dict__", {}).pop(PARTIAL_ATTR, None)
    return done if isinstance(done, list) else []


def ordered_results(
    futures: list, end_time: float | None, chunked: bool, bar_closed=None, on_complete: Callable | None = None
) -> Iterator:
    """The results in order (chunks flattened); leaving early cancels the rest.

    A chunk's results are handed on as its list, flattened by ``itertools.chain`` in C
    (``MapResults``): a generator resumed once per item cost ~0.4 ms per 20,000 items
    (issue 15).

    Args:
        futures: one per item, or one per chunk when ``chunked``.
        end_time: ``time.monotonic()`` deadline for the results (``None``: none).
        chunked: each future's result is a list of item results.
        bar_closed: the progress bar's event, waited for before the last result.
        on_complete: called (no arguments) once every future gave its result.

    Raises:
        TimeoutError: a result is not there by ``end_time``.
        BaseException: an item's own exception, where its result would have been.
    """
    if chunked:
        current: list = [None]  # the iterator over the chunk being handed out
        return MapResults.over(_in_order(futures, end_time, current, bar_closed, on_complete), current)
    return _in_order(futures, end_time, None, bar_closed, on_complete)


class MapResults(itertools.chain):
    """The iterator ``map`` returns for chunks: an ``itertools.chain`` over the chunks' result
    lists (each item handed on in C), with the generator's ``close()`` that
    ``concurrent.futures``' map result offers (it cancels the calls not started)."""

    __slots__ = ("_chunks", "_current")

    @classmethod
    def over(cls, chunks: Iterator, current: list) -> MapResults:
        """The items of ``chunks`` one by one.

        Args:
            chunks: the generator of an iterator over each chunk's results.
            current: ``[the iterator it handed out last]``, kept up to date by ``chunks``.

        Returns:
            The iterator.
        """
        results = cls.from_iterable(chunks)
        results._chunks, results._current = chunks, current
        return results

    def close(self) -> None:
        """Stop here, as ``generator.close()``: nothing more comes out, and the calls not
        started yet are cancelled."""
        self._chunks.close()
        rest = self._current[0]
        if rest is not None and hasattr(rest, "__setstate__"):  # the rest of this chunk, too (review G4)
            rest.__setstate__(sys.maxsize)  # a list iterator's position, clamped to its end


def _in_order(futures: list, end_time: float | None, current: list | None, bar_closed, on_complete) -> Iterator:
    """``ordered_results``' generator: each result in order, or with ``current`` (chunks) an
    iterator over each chunk's results, also kept in ``current[0]``; a failing chunk's
    results before its failing item come first, then its exception."""
    futures.reverse()  # pop() from the end is O(1)
    try:
        while futures:
            future = futures.pop()
            left = None if end_time is None else end_time - time.monotonic()
            try:
                result = future.result(left)
            except BaseException as exc:
                future.cancel()  # the one that ran out of time, too (as concurrent.futures' map)
                if current is not None:  # the items before the failing one were computed: yield them first
                    current[0] = iter(take_partial(exc))
                    yield current[0]
                raise
            finally:
                del future  # no reference to a result after it is yielded
            if not futures:
                if on_complete is not None:
                    on_complete()
                if bar_closed is not None:
                    # result() returns before the future's done-callbacks ran: let the bar
                    # close first, so what the caller prints next does not land inside it
                    bar_closed.wait(None if end_time is None else max(0.0, end_time - time.monotonic()))
            if current is not None:
                current[0] = result = iter(result)
            yield result
    finally:
        for future in futures:
            future.cancel()
