"""The fork server: a process with the serial worker already imported that forks one fresh
child per task (``hpcfutures.launch.forkserver`` is the driver's side).

Usage: ``python -m hpcfutures.worker.forkserver CONTROL_FD`` where ``CONTROL_FD`` is the
server's end of a ``SOCK_SEQPACKET`` socket pair shared with the driver, and nothing else
talks to it. Each request is one message: the pickled ``(env, cwd)`` of the task, with the
task's two pipe ends (task read end, reply write end) attached as descriptors. The server
forks; the child becomes the leader of a session of its own, replaces its environment with
``env`` (the thread variables, ``CUDA_VISIBLE_DEVICES``, the key), enters ``cwd`` and runs
``hpcfutures.worker.one_shot`` on the two pipes — before the function's own imports, so
they see that environment. The server answers with the child's pid and two descriptors: a
pidfd of the child (opened by its parent, so it cannot name a recycled pid) and a pipe on
which the server writes the child's wait status once it has reaped it.

Standard library only, and single-threaded: ``fork()`` is safe only without threads.
The server ends when the driver dies (``exit_with_driver``), or once the driver closed the
socket and every child it forked has ended and had its status reported.
"""

import os
import signal
import socket
import sys

from hpcfutures.wire.frames import DRIVER_PID_ENV
from hpcfutures.worker import one_shot  # imported once here, inherited by every child

_MAX_MESSAGE = 1 << 20  # one task's environment, pickled (launch.forkserver.MESSAGE_MAX)
# a fresh ``python -m`` puts its cwd first on sys.path (unless PYTHONSAFEPATH): so does each
# child, with its own cwd — the driver starts a new server when a PYTHON* variable changes
_CWD_FIRST = bool(sys.path) and sys.path[0] == os.getcwd()
# SIGCHLD as the server found it (the driver's, inherited): the server's own handler is no
# part of a task, which gets what a fresh interpreter would
_SIGCHLD_AT_START = signal.getsignal(signal.SIGCHLD)


def _child(env: dict, cwd, task_fd: int, reply_fd: int) -> None:
    """In the forked child: never returns."""
    code = 1
    try:
        os.setsid()  # a session of its own: the driver ends the task and all it started
        signal.signal(signal.SIGCHLD, _SIGCHLD_AT_START if _SIGCHLD_AT_START is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.environ.clear()
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        if _CWD_FIRST:
            sys.path[0] = os.getcwd()
        sys.argv = [one_shot.__file__, str(task_fd), str(reply_fd)]  # as ``python -m ...one_shot`` has it
        # as in ``python -m``, the entry module is no importable module of the task's process
        sys.modules.pop("hpcfutures.worker.one_shot", None)
        sys.modules.pop("hpcfutures.worker.forkserver", None)  # the server's own code is no part of a task
        sys.modules["__main__"] = one_shot  # as in ``python -m ...one_shot``: not the server's globals
        code = one_shot.main(["one_shot", str(task_fd), str(reply_fd)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except EOFError:
        pass  # no task came: the driver gave up on this child (its server died as it forked)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _driver_pidfd() -> int | None:
    """A pidfd of the driver, watched in the server's own loop (no thread: the server forks)."""
    pid_text = os.environ.get(DRIVER_PID_ENV, "0").partition("@")[0]
    if not pid_text.isdigit() or int(pid_text) <= 0:
        return None
    try:
        return os.pidfd_open(int(pid_text))
    except ProcessLookupError:
        os._exit(70)  # the driver is already gone


def serve(control: socket.socket) -> None:
    """Fork one child per request read from ``control`` until the driver ends or
    closes the socket (each request carries the child's descriptors); after the close,
    go on reaping and reporting the children still running, and return after the last
    one (the driver retires a server whose state no longer matches its own while tasks of
    it still run: they keep their exit statuses).
    """
    import pickle
    import select

    driver = _driver_pidfd()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    status_pipes: dict[int, int] = {}  # child pid -> write end of its status pipe
    listening = True
    while listening or status_pipes:
        watched = [wake_r] + ([control] if listening else []) + ([driver] if driver is not None else [])
        readable, _, _ = select.select(watched, [], [])
        if driver in readable:  # the driver died: its tasks end by their own watch of it
            return
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            _reap(status_pipes)
        if not listening or control not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, 2)
        except OSError:
            message, fds = b"", []
        if not message:  # the driver closed its end: no more tasks; report those running
            listening = False
            _reap(status_pipes)  # a child that ended before the close was seen
            continue
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        env, cwd = pickle.loads(message)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            control.close()
            for fd in (wake_r, wake_w, status_r, status_w, *status_pipes.values()):
                os.close(fd)
            if driver is not None:
                os.close(driver)
            _child(env, cwd, fds[0], fds[1])
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        status_pipes[pid] = status_w
        try:
            socket.send_fds(control, [str(pid).encode()], [pidfd, status_r])
        finally:
            os.close(pidfd)
            os.close(status_r)


def _reap(status_pipes: dict) -> None:
    from hpcfutures.worker.execute import end_session

    while True:
        try:
            # WNOWAIT: the child stays unreaped while what it left in its session is killed —
            # its pid names that session until it is reaped, never a newer one
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        end_session(info.si_pid)
        pid, status = os.waitpid(info.si_pid, 0)
        fd = status_pipes.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, str(status).encode())
            except OSError:
                pass
            os.close(fd)


def main(argv: list) -> int:
    """``python -m hpcfutures.worker.forkserver FD``: serve the control socket
    inherited as descriptor ``argv[1]``.

    Returns:
        0 once the driver is gone.
    """
    control = socket.socket(fileno=int(argv[1]))
    serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
