"""A launcher that starts each serial one-shot task as a fork of a warm server: a fresh
process per task at the cost of a ``fork()`` instead of an interpreter start and the
worker's imports (issue 15).

The server (``hpcfutures.worker.forkserver``) is started once, lazily, with the worker
modules imported and nothing else. Each task's child gets its own session, its own
environment (the thread variables of ``threads_per_core``, ``CUDA_VISIBLE_DEVICES``, the
key) and ``cwd`` before the function's own imports run, and nothing from an earlier task:
every child is forked from the same untouched server.

Liveness: the handle's ``ended_fd`` is a pidfd of the child (opened by the server, its
parent, so it cannot name a recycled pid) — readable when the child ends, even if the
server is gone. ``kill()`` ends the child's whole session. A child watches the driver
(``exit_with_driver``) as every worker does, and the server ends with the driver too.

Only serial tasks: MPI tasks still start through ``mpiexec`` (``check`` refuses
``cores > 1``). The shape follows ``launch/handle.py``'s ``Launcher``/``WorkerHandle``
(duck-typed): ``start_one_shot`` is the entry an engine uses; ``start`` is refused.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import subprocess
import sys
import threading

from hpcfutures.errors import WorkerCrashedError
from hpcfutures.launch.spawn import spawn
from hpcfutures.launch.handle import exit_words
from hpcfutures.launch.process import python_command
from hpcfutures.wire.frames import DRIVER_PID_ENV, SYS_PATH_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

ONE_SHOT_PIPES = "one_shot_pipes"  # as launch.handle.ONE_SHOT_PIPES
INHERIT_FDS = "inherit_fds"  # as launch.handle.INHERIT_FDS
MESSAGE_MAX = 1 << 20  # bytes: the largest pickled (env, cwd) the server reads (worker.forkserver)


class NotForkable(Exception):
    """This one task cannot go through the fork server (the server itself is fine): it must
    start as a fresh interpreter."""


# variables an interpreter, the C library or the dynamic loader reads once, at its start
# (PYTHON*, LD_*, the locale, the time zone, glibc's malloc tunables): a forked child
# inherits the server's reading of them, so a task whose values differ gets a new server
_START_PREFIXES = ("PYTHON", "LD_", "LC_", "GLIBC_", "MALLOC_")
_START_NAMES = frozenset({"LANG", "LANGUAGE", "TZ", "TZDIR"})


def is_start_variable(name: str) -> bool:
    """Whether a process reads the environment variable ``name`` once, at its start.

    Args:
        name: a variable's name.

    Returns:
        True for ``PYTHON*``, ``LD_*``, ``LC_*``, ``GLIBC_*``, ``MALLOC_*``, ``LANG``,
        ``LANGUAGE``, ``TZ``, ``TZDIR``.
    """
    return name.startswith(_START_PREFIXES) or name in _START_NAMES


def start_variables(env: Mapping[str, str]) -> dict:
    """The variables of ``env`` read at a process's start (``is_start_variable``).

    Args:
        env: an environment.

    Returns:
        Those of its variables, name -> value.
    """
    return {name: value for name, value in env.items() if is_start_variable(name)}


def _status_fields() -> tuple | None:
    """This thread's umask, ignored and blocked signal masks, as the kernel has them
    (``/proc/thread-self/status``: read without changing anything), or None off Linux."""
    wanted = {"Umask:": None, "SigIgn:": None, "SigBlk:": None}
    try:
        with open("/proc/thread-self/status") as status:
            for line in status:
                name = line.split(":", 1)[0] + ":"
                if name in wanted:
                    wanted[name] = line.split()[1]
    except (OSError, IndexError):
        return None
    return tuple(wanted.values())


def _fd_identity(fd: int) -> tuple | None:
    """What descriptor ``fd`` points at (device, inode, open flags), or None if closed."""
    import fcntl

    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return None


def process_state() -> tuple:
    """What a process started now by this thread inherits from the driver, apart from the
    environment and cwd: umask, every resource limit, the nice value, where stdout and
    stderr point (stdin is ``/dev/null`` for every task), the ignored signals and the
    blocked signal mask. A fork of the server inherits the server's instead: the server
    must have been started with the same.

    Returns:
        A comparable value; equal for equal states.
    """
    import resource

    limits = tuple(resource.getrlimit(number) for number in _RLIMITS)
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's, as a child it starts gets
    except OSError:
        nice = None
    fields = _status_fields()
    if fields is None:  # umask cannot be read without setting it: left out
        fields = (
            tuple(int(s) for s in signal.valid_signals() if _ignored(s)),
            tuple(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))),
        )  # fmt: skip
    return fields, limits, nice, _fd_identity(1), _fd_identity(2)


def _ignored(sig) -> bool:
    try:
        return signal.getsignal(sig) is signal.SIG_IGN
    except (OSError, ValueError):
        return False


def _rlimit_numbers() -> tuple:
    import resource

    return tuple(getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_"))


_RLIMITS = _rlimit_numbers()


def forkable(env: Mapping[str, str], cwd: str | None) -> str | None:
    """Why a fork of the server would not see what a fresh ``python -m`` would, or None.

    A relative ``PYTHONPATH`` entry is resolved against the interpreter's cwd at its start:
    a task with another cwd must start fresh to resolve it against its own.

    Args:
        env: the task's whole environment.
        cwd: the task's working directory, or None for the driver's.

    Returns:
        None when a fork is equivalent; otherwise the reason, for a log line.
    """
    relative = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and not os.path.isabs(p)]
    if relative and cwd is not None and os.path.realpath(cwd) != os.path.realpath(os.getcwd()):
        return f"PYTHONPATH has relative entries ({', '.join(relative)}) and the task's cwd is {cwd}"
    return None


class ForkedTask:
    """The handle of one forked task process (``launch.handle.WorkerHandle``'s shape).

    Attributes:
        pid: the child's pid.
        ended_fd: a pidfd of the child: readable once it ended; -1 once closed.
        stderr_fd: ``None``: the child writes to the driver's stderr directly.
        label: ``"pid N"``, as for any local process.
        capabilities: ``{"inherit_fds"}``.

    Args:
        pid: the child's pid, as the fork server reported it.
        pidfd: a pidfd the driver opened on it (becomes ``ended_fd``; the handle closes it).
        status_fd: the descriptor on which the fork server reports the child's exit status.
    """

    stderr_fd = None
    capabilities = frozenset({INHERIT_FDS})

    def __init__(self, pid: int, pidfd: int, status_fd: int):
        self.pid = pid
        self.ended_fd = pidfd
        self._status_fd = status_fd
        self._status: int | None = None
        self.label = f"pid {pid}"  # as a local process: task_overview and logs read "pid N"
        self._lock = threading.Lock()

    @property
    def stderr_open(self) -> bool:
        """Always False: the child writes to the driver's stderr, there is no pipe."""
        return False

    def pump_stderr(self) -> None:
        """Nothing to pump: stderr is the driver's own."""

    def take_reports(self) -> list:
        """None: a serial task has no ranks to report (an empty list)."""
        return []

    def stderr_tail(self) -> str:
        """Empty: stderr went to the driver's own, uncaptured."""
        return ""

    def request(self) -> str:
        """What started it, for messages."""
        return "a fork of the fork server"

    def ended(self) -> bool:
        """Whether the child has ended (never blocks)."""
        return self.wait_ended(0)

    def wait_ended(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the child to end.

        Returns:
            True if it has ended.
        """
        fd = self.ended_fd
        if fd < 0:
            return True
        return bool(select.select([fd], [], [], timeout)[0])

    def _wait_status(self, timeout: float) -> int | None:
        """The child's wait status, as the server reports it once it reaped the child."""
        if self._status is None and self._status_fd >= 0:
            if select.select([self._status_fd], [], [], timeout)[0]:
                text = os.read(self._status_fd, 64)
                if text:
                    self._status = int(text)
        return self._status

    def describe_exit(self) -> str:
        """How the child ended, worded as ``LocalProcessHandle.describe_exit`` words it
        ("worker process N (forked) exited with code 3", "... killed by signal SIGKILL");
        waits for the end."""
        self.wait_ended(None)
        status = self._wait_status(5.0)
        text = f"worker process {self.pid} (forked)"
        if status is None:
            return f"{text} ended (its exit status was lost: the fork server is gone)"
        return f"{text} {exit_words(os.waitstatus_to_exitcode(status))}"

    def exit_error(self) -> BaseException:
        """The error for a future whose task process ended without replying."""
        return WorkerCrashedError(self.describe_exit())

    def _signal(self, sig: int) -> None:
        with self._lock:
            if self.ended_fd < 0:
                return
            if sig == signal.SIGKILL:
                # the session first, while its leader (pid = session id) is alive or unreaped;
                # an id in use as a session id is never given to a new process
                from hpcfutures.worker.execute import end_session

                end_session(self.pid)
            try:
                signal.pidfd_send_signal(self.ended_fd, sig)
            except ProcessLookupError:
                pass

    def terminate(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL (the whole session) after ``grace`` seconds."""
        self._signal(signal.SIGTERM)
        if not self.wait_ended(grace):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the child and everything in its session, now."""
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        """Release the descriptors; idempotent."""
        with self._lock:
            for name in ("ended_fd", "_status_fd"):
                fd = getattr(self, name)
                if fd >= 0:
                    setattr(self, name, -1)
                    os.close(fd)


class ForkServerLauncher:
    """Serial one-shot tasks as forks of one warm server on this machine.

    Attributes:
        name: ``"fork server"``.
        capabilities: ``{"one_shot_pipes"}``.
    """

    name = "fork server"
    capabilities = frozenset({ONE_SHOT_PIPES})

    def __init__(self):
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._server: subprocess.Popen | None = None
        self._server_start: dict | None = None  # start_variables the server runs with
        self._server_cwd: str | None = None
        self._server_state: tuple | None = None  # process_state() the server started with

    def check(self, resources: Mapping) -> None:
        """Refuse what a fork cannot be: an MPI task.

        Raises:
            ValueError: ``cores`` above 1 (MPI tasks start through ``mpiexec``).
        """
        if resources.get("cores", 1) != 1:
            raise ValueError(
                f"the fork server runs serial tasks only, got cores={resources.get('cores')}; "
                "MPI tasks start through mpiexec (the default launcher)"
            )

    def start(self, argv, resources, env, cwd=None, pass_fds=()):
        """Not offered: a fork server starts serial one-shot tasks only (``start_one_shot``);
        callers check ``capabilities`` for ``ONE_SHOT_PIPES`` first.

        Args:
            argv, resources, env, cwd, pass_fds: as ``Launcher.start``.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("the fork server starts one-shot serial tasks only (start_one_shot)")

    def _ensure_server(self, task_env: Mapping[str, str] | None = None) -> socket.socket:
        wanted = start_variables(task_env if task_env is not None else os.environ)
        cwd = os.getcwd()
        state = process_state()
        running = self._control is not None and self._server is not None and self._server.poll() is None
        # a server started with other start variables, in another cwd (a relative PYTHONPATH
        # entry, sys.path[0]) or with another umask, limits, nice value, stdout/stderr or
        # signal state would not give what a fresh interpreter started now gives
        if running and wanted == self._server_start and cwd == self._server_cwd and state == self._server_state:
            return self._control
        self._retire_server()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:  # room for one message of MESSAGE_MAX (the kernel caps it at net.core.wmem_max)
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MESSAGE_MAX)
        except OSError:
            pass
        env = {name: value for name, value in os.environ.items() if not is_start_variable(name)}
        env.update(wanted)
        env[DRIVER_PID_ENV] = f"{os.getpid()}@{os.uname().nodename}"
        env[SYS_PATH_ENV] = os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str))
        try:
            self._server = spawn(
                python_command("hpcfutures.worker.forkserver", str(theirs.fileno())),
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._control = mine
        self._server_start, self._server_cwd, self._server_state = wanted, cwd, state
        return mine

    def start_one_shot(
        self, task_r: int, reply_w: int, resources: Mapping, env: Mapping[str, str], cwd: str | None = None
    ) -> ForkedTask:
        """Fork one serial one-shot worker reading its task from ``task_r`` and writing its
        reply to ``reply_w`` (the caller closes its copies of both after the call).

        Args:
            task_r: read end of the task pipe.
            reply_w: write end of the reply pipe.
            resources: the task's merged ``resource_dict`` (``check`` was asked before).
            env: the task's whole environment (``worker_environment``), key included: it
                travels over the private socket pair, never a command line or ``environ``
                file of a process.
            cwd: the task's working directory, or None for the server's (the driver's).

        Returns:
            The child's handle; the caller owns it and must ``close()`` it.

        Raises:
            WorkerCrashedError: the server could not fork (it is restarted next time).
            NotForkable: this task's environment is too large for one message: start it
                as a fresh interpreter.
            OSError: the server could not be started.
        """
        import pickle

        # no cwd: the driver's now, as a fresh process started now would have it
        message = pickle.dumps((dict(env), cwd if cwd is not None else os.getcwd()), protocol=pickle.HIGHEST_PROTOCOL)
        if len(message) > MESSAGE_MAX:
            raise NotForkable(f"its environment takes {len(message)} bytes pickled, the fork server reads at most {MESSAGE_MAX}")
        with self._lock:
            control = self._ensure_server(env)
            try:
                socket.send_fds(control, [message], [task_r, reply_w])
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # nothing was sent: the server is fine
                    raise NotForkable(f"its environment ({len(message)} bytes pickled) exceeds the socket's buffer") from None
                self._stop_server()
                raise WorkerCrashedError(f"the fork server is gone: {exc}") from None
            try:
                answer, fds, _, _ = socket.recv_fds(control, 64, 2)
            except OSError as exc:
                self._stop_server()
                raise WorkerCrashedError(f"the fork server is gone: {exc}") from None
        if not answer or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            with self._lock:
                self._stop_server()
            raise WorkerCrashedError("the fork server ended before it forked the task")
        for fd in fds:  # recv_fds does not set close-on-exec: a program the driver runs must not hold them
            os.set_inheritable(fd, False)
        return ForkedTask(int(answer), fds[0], fds[1])

    def _retire_server(self) -> None:
        """Close the current server's socket: it forks nothing more, reports the exit
        statuses of the tasks it forked that still run, and ends after the last one. Never
        blocks; a thread waits for its end."""
        if self._control is not None:
            try:  # the end reaches the server even if a fork of the driver holds a copy of our end
                self._control.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._control.close()  # the server reads the end; it exits once its tasks ended
            self._control = None
        if self._server is not None:
            server, self._server = self._server, None
            if server.poll() is None:  # waited for as it ends, never left a zombie
                threading.Thread(target=server.wait, name="hpcfutures-forkserver-retired", daemon=True).start()

    def _stop_server(self) -> None:
        """The server failed (it could not fork, or is gone): retire it, and kill it if it
        has not ended within 5 seconds (its tasks, if any, run on: each is its own process)."""
        server = self._server
        self._retire_server()
        if server is not None:
            try:
                server.wait(5.0)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    def close(self) -> None:
        """Retire the server: it forks nothing more and ends once the tasks it forked ended
        (they run on to their ends, each its own process, and their exit statuses are still
        reported); never blocks; idempotent."""
        with self._lock:
            self._retire_server()

    def server_pid(self) -> int | None:
        """The server's pid, or None while none runs (for tests and logs)."""
        return self._server.pid if self._server is not None else None
