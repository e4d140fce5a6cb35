"""Exception types raised to users."""

from __future__ import annotations

from concurrent.futures import BrokenExecutor


class WorkerCrashedError(RuntimeError):
    """The process running a task ended without a reply: killed by a signal, exited,
    or its launcher (``mpiexec``, ``srun``) failed. The message names the exit code or
    signal and carries the tail of the process's stderr."""


class PoolBrokenError(WorkerCrashedError, BrokenExecutor):
    """No worker of a warm pool is left to run tasks. A ``concurrent.futures.BrokenExecutor``
    (as ``BrokenProcessPool`` is), so ``except BrokenExecutor`` written for the standard
    library, loky or mpi4py catches it too."""


class MPIWorldError(WorkerCrashedError):
    """The ranks of an MPI task or worker did not form one ``MPI_COMM_WORLD`` of the size
    asked for — typically ``srun`` without a PMI the MPI library understands, which starts
    singletons. Raised instead of returning the answer of ranks that worked alone; the
    message names the MPI library, the launcher's PMI and the ``pmi_mode`` to use."""


class RemoteTraceback(Exception):
    """Chained as ``__cause__`` of an exception raised in a worker: its text is the
    traceback as the worker saw it, as ``concurrent.futures.process`` does."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def rebuild(reply: dict) -> BaseException:
    """The exception of a worker's error reply, with the worker's traceback as its
    ``__cause__`` (a ``RemoteTraceback``, as ``concurrent.futures.process`` does).

    Args:
        reply: a reply dict with ``error`` and, optionally, ``traceback`` (text).

    Returns:
        The exception, ready to raise or to set on a future.
    """
    exc = reply["error"]
    text = reply.get("traceback")
    if text:
        exc.__cause__ = RemoteTraceback(text)
    return exc


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note`` where Python has it (3.11+); on 3.10 the note is kept in
    ``__notes__`` where a reader can still find it.

    Args:
        exc: the exception to annotate.
        note: one line of text shown under its message.
    """
    try:
        exc.add_note(note)
    except AttributeError:
        try:
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]
        except (AttributeError, TypeError):
            pass


class UnsatisfiableRequestError(RuntimeError):
    """The scheduler will never start what a task or warm worker asked for (more nodes,
    cores, memory or time than its partition, account or QOS allows; nodes or constraints
    that are not available). The message carries SLURM's pending reason and the request;
    the job was cancelled. Not retried: the same request would wait forever again."""
