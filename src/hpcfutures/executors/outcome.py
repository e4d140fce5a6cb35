"""Turn a worker's reply (or its absence) into the end of a future — the one place where
futures are completed, so every path ends them the same way."""

from __future__ import annotations

import os

from hpcfutures.errors import rebuild
from hpcfutures.scheduling.task import Task


def settle(task: Task, reply) -> None:
    """Complete ``task.future`` from a reply dict or an exception instance."""
    future = task.future
    if future.done():
        return
    if isinstance(reply, BaseException):
        exc = reply
    elif isinstance(reply, dict) and "error" in reply:
        exc = rebuild(reply)
    elif isinstance(reply, dict) and "result" in reply:
        future.set_result(reply["result"])
        return
    else:
        exc = RuntimeError(f"malformed reply from worker: {reply!r}")
    _log_error(task, exc)
    future.set_exception(exc)


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
    """End a task that never reached a worker."""
    if task.future.set_running_or_notify_cancel():
        settle(task, exc)


def decode_reply(payload: bytes):
    """The reply, or an exception standing in for one that cannot be rebuilt here (an
    exception class whose ``__init__`` needs more arguments than it pickled, say)."""
    from hpcfutures.wire.frames import loads

    try:
        return loads(payload)
    except Exception as exc:
        return RuntimeError(f"the worker's reply could not be unpickled here: {type(exc).__name__}: {exc}")


def stopped_by_shutdown() -> BaseException:
    from concurrent.futures import CancelledError

    return CancelledError("the task was stopped because the executor was shut down")
