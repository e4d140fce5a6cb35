"""Workers on this machine: a plain interpreter, or ``mpiexec`` when a task or warm worker
needs several MPI ranks. ``LocalLauncher`` starts them and hands back a
``LocalProcessHandle``; ``CommandLauncher`` starts a command line exactly as given (the
pympipool ``SocketInterface.bootup(command)``)."""

from __future__ import annotations

import os
import threading

from hpcfutures.launch.handle import ONE_SHOT_PIPES, Launcher
from hpcfutures.launch.mpi import mpiexec_command, require_mpi4py
from hpcfutures.launch.process import LocalProcessHandle, python_command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence

ONE_SHOT = "hpcfutures.worker.one_shot"
INTERACTIVE = "hpcfutures.worker.interactive"
FORK_SERVER_ENV = "HPCFUTURES_FORK_SERVER"
"""``0`` (or ``no``/``false``/``off``): serial fresh tasks start as a new interpreter each,
not as forks of a fork server (read when a launcher is made, i.e. per executor)."""


def fork_server_wanted() -> bool:
    """Whether ``HPCFUTURES_FORK_SERVER`` lets serial fresh tasks start as forks.

    Returns:
        False for ``0``, ``no``, ``false`` or ``off``; True otherwise, and when it is unset.
    """
    return os.environ.get(FORK_SERVER_ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def check_can_launch(cores: int) -> None:
    """Raise now (at submit or construction) what would otherwise fail inside a thread."""
    if cores > 1:
        require_mpi4py()
        mpiexec_command(cores, False)


def one_shot_command(task_fd: int, reply_fd: int) -> list[str]:
    """The serial one-shot worker's command line, reading its task from ``task_fd`` and
    writing its reply to ``reply_fd`` (both inherited).

    Args:
        task_fd: the inherited descriptor the task is read from.
        reply_fd: the inherited descriptor the reply is written to.
    """
    return python_command(ONE_SHOT, str(task_fd), str(reply_fd))


def interactive_worker(address: str, cores: int = 1) -> list[str]:
    """The interactive (warm or MPI) worker's own command line, without a launcher in front.

    Args:
        address: where it connects (``unix:PATH`` or ``tcp://HOST:PORT``).
        cores: its MPI ranks (> 1: it checks it runs in a world of that size).
    """
    if cores > 1:
        return python_command(INTERACTIVE, address, f"--mpi={cores}")
    return python_command(INTERACTIVE, address)


class LocalLauncher(Launcher):
    """Workers on this machine: ``argv`` as it is for one rank, under ``mpiexec -n cores``
    for several; serial one-shot tasks over two inherited pipes."""

    name = "this machine"
    capabilities = frozenset({ONE_SHOT_PIPES})

    def __init__(self, fork_server: bool | None = None):
        """
        Args:
            fork_server: start serial one-shot tasks as forks of a warm fork server
                (``launch.forkserver``; started at the first such task, stopped by
                ``close()``); None: as ``HPCFUTURES_FORK_SERVER`` says (default yes).
        """
        self._use_forks = fork_server_wanted() if fork_server is None else fork_server
        self._forks = None  # the ForkServerLauncher, made at the first serial task
        self._forks_lock = threading.Lock()
        self._fork_failures = 0  # in a row; FORK_FAILURES_MAX of them: fresh interpreters from then on

    def check(self, resources: Mapping) -> None:
        """Raises ImportError (no mpi4py) or FileNotFoundError (no mpiexec) for
        ``cores > 1``."""
        check_can_launch(resources.get("cores", 1))

    def prefix(self, resources: Mapping) -> list[str]:
        """What goes in front of the worker's command line: ``mpiexec`` for several ranks."""
        cores = resources.get("cores", 1)
        return mpiexec_command(cores, resources.get("openmpi_oversubscribe", False)) if cores > 1 else []

    def start(self, argv: Sequence[str], resources: Mapping, env: Mapping[str, str], cwd: str | None = None,
              pass_fds: Sequence[int] = ()) -> LocalProcessHandle:
        """Start ``argv`` (under ``mpiexec`` for ``cores > 1``); see ``Launcher.start``.

        Args:
            argv: the worker's command line.
            resources: its merged ``resource_dict`` (``cores``: MPI ranks).
            env: its full environment.
            cwd: its working directory; ``None``: the driver's.
            pass_fds: descriptors it inherits.
        """
        return LocalProcessHandle(self.prefix(resources) + list(argv), env, cwd=cwd, pass_fds=pass_fds)

    def start_one_shot(self, task_r: int, reply_w: int, resources: Mapping, env: Mapping[str, str],
                       cwd: str | None = None) -> LocalProcessHandle:
        """Start a serial one-shot worker that inherits the two pipe ends (the caller closes
        its copies): a fork of this launcher's fork server (started at the first call) where
        it is on and can run the task, else a fresh interpreter.

        Args:
            task_r: read end of the task pipe.
            reply_w: write end of the reply pipe.
            resources: the task's merged ``resource_dict`` (``cores`` 1).
            env: the task's whole environment, key included.
            cwd: its working directory, or None for the driver's.

        Returns:
            A ``ForkedTask`` or a ``LocalProcessHandle``; the caller must ``close()`` it.

        Args:
            task_r: the read end of the task pipe.
            reply_w: the write end of the reply pipe.
            resources: the task's merged ``resource_dict``.
            env: the worker's full environment.
            cwd: its working directory; ``None``: the driver's.

        Raises:
            FileNotFoundError: the interpreter is gone.
        """
        if self._use_forks and resources.get("cores", 1) == 1:
            handle = self._fork(task_r, reply_w, resources, env, cwd)
            if handle is not None:
                return handle
        return LocalProcessHandle(one_shot_command(task_r, reply_w), env, cwd=cwd, pass_fds=(task_r, reply_w))

    def _fork(self, task_r: int, reply_w: int, resources: Mapping, env: Mapping[str, str], cwd: str | None):
        """The task as a fork of the server, or None where it must start as a fresh
        interpreter (the server cannot start or keeps failing: said once in a log line)."""
        from hpcfutures.errors import WorkerCrashedError
        from hpcfutures.launch.forkserver import ForkServerLauncher, NotForkable, forkable

        why = forkable(env, cwd)
        if why is not None:
            _log().debug("a fresh interpreter for this task, not a fork: %s", why)
            return None
        with self._forks_lock:
            if not self._use_forks:
                return None
            if self._forks is None:
                self._forks = ForkServerLauncher()
            forks = self._forks
        try:
            handle = forks.start_one_shot(task_r, reply_w, resources, env, cwd)
        except NotForkable as exc:
            _log().debug("a fresh interpreter for this task, not a fork: %s", exc)
            return None
        except (OSError, WorkerCrashedError) as exc:
            with self._forks_lock:
                self._fork_failures += 1
                give_up = self._fork_failures >= FORK_FAILURES_MAX and self._use_forks
                if give_up:
                    self._use_forks = False
            if give_up:
                _log().warning("the fork server failed %d times (%s): serial tasks start as fresh interpreters from now on",
                               FORK_FAILURES_MAX, exc)  # fmt: skip
            else:
                _log().info("the fork server could not start this task (%s): a fresh interpreter runs it", exc)
            return None
        self._fork_failures = 0
        return handle

    def close(self) -> None:
        """Stop the fork server, if one was started (the tasks it forked run on to their
        ends; each is its own process); idempotent."""
        with self._forks_lock:
            forks, self._forks = self._forks, None
        if forks is not None:
            forks.close()

    def worker_command(self, address: str, resources: Mapping) -> list[str]:
        """The interactive worker's full command line (launcher included).

        Args:
            address: where the worker connects (``unix:<path>`` or ``tcp://host:port``).
            resources: its merged ``resource_dict`` (``cores``: MPI ranks).
        """
        return self.prefix(resources) + interactive_worker(address, resources.get("cores", 1))


FORK_FAILURES_MAX = 3  # fork server failures in a row before serial tasks stop asking it


def _log():
    from hpcfutures.logs import get_logger

    return get_logger("process")


class CommandLauncher(Launcher):
    """Starts a command line exactly as given, on this machine (nothing put in front);
    ``resources`` are not looked at. For ``SocketInterface.bootup(command)``, whose caller
    built the whole command itself."""

    name = "command"
    capabilities = frozenset()

    def check(self, resources: Mapping) -> None:
        """Nothing to check: the command is the caller's."""

    def start(self, argv: Sequence[str], resources: Mapping, env: Mapping[str, str], cwd: str | None = None,
              pass_fds: Sequence[int] = ()) -> LocalProcessHandle:
        """Start ``argv``; see ``Launcher.start``.

        Args:
            argv: the full command line, started as given.
            resources: unused: the command says everything.
            env: the process's full environment.
            cwd: its working directory; ``None``: the driver's.
            pass_fds: descriptors it inherits.
        """
        return LocalProcessHandle(argv, env, cwd=cwd, pass_fds=pass_fds)
