"""The futures hpcfutures hands out, and the one safe way to claim one before setting it.

``concurrent.futures.Future.cancel()`` marks a pending future CANCELLED but does not tell
the waiters that ``concurrent.futures.wait()`` and ``as_completed()`` install: only
``set_running_or_notify_cancel()`` does, and an executor calls that when the task reaches
the head of its queue — so a cancelled future would look done to ``done()`` and pending to
``wait()`` until the task ahead of it ended. ``TaskFuture.cancel()`` notifies at once, for
every future this package creates (submitted calls, derived futures), so ``done()``,
``wait()`` and ``as_completed()`` agree the moment ``cancel()`` returns ``True``. Every
other way a future ends (``set_result``, ``set_exception``) notifies waiters itself.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, PENDING


class TaskFuture(Future):
    """A ``concurrent.futures.Future`` whose successful ``cancel()`` wakes
    ``concurrent.futures.wait()`` and ``as_completed()`` at once."""

    # the task overview's mark (executors.overview._MARK) in a slot: a future then never
    # needs an instance dict (~100 bytes per pending task, issue 15)
    __slots__ = ("_hpcfutures_task",)

    def cancel(self) -> bool:
        """As ``Future.cancel``; a future cancelled here is also reported to waiters now.

        Returns:
            True when the future is cancelled (it had not started), False otherwise.
        """
        if not super().cancel():
            return False
        claim(self)  # CANCELLED -> CANCELLED_AND_NOTIFIED: the waiters learn it now
        return True


def claim(future: Future) -> bool:
    """Move a pending ``future`` to RUNNING so the caller may set its outcome.

    Returns:
        True when the caller now owns the outcome; False when the future was cancelled
        (its waiters are told, if they were not yet), already running elsewhere, or done.
    """
    # Asked under the future's own (re-entrant) lock: set_running_or_notify_cancel() on a
    # future that is running, finished or already notified logs a CRITICAL "unexpected
    # state" record through the concurrent.futures logger (shown on stderr by logging's
    # last-resort handler) before it raises, and a cancelled future reaches this twice:
    # once from cancel(), once when its task leaves the queue.
    with future._condition:
        if future._state not in (PENDING, CANCELLED):
            return False
        return future.set_running_or_notify_cancel()
