"""Exception types raised to users."""

from __future__ import annotations


class WorkerCrashedError(RuntimeError):
    """The process running a task ended without a reply: killed by a signal, exited,
    or its launcher (``mpiexec``, ``srun``) failed. The message names the exit code or
    signal and carries the tail of the process's stderr."""


class RemoteTraceback(Exception):
    """Chained as ``__cause__`` of an exception raised in a worker: its text is the
    traceback as the worker saw it, as ``concurrent.futures.process`` does."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def rebuild(reply: dict) -> BaseException:
    exc = reply["error"]
    text = reply.get("traceback")
    if text:
        exc.__cause__ = RemoteTraceback(text)
    return exc
