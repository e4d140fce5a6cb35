"""Turn a worker's reply (or its absence) into the end of a future — the one place where
futures are completed, so every path ends them the same way."""

from __future__ import annotations

import os
import time

from hpcfutures.errors import PoolBrokenError, WorkerCrashedError, add_note, rebuild
from hpcfutures.logs import get_logger
from hpcfutures.scheduling.dependencies import remember_failure
from hpcfutures.scheduling.task import Task
from hpcfutures.wire.replies import open_reply

_retry_log = get_logger("retry")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def settle(task: Task, reply, raw: bytes | None = None) -> None:
    """Complete ``task.future`` from a reply dict or an exception instance (``raw``: the
    reply's pickle as the worker sent it, stored as is when the task is cached).

    Args:
        task: the task; its future ends here (unless it already ended).
        reply: ``{"result": ...}``, ``{"error": exc, "traceback": text}``, or an exception.
        raw: the reply's pickle as sent; ``None``: pickled again if the task is cached.
    """
    try:
        _settle(task, reply, raw)
    finally:
        task.release()  # the call and its pickle are not needed any more: free them now


def _settle(task: Task, reply, raw) -> None:
    future = task.future
    if future.done():
        return
    if isinstance(reply, BaseException):
        exc = reply
    elif isinstance(reply, dict) and "error" in reply:
        exc = rebuild(reply)
    elif isinstance(reply, dict) and "result" in reply:
        future.set_result(reply["result"])
        if task.cache is not None:
            _store(task, reply, raw)
        return
    else:
        exc = RuntimeError(f"malformed reply from worker: {reply!r}")
    if task.attempt > 1:
        add_note(exc, f"hpcfutures: {task.name}() failed {task.attempt} times (retries={task.attempt - 1})")
    _log_error(task, exc)
    remember_failure(future, task.name)
    future.set_exception(exc)
    if task.cache is not None:
        _store(task, reply, raw)


def _store(task: Task, reply, raw: bytes | None) -> None:
    """Queue the cache entry (the store writes it in the background; the executor's
    shutdown waits for it). A task stopped by shutdown leaves no entry."""
    from concurrent.futures import CancelledError

    if isinstance(reply, CancelledError) or not isinstance(reply, (dict, BaseException)):
        return
    if isinstance(reply, BaseException):
        reply, raw = {"error": reply}, None
    store, key = task.cache
    store.save(key, task, reply, raw, time.monotonic() - task.started_at if task.started_at else None)


def finish(task: Task, reply, retry: Callable[[Task], None], raw: bytes | None = None) -> None:
    """``settle``, unless the task may run again: then ``retry(task)`` requeues it.

    A task is retried (up to its ``retries`` count) when its worker died or it ran out of
    time — failures of the machine, not of the function — and when the function raised one
    of the exception classes in ``retry_on``.

    Args:
        task: the task the reply belongs to.
        reply: a reply dict, its pickle as the worker sent it, or an exception.
        retry: requeues the task (the engine's own queue).
        raw: the reply's pickle, when ``reply`` is already a dict.
    """
    if isinstance(reply, (bytes, memoryview)):  # a worker's reply, still pickled
        opened = open_reply(reply)
        raw, reply = (reply if opened.plain else None), opened.reply
    retries = task.resources.get("retries", 0)
    if retries and task.attempt <= retries and _retryable(task, reply):
        _retry_log.warning(
            "%s() failed on attempt %d of %d, running it again: %s",
            task.name, task.attempt, retries + 1, reply.get("error") if isinstance(reply, dict) else reply,
        )
        task.attempt += 1
        retry(task)
    else:
        settle(task, reply, raw)


def _retryable(task: Task, reply) -> bool:
    if isinstance(reply, BaseException):
        return isinstance(reply, (WorkerCrashedError, TimeoutError)) and not isinstance(reply, PoolBrokenError)
    retry_on = task.resources.get("retry_on")
    return bool(retry_on) and isinstance(reply, dict) and isinstance(reply.get("error"), retry_on)


def _log_error(task: Task, exc: BaseException) -> None:
    path = task.resources.get("error_log_file")
    if not path:
        return
    import datetime
    import traceback

    cause = exc.__cause__
    text = getattr(cause, "text", None) or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        with open(os.fspath(path), "a") as log:
            log.write(
                f"--- {datetime.datetime.now().isoformat(timespec='seconds')} function {task.name} failed\n"
                f"args: {task.args!r}\nkwargs: {task.kwargs!r}\n{text}\n"
            )
    except OSError:
        pass


def fail_unstarted(task: Task, exc: BaseException) -> None:
    """End a task that never reached a worker.

    Args:
        task: the task; ended only if it was not started or ended already.
        exc: the exception its future gets.
    """
    if task.start():
        settle(task, exc)


def cancel_unstarted(task: Task) -> None:
    """Cancel a task that is not running now. ``Future.cancel()`` alone does not wake
    ``concurrent.futures.wait``/``as_completed``; ``start()`` after it does. A retry waiting
    for its next run is already RUNNING and ends with ``CancelledError``."""
    if task.running:
        settle(task, stopped_by_shutdown())
    elif task.future.cancel():
        task.start()


def stopped_by_shutdown() -> BaseException:
    """The error of a task stopped by ``shutdown(cancel_futures=True)`` after it had
    started: a ``CancelledError`` saying so.
    """
    from concurrent.futures import CancelledError

    return CancelledError("the task was stopped because the executor was shut down")
