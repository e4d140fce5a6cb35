"""Workers on this machine: a plain interpreter, or ``mpiexec`` when a task or warm worker
needs several MPI ranks. ``LocalLauncher`` starts them and hands back a
``LocalProcessHandle``; ``CommandLauncher`` starts a command line exactly as given (the
pympipool ``SocketInterface.bootup(command)``)."""

from __future__ import annotations

from hpcfutures.launch.handle import ONE_SHOT_PIPES, Launcher
from hpcfutures.launch.mpi import mpiexec_command, require_mpi4py
from hpcfutures.launch.process import LocalProcessHandle, python_command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence

ONE_SHOT = "hpcfutures.worker.one_shot"
INTERACTIVE = "hpcfutures.worker.interactive"


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
        its copies).

        Args:
            task_r: the read end of the task pipe.
            reply_w: the write end of the reply pipe.
            resources: the task's merged ``resource_dict``.
            env: the worker's full environment.
            cwd: its working directory; ``None``: the driver's.

        Raises:
            FileNotFoundError: the interpreter is gone.
        """
        return LocalProcessHandle(one_shot_command(task_r, reply_w), env, cwd=cwd, pass_fds=(task_r, reply_w))

    def worker_command(self, address: str, resources: Mapping) -> list[str]:
        """The interactive worker's full command line (launcher included).

        Args:
            address: where the worker connects (``unix:<path>`` or ``tcp://host:port``).
            resources: its merged ``resource_dict`` (``cores``: MPI ranks).
        """
        return self.prefix(resources) + interactive_worker(address, resources.get("cores", 1))


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
