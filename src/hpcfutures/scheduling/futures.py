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

import _thread
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, PENDING


class FutureLock(_thread.RLock):
    """The lock and condition variable of one ``TaskFuture``: what ``threading.Condition``
    is to a stdlib ``Future``, in 100 bytes instead of 1,360.

    A ``threading.Condition`` is a Python object with an instance dict, a ``deque`` of
    waiters and a bound method per lock operation: 85% of a pending ``Future``'s memory
    (issue 15: 100,000 pending tasks), and a Python-level call on each of the ~8 lock
    operations a task's future goes through. This is the C ``RLock`` itself, whose
    ``acquire``/``release``/``__enter__``/``__exit__`` stay C calls (the future's code and
    ``concurrent.futures.wait``/``as_completed`` use those), with the three condition
    methods a ``Future`` calls added: ``wait``, ``notify``, ``notify_all``. The waiter list
    is made by the first ``wait`` (most futures are never waited for while pending).
    """

    __slots__ = ("_sleepers",)

    def __init__(self):
        self._sleepers = None

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, sleep until notified or ``timeout`` seconds passed, take the
        lock back (as ``threading.Condition.wait``; the caller holds the lock).

        Returns:
            False when the timeout passed first.

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        sleeper = _thread.allocate_lock()
        sleeper.acquire()
        if self._sleepers is None:
            self._sleepers = []
        self._sleepers.append(sleeper)
        saved = self._release_save()
        woken = False
        try:
            if timeout is None:
                woken = sleeper.acquire()
            elif timeout > 0:
                woken = sleeper.acquire(True, timeout)
            else:
                woken = sleeper.acquire(False)
            return woken
        finally:
            self._acquire_restore(saved)
            if not woken:  # timed out (or interrupted): no notify may wake a sleeper that left
                try:
                    self._sleepers.remove(sleeper)
                except ValueError:  # notified between the timeout and taking the lock back
                    pass

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` threads waiting in ``wait`` (the caller holds the lock).

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        sleepers = self._sleepers
        while sleepers and n > 0:
            sleepers.pop(0).release()
            n -= 1

    def notify_all(self) -> None:
        """Wake every thread waiting in ``wait`` (the caller holds the lock).

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        if self._sleepers:
            self.notify(len(self._sleepers))
        elif not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")


# the attributes Future.__init__ sets (CPython 3.8 to 3.13); if a Python changes them,
# TaskFuture falls back to Future.__init__ and only swaps the condition variable
_FUTURE_FIELDS = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_SAME_FIELDS = set(vars(Future())) == _FUTURE_FIELDS


class TaskFuture(Future):
    """A ``concurrent.futures.Future`` whose successful ``cancel()`` wakes
    ``concurrent.futures.wait()`` and ``as_completed()`` at once, and whose lock is a
    ``FutureLock`` (a pending future: ~560 bytes instead of ~1,600)."""

    # the task overview's mark (executors.overview._MARK) in a slot: a future then never
    # needs an instance dict (~100 bytes per pending task, issue 15)
    __slots__ = ("_hpcfutures_task",)

    def __init__(self) -> None:
        if _SAME_FIELDS:
            self._condition = FutureLock()
            self._state = PENDING
            self._result = None
            self._exception = None
            self._waiters = []
            self._done_callbacks = []
        else:
            super().__init__()
            self._condition = FutureLock()

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
