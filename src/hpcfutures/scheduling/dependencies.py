"""Futures as arguments: find them, wait for them by callback, substitute their results.

Waiting is event-driven: each upstream future gets a done-callback; the last one to finish
releases the task. No thread sleeps, nothing polls, and a waiting task holds no worker.
"""

from __future__ import annotations

import copy
import threading
import weakref
from concurrent.futures import Future

from hpcfutures import nested

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Any, Callable

def find_futures(obj: Any, found: list | None = None) -> list:
    """Every Future in ``obj``: itself, or inside lists, tuples and dict values, at any depth.

    Args:
        obj: a call's argument (or the tuple of all of them).
        found: a list to append to (``None``: a new one).

    Returns:
        The futures found, in the order of a depth-first walk.
    """
    return nested.find(obj, Future, found)


def substitute(obj: Any) -> Any:
    """A copy of ``obj`` with each (done) Future replaced by its result."""
    return nested.replace(obj, Future, Future.result)


def when_all_done(futures: list, on_ready: Callable[[], None], on_failed: Callable[[Future], None]) -> None:
    """Call ``on_ready()`` once every future succeeded, or ``on_failed(first_bad)`` once
    one of them failed or was cancelled — whichever comes first, exactly once.

    Args:
        futures: the futures to wait for (done-callbacks, no thread, no polling).
        on_ready: called with no argument once all succeeded.
        on_failed: called with the first future that failed or was cancelled.
    """
    pending = {id(f) for f in futures}
    lock = threading.Lock()
    finished = [False]

    def done(fut: Future) -> None:
        with lock:
            if finished[0]:
                return
            bad = fut.cancelled() or fut.exception() is not None
            pending.discard(id(fut))
            if bad or not pending:
                finished[0] = True
            else:
                return
        if bad:
            on_failed(fut)
        else:
            on_ready()

    for fut in futures:
        fut.add_done_callback(done)


# which call raised the exception a future holds, for the message of its dependants; weak,
# so finished futures are not kept alive, and filled only on failure (no cost per success)
_FAILED_CALLS: "weakref.WeakKeyDictionary[Future, str]" = weakref.WeakKeyDictionary()


def remember_failure(future: Future, call: str) -> None:
    """Record that ``future`` failed in the call named ``call``, so the note on a
    downstream call's error names where the failure began.

    Args:
        future: the failed future.
        call: a readable name of its call (``fn(...)``).
    """
    _FAILED_CALLS[future] = call


def propagate(upstream: Future, downstream: Future, name: str | None = None) -> None:
    """Give ``downstream`` (the call ``name``) the fate of a failed or cancelled ``upstream``.

    A failure arrives as a copy of the original exception — same type and message, so
    ``except ValueError`` still works — whose ``__cause__`` is the original (traceback and
    all) and whose note names the upstream call that raised it and the call that did not
    run. However long the chain, the cause is the original, not a chain of copies.

    Args:
        upstream: a done future that failed or was cancelled.
        downstream: the future of the call that consumed it; cancelled or failed here.
        name: the downstream call's readable name, for the note.
    """
    from hpcfutures.scheduling.futures import claim

    if upstream.cancelled():
        if downstream.cancel():
            claim(downstream)  # a plain Future's waiters are told only by this
        elif claim(downstream):
            from concurrent.futures import CancelledError

            downstream.set_exception(CancelledError("an upstream future was cancelled"))
        return
    if claim(downstream):  # a downstream cancelled meanwhile is left as it is
        downstream.set_exception(upstream_error(upstream, name))


def upstream_error(upstream: Future, name: str | None) -> BaseException:
    """The exception a downstream call fails with (see ``propagate``).

    Args:
        upstream: a done, failed future.
        name: the downstream call's readable name, for the note; ``None``: unnamed.

    Returns:
        A copy of the original exception whose ``__cause__`` is the original.
    """
    exc = upstream.exception()
    root = getattr(exc, "_hpcfutures_root", None) or exc
    origin = getattr(exc, "_hpcfutures_origin", None) or _FAILED_CALLS.get(upstream)
    try:
        error = copy.copy(root)
        error.__cause__ = root
        error.__context__ = None
        error.__traceback__ = None
        error._hpcfutures_root = root
        error._hpcfutures_origin = origin
        upstream_text = f"the upstream call {origin}()" if origin else "an upstream future"
        error.__notes__ = [f"hpcfutures: {upstream_text} raised this, so {name or 'this call'}() did not run"]
    except Exception:  # an exception class that cannot be copied: pass the original on
        return exc
    return error
