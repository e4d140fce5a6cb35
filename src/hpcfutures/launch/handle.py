"""What a launcher gives back: a handle on one started worker.

A *launcher* (this machine: a plain interpreter or ``mpiexec``; ``srun``; Flux, a
fork server) turns a worker's Python command line and its resources into a running worker
and returns a ``WorkerHandle``. Nothing above ``launch/`` starts processes, opens pidfds,
sends signals to process groups or reads a launcher's stderr: the engines and the wait
primitive (``wire.waiting``) see only these two interfaces.

The one idea that makes every kind of worker fit the same wait: *the end of a worker is a
readable file descriptor* (``ended_fd``). For a local child it is a pidfd; for a worker the
driver learns about through a callback (a Flux job's future, a fork server's message), it
is an eventfd or pipe the handle writes when it learns of the end. So one ``poll()`` waits
on the reply, the end, the stderr pipe and a wake fd together, and death is an event, never
a timer.

Both interfaces are ``typing.Protocol``-shaped (duck typed): a launcher need not inherit
from anything here. They are written as plain classes with ``NotImplementedError`` bodies so
that importing this module costs no ``typing`` import (workers and the driver's import time
matter); ``isinstance`` is not used on them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Mapping, Sequence

INHERIT_FDS = "inherit_fds"
"""Capability: descriptors passed at start reach the worker (a local child), so a one-shot
task can travel over two pipes instead of a socket."""
ONE_SHOT_PIPES = "one_shot_pipes"
"""Launcher capability: ``start_one_shot`` exists (the serial one-shot path over two pipes:
inherited fds on this machine, srun's stdin/stdout through srun)."""
MAY_QUEUE = "may_queue"
"""Capability: the worker may wait in a scheduler's queue before it starts (srun outside an
allocation, Flux): a graceful shutdown does not wait for it to connect."""


class WorkerHandle:
    """One started worker, whatever started it (a local process, an srun step, a Flux job).

    Attributes:
        ended_fd: a descriptor that becomes readable once the worker has ended (a pidfd, or
            an eventfd/pipe the handle writes when it learns of the end); -1 once closed.
        stderr_fd: a non-blocking pipe carrying the worker's (launcher's) stderr, to be
            drained with ``pump_stderr()`` whenever it is readable; ``None`` when stderr goes
            elsewhere (a file).
        label: a short name for logs and ``task.worker`` (e.g. ``"pid 1234"``, ``"job f12"``).
        capabilities: what this handle can do (``INHERIT_FDS``, ``MAY_QUEUE``, ...).
    """

    ended_fd: int
    stderr_fd: int | None
    label: str
    capabilities: frozenset

    def pump_stderr(self) -> None:
        """Read what stderr holds now (never block), show it on the driver's stderr, keep
        its tail, and take the reports failing MPI ranks wrote (``wire.replies``) out of it."""
        raise NotImplementedError

    @property
    def stderr_open(self) -> bool:
        """Whether ``stderr_fd`` may still carry data (False once it reached its end)."""
        raise NotImplementedError

    def take_reports(self) -> list[bytes]:
        """The sealed reports (hex) failing ranks left on stderr since the last call."""
        raise NotImplementedError

    def ended(self) -> bool:
        """Whether the worker has ended; never blocks."""
        raise NotImplementedError

    def wait_ended(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the worker to end.

        Returns:
            True if it has ended.
        """
        raise NotImplementedError

    def describe_exit(self) -> str:
        """How the worker ended, for an error message ("exited with code 3", "killed by
        signal SIGKILL", with the tail of its stderr). Waits for the end if need be."""
        raise NotImplementedError

    def exit_error(self) -> BaseException:
        """The exception for a future whose worker ended without replying:
        ``UnsatisfiableRequestError`` when the scheduler refused the request, otherwise
        ``WorkerCrashedError`` with ``describe_exit()``."""
        raise NotImplementedError

    def stderr_tail(self) -> str:
        """The last few kB of the worker's stderr (reports taken out), stripped."""
        raise NotImplementedError

    def request(self) -> str:
        """What was asked of the launcher, for messages (e.g. ``"srun -n 2 ..."``)."""
        raise NotImplementedError

    def terminate(self, grace: float = 1.0) -> None:
        """Ask the worker to stop (SIGTERM, a cancel); kill it after ``grace`` seconds.
        Blocks until it ended or the kill was sent."""
        raise NotImplementedError

    def kill(self) -> None:
        """Stop the worker and everything it started, now (its session, its job). Safe from
        any thread; never blocks for long; the owner still calls ``close()``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the handle holds (descriptors, guardian entries, queued jobs).
        Idempotent."""
        raise NotImplementedError


class Launcher:
    """Starts workers of one kind and answers, before that, whether it could.

    Attributes:
        name: for messages (``"this machine"``, ``"srun"``, ``"flux"``).
        capabilities: what it can do (``ONE_SHOT_PIPES``, ...).
    """

    name: str
    capabilities: frozenset

    def check(self, resources: Mapping) -> None:
        """Refuse now (at ``submit()``) what this launcher can never start.

        Args:
            resources: the merged ``resource_dict`` of a task or warm worker.

        Raises:
            ValueError, ImportError, FileNotFoundError, UnsatisfiableRequestError: naming
                the problem and the remedy.
        """
        raise NotImplementedError

    def start(
        self,
        argv: Sequence[str],
        resources: Mapping,
        env: Mapping[str, str],
        cwd: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> WorkerHandle:
        """Start one worker.

        Args:
            argv: the worker's own command line (``python -m hpcfutures.worker...``); the
                launcher puts what it needs in front (``mpiexec -n``, ``srun`` flags) as
                ``resources`` ask (``cores``: MPI ranks, ``threads_per_core``: CPUs per rank).
            resources: the merged ``resource_dict``.
            env: the worker's environment (``worker_environment``), key included; the
                launcher moves the key out of it where it can (a pipe, a 0600 file).
            cwd: working directory, or None for the driver's.
            pass_fds: descriptors the worker must inherit (only with ``INHERIT_FDS``).

        Returns:
            The handle; the caller owns it and must ``close()`` it.

        Raises:
            FileNotFoundError: the launcher's command does not exist.
        """
        raise NotImplementedError

    def start_one_shot(
        self, task_r: int, reply_w: int, resources: Mapping, env: Mapping[str, str], cwd: str | None = None
    ) -> WorkerHandle:
        """Start a serial one-shot worker (``hpcfutures.worker.one_shot``) that reads its one
        task from ``task_r`` and writes its reply to ``reply_w``. Only launchers with
        ``ONE_SHOT_PIPES`` have it; the others run serial tasks over a socket link, like MPI
        tasks. The caller closes its copies of both descriptors after the call.

        Args:
            task_r: the read end of the task pipe (inherited by the worker).
            reply_w: the write end of the reply pipe (inherited by the worker).
            resources: the task's merged ``resource_dict``.
            env: the worker's full environment.
            cwd: its working directory; ``None``: the driver's.

        Returns:
            The handle; the caller owns it and must ``close()`` it.
        """
        raise NotImplementedError


def exit_words(returncode: int) -> str:
    """A process's end in the words every handle uses in its ``describe_exit``.

    Args:
        returncode: as ``subprocess`` gives it: the exit code, or minus the signal number.

    Returns:
        ``"exited with code 3"`` or ``"killed by signal SIGKILL"`` (the number where the
        signal has no name).
    """
    if returncode >= 0:
        return f"exited with code {returncode}"
    import signal

    try:
        return f"killed by signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def with_stderr_tail(text: str, tail: str, limit: int = 2000) -> str:
    """A ``describe_exit`` text with the end of the worker's stderr appended.

    Args:
        text: how the worker ended.
        tail: its stderr tail ("" when it wrote nothing).
        limit: characters of ``tail`` kept (the last ones).

    Returns:
        ``text``, then "; its stderr ends with:" and the tail, when there is one.
    """
    return f"{text}; its stderr ends with:\n{tail[-limit:]}" if tail else text
