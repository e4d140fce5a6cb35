"""The handle on a worker that is a local process (a python worker, or ``mpiexec``/``srun``
running workers): start it, notice its end at once, stop it and everything it started.
``LocalProcessHandle`` implements ``launch.handle.WorkerHandle``; the launchers
(``launch.local``, ``launch.srun``) create it, nothing above ``launch/`` does.

Death is an event here, not a timer: each process gets a pidfd (Linux >= 5.3), which
becomes readable the moment the process ends, and the driver waits on it together with
the reply channel. Each worker runs in its own session, so a terminal's Ctrl-C reaches the
driver only (which then stops the workers), and everything left in that session when the
worker ends — processes its tasks started, ``mpiexec``'s ranks (Open MPI puts each rank in
a process group of its own, but in the session) — is killed before the worker is reaped.
Reaping last matters: until then the worker's pid, which names the session, cannot be
given to another process. The worker's stderr is shown as it comes; the lines in which a
failing MPI rank reports its error before it aborts the job (``wire.replies``) are taken
out of it and kept in ``reports``.

A launcher (``srun``, ``mpiexec``: anything but the interpreter itself) is registered with
the driver's guardian (``launch.guardian``), which stops it if the driver dies before the
worker inside has started to watch the driver itself. An ``srun`` that reports on stderr
that its job is queued has that job watched (``launch.pending``): a job SLURM will never
start is cancelled, and the process's end is reported as ``UnsatisfiableRequestError``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from hpcfutures.errors import UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.launch.guardian import guardian
from hpcfutures.launch.handle import INHERIT_FDS, MAY_QUEUE, WorkerHandle, exit_words, with_stderr_tail
from hpcfutures.launch.rank_reports import RankReportFilter
from hpcfutures.launch.spawn import run_command, spawn
from hpcfutures.wire.frames import DRIVER_PID_ENV, KEY_ENV, KEY_FD_ENV, KEY_FILE_ENV, SYS_PATH_ENV
from hpcfutures.worker.execute import end_session

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Mapping, Sequence

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
STDERR_TAIL = 8192
# what srun (outside an allocation) prints when its job has to wait, and when it starts
_SRUN_QUEUED = re.compile(rb"srun: job (\d+) queued and waiting for resources")
_SRUN_ALLOCATED = re.compile(rb"srun: job (\d+) has been allocated resources")
SRUN_GRACE = 3.0  # seconds an srun asked to stop (SIGTERM) gets before SIGKILL


def worker_environment(key: bytes, threads_per_core: int, extra: Mapping[str, str] | None = None) -> dict:
    """The environment of a worker: the driver's, the secret key (never on the command
    line; ``WorkerProcess`` moves it to a pipe or a 0600 file where the launcher allows),
    and the thread count for every common threading runtime.

    Args:
        key: the links' key, put in ``KEY_ENV`` as hex.
        threads_per_core: threads each rank may use, written to every variable of
            ``THREAD_VARIABLES`` (``OMP_NUM_THREADS``, ...).
        extra: variables set last, over the rest (the GPUs assigned, ``CUDA_VISIBLE_DEVICES``).

    Returns:
        A new dict: the driver's environment with these set.
    """
    env = dict(os.environ)
    env[KEY_ENV] = key.hex()
    env[DRIVER_PID_ENV] = f"{os.getpid()}@{os.uname().nodename}"  # a pid means nothing on another node
    env[SYS_PATH_ENV] = os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str))
    for name in THREAD_VARIABLES:
        env[name] = str(threads_per_core)
    if extra:
        env.update(extra)
    return env


def python_command(module: str, *args: str) -> list[str]:
    """The command that runs a worker entry point's ``main(sys.argv)`` with this interpreter:
    what ``python -m module args...`` does, without ``runpy``.

    ``-m`` imports ``runpy`` and with it ``importlib.util``, ``contextlib`` and
    ``collections`` (~5-8 ms of every fresh worker and every srun task here, issue 15); the
    entry point is imported by ``-c`` instead. As with ``-m``, the working directory at start
    is ``sys.path[0]`` (``-c`` puts ``''`` there, which would follow a later ``chdir``; with
    ``PYTHONSAFEPATH`` neither adds an entry) and
    ``sys.argv[0]`` is the entry point's file.

    Args:
        module: the entry point's module (it defines ``main(argv) -> int``).
        *args: its arguments (``sys.argv[1:]`` there).

    Returns:
        The argv list.
    """
    # sys.argv[0] the entry point's file, as ``-m`` sets it (``-c`` would leave "-c")
    bootstrap = (
        f"import sys, os; sys.path[0] = sys.path[0] or os.getcwd(); import {module} as entry; "
        "sys.argv[0] = entry.__file__; sys.exit(entry.main(sys.argv))"
    )
    return [sys.executable, "-c", bootstrap, *args]


class LocalProcessHandle(WorkerHandle):
    """One launched process (a python worker, or ``mpiexec``/``srun`` running workers);
    a ``WorkerHandle`` whose ``ended_fd`` is the process's pidfd.

    Args:
        argv: the command line.
        env: its environment.
        cwd: its working directory (None: the driver's).
        pass_fds: descriptors it inherits.
        stdin: descriptor for its stdin (None: /dev/null).
        stdout: descriptor for its stdout (None: the driver's).
        guard: stop it when the driver dies (``launch.guardian``); None: for launchers,
            that is for every command but the running interpreter, whose workers watch
            the driver themselves.

    Attributes:
        pid: the process id (it names the process's session, too).
        pidfd: the pidfd (``ended_fd``); -1 once closed.
        stderr_fd: the non-blocking stderr pipe (``pump_stderr``).
        label: ``"pid N"``.
        capabilities: ``INHERIT_FDS`` for a python worker started directly, ``MAY_QUEUE``
            for srun.
        job: the SLURM job srun said it waits for (None: none, or started).

    Raises:
        FileNotFoundError: the command does not exist.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None = None,
        pass_fds: Sequence[int] = (),
        stdin: int | None = None,
        stdout: int | None = None,
        guard: bool | None = None,
    ):
        self.argv = list(argv)
        self.job: str | None = None  # a SLURM job srun said it waits for
        self.refusal: str | None = None  # the pending reason of a job that will never start
        self._cancelled_job: str | None = None  # the job we scancelled (once is enough)
        self._fd_lock = threading.Lock()  # pidfd closed vs. a late SIGKILL sent through it
        self._escalation: threading.Timer | None = None
        self._srun = os.path.basename(self.argv[0]) == "srun" if self.argv else False
        self._line = bytearray()
        env = dict(env)
        key_fd = -1
        self._key_dir: str | None = None
        launcher = os.path.basename(self.argv[0]) if self.argv else ""
        if env.get(KEY_ENV) and self.argv[0] == sys.executable:
            # a Python worker we start ourselves reads the key from a pipe, so it never shows
            # in its /proc/PID/environ
            key_fd, key_w = os.pipe()
            try:
                os.write(key_w, env.pop(KEY_ENV).encode())  # 64 bytes: a pipe takes them at once
            finally:
                os.close(key_w)
            env[KEY_FD_ENV] = str(key_fd)
            pass_fds = (*pass_fds, key_fd)
        elif env.get(KEY_ENV) and launcher in ("mpiexec", "mpirun"):
            # a local mpiexec passes on the environment, not descriptors: a 0600 file in a
            # fresh 0700 directory, deleted by rank 0 as it reads it (srun: see docs/security.md)
            self._key_dir = tempfile.mkdtemp(prefix="hpcf-key-")
            path = os.path.join(self._key_dir, "key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, env.pop(KEY_ENV).encode())
            finally:
                os.close(fd)
            env[KEY_FILE_ENV] = path
        try:
            self.popen = spawn(
                self.argv,
                env=env,
                cwd=cwd,
                pass_fds=tuple(pass_fds),
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except BaseException as exc:
            if self._key_dir is not None:
                shutil.rmtree(self._key_dir, ignore_errors=True)
            if isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(f"cannot start worker: {exc.filename!r} not found ({' '.join(self.argv)})") from exc
            raise
        finally:
            if key_fd >= 0:
                os.close(key_fd)
        self.pid = self.popen.pid
        self._guarded = (self.argv[0] != sys.executable) if guard is None else guard
        if self._guarded:
            guardian().add_process(self.pid)
        # Open MPI's mpiexec keeps its session files in <tmp>/ompi.<its pid>; killed, it
        # leaves them, and a later mpiexec that gets the same pid fails to start ("The PMIx
        # server's listener thread failed to start"): removed before the pid is reaped
        self._mpi_tmp = os.path.join(tempfile.gettempdir(), f"ompi.{self.pid}") if launcher in ("mpiexec", "mpirun") else None
        self.pidfd = os.pidfd_open(self.pid)
        self.label = f"pid {self.pid}"
        # pass_fds reach the worker only when it is the child itself (not mpiexec's ranks,
        # not srun's tasks); an srun's job may wait in SLURM's queue
        self.capabilities = frozenset(
            ({INHERIT_FDS} if self.argv[0] == sys.executable else set()) | ({MAY_QUEUE} if self._srun else set())
        )
        self.stderr_fd = self.popen.stderr.fileno()
        os.set_blocking(self.stderr_fd, False)
        self._tail = bytearray()
        self._reports = RankReportFilter()  # failing ranks' sealed reports, out of the stream
        self._stderr_open = True

    @property
    def ended_fd(self) -> int:
        """The pidfd: readable once the process has ended (-1 once closed)."""
        return self.pidfd

    def take_reports(self) -> list[bytes]:
        """The complete rank reports read from stderr so far (taken: a second call
        returns only newer ones)."""
        return self._reports.take()

    @property
    def reports(self) -> list[bytes]:
        """The complete rank reports read so far and not yet taken (hex envelopes)."""
        return self._reports.reports

    # -- stderr: shown to the user as it comes, its tail kept for error messages --------
    def pump_stderr(self) -> None:
        """Drain the stderr pipe without blocking: show it on the driver's stderr, keep its
        tail, take rank reports out (see ``WorkerHandle.pump_stderr``)."""
        while self._stderr_open:
            try:
                chunk = os.read(self.stderr_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._stderr_open = False
                self._show(self._reports.flush())
                return
            self._show(self._reports.feed(chunk))

    def _show(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._tail += chunk
        del self._tail[:-STDERR_TAIL]
        if self._srun:
            self._watch_srun(chunk)
        try:
            sys.stderr.write(chunk.decode(errors="replace"))
        except Exception:
            pass

    # -- srun's own messages: its job queued, or started -------------------------------
    def _watch_srun(self, chunk: bytes) -> None:
        self._line += chunk
        *lines, rest = bytes(self._line).split(b"\n")
        self._line = bytearray(rest[-4096:])
        for line in lines:
            queued = _SRUN_QUEUED.search(line)
            if queued and self.job is None:
                from hpcfutures.launch.pending import pending_jobs

                job = self.job = queued.group(1).decode()
                guardian().add_job(job)
                pending_jobs().watch(job, lambda reason: self._never_starts(job, reason))
            elif _SRUN_ALLOCATED.search(line) and self.job is not None:
                self._forget_job()

    def _forget_job(self) -> None:
        if self.job is None:
            return
        from hpcfutures.launch.pending import pending_jobs

        pending_jobs().forget(self.job)
        guardian().remove_job(self.job)
        self.job = None

    def _never_starts(self, job: str, reason: str) -> None:
        """Called by the pending-job watch: cancel the job; srun then ends, and whoever
        waits on this process learns why from ``exit_error``."""
        self.refusal = reason
        self._cancel_job(job)
        if self.pidfd >= 0 and self.popen.returncode is None:  # not reaped: the pid is still srun's
            self.kill_group(signal.SIGTERM)  # srun revokes its request on SIGTERM too

    def _cancel_job(self, job: str | None) -> None:
        """``scancel`` the job srun said it waits for: an srun that is killed (SIGKILL) or
        abandoned leaves its queued job behind, to start later with no driver."""
        if job is None or self._cancelled_job == job:
            return
        self._cancelled_job = job
        try:
            run_command(["scancel", job], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass  # the guardian still holds the job and cancels it when the driver ends

    def request(self) -> str:
        """The launcher part of the command line (what was asked of the scheduler)."""
        head = []
        for arg in self.argv:
            if arg == sys.executable:
                break
            head.append(arg)
        return " ".join(head or self.argv)

    def exit_error(self) -> BaseException:
        """The exception for a future whose process ended without a reply:
        ``UnsatisfiableRequestError`` when SLURM refused the request (a pending reason of the
        *never* class, or srun's own refusal on its stderr: a step larger than the
        allocation, GPUs the cluster does not have, ...), otherwise ``WorkerCrashedError``."""
        if self.refusal is not None:
            from hpcfutures.launch.slurm_reasons import explain

            self.wait_exit(5.0)
            return UnsatisfiableRequestError(explain(self.refusal, self.request()))
        text = self.describe_exit()
        if self._srun:
            from hpcfutures.launch.slurm_reasons import explain_refusal, srun_refusal

            refused = srun_refusal(self.stderr_tail())
            if refused is not None:
                return UnsatisfiableRequestError(explain_refusal(refused, self.request()))
        return WorkerCrashedError(text)

    @property
    def is_srun(self) -> bool:
        """Whether the launcher is ``srun`` (its job may wait in SLURM's queue)."""
        return self._srun

    @property
    def stderr_open(self) -> bool:
        """Whether the stderr pipe may still carry data."""
        return self._stderr_open

    def stderr_tail(self) -> str:
        """The last ``STDERR_TAIL`` bytes of stderr (reports taken out), decoded, stripped."""
        return self._tail.decode(errors="replace").strip()

    # -- end of life ------------------------------------------------------------------
    def _poll(self):
        """``Popen.poll``, but what the process left in its session dies before it is reaped."""
        if self.popen.returncode is None and self.pidfd >= 0 and _ended(self.pidfd):
            end_session(self.pid)
            if self._mpi_tmp is not None:  # our pid still names it: no one else's
                shutil.rmtree(self._mpi_tmp, ignore_errors=True)
        return self.popen.poll()

    def ended(self) -> bool:
        """Whether the process has ended (it is reaped then); never blocks."""
        return self._poll() is not None

    exited = ended  # the older name

    def describe_exit(self) -> str:
        """How the process ended ("exited with code 3", "killed by signal SIGKILL") and the
        tail of its stderr; waits for its end."""
        if self.popen.returncode is None and self.pidfd >= 0:
            _ended(self.pidfd, None)
        code = self._poll()
        if code is None:
            code = self.popen.wait()
        self.pump_stderr()
        text = f"worker process {self.pid} ({os.path.basename(self.argv[0])}) {exit_words(code)}"
        return with_stderr_tail(text, self.stderr_tail())

    def wait_ended(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the end; True once ended."""
        import select

        if self._poll() is not None:
            return True
        if self.pidfd < 0:
            try:
                self.popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        ready, _, _ = select.select([self.pidfd], [], [], timeout)
        return bool(ready) and self._poll() is not None

    def terminate(self, grace: float = 1.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self._poll() is not None:
                break
            try:
                os.killpg(self.pid, sig)
                if sig == signal.SIGTERM:  # a stopped (SIGSTOP) process gets it only once it runs
                    os.killpg(self.pid, signal.SIGCONT)
            except (ProcessLookupError, PermissionError):
                pass
            if self.wait_exit(wait):
                break
        # ranks or children that outlived their leader are still in its session
        if self.popen.returncode is None:
            end_session(self.pid)

    wait_exit = wait_ended  # the older name

    def kill(self) -> None:
        """SIGKILL to the process and everything in its session (an srun: SIGTERM first, see
        ``kill_group``). Safe from any thread."""
        self.kill_group(signal.SIGKILL)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """``sig`` to the process and its group; with SIGKILL, also everything in its session
        (``mpiexec`` and its ranks, what its tasks started). Safe from any thread: it only
        sends signals, the owner still reaps and closes (and until then the pid cannot name
        another session). SIGTERM leaves the session alone: srun must get to revoke its job.

        An ``srun`` is never SIGKILLed first: killed, it leaves its queued job in the queue
        (and a job it submitted a moment ago, whose number it has not printed yet, would be
        lost to us). It gets SIGTERM — it revokes a pending request, or stops its tasks —
        after its known queued job is cancelled, and SIGKILL only if it is still alive
        ``SRUN_GRACE`` seconds later."""
        if self._srun and sig == signal.SIGKILL:
            self._stop_srun()
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if sig == signal.SIGKILL and self.popen.returncode is None:
            end_session(self.pid)

    def _stop_srun(self) -> None:
        self._cancel_job(self.job)
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        with self._fd_lock:
            if self._escalation is None and self.pidfd >= 0:
                timer = threading.Timer(SRUN_GRACE, self._kill_if_alive)
                timer.daemon = True
                try:
                    timer.start()
                    self._escalation = timer
                except RuntimeError:  # no thread to spare: SIGTERM alone must do (srun heeds it)
                    pass

    def _kill_if_alive(self) -> None:
        with self._fd_lock:  # through the pidfd: never another process, even once this one is reaped
            if self.pidfd >= 0 and not _ended(self.pidfd):
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except OSError:
                    pass

    def close(self) -> None:
        """Release the process (after it ended, or to abandon it). A "job N queued" line srun
        wrote before it ended is read first: a job still queued is cancelled, never left to
        start later with nobody waiting for it."""
        if self.pidfd >= 0:
            self.pump_stderr()
        if self.job is not None:
            self._cancel_job(self.job)
        self._forget_job()
        if self._guarded:
            self._guarded = False
            guardian().remove_process(self.pid)
        if self._key_dir is not None:  # rank 0 deleted the key already, unless it never started
            shutil.rmtree(self._key_dir, ignore_errors=True)
            self._key_dir = None
        if self.pidfd >= 0:
            if self._poll() is not None:
                self.pump_stderr()
            with self._fd_lock:
                if self._escalation is not None:
                    self._escalation.cancel()
                os.close(self.pidfd)
                self.pidfd = -1
            self.popen.stderr.close()


WorkerProcess = LocalProcessHandle  # the older name (``hpcfutures.api`` exports it)


def _ended(pidfd: int, timeout: float | None = 0) -> bool:
    """Whether the process behind ``pidfd`` has ended (without reaping it)."""
    import select

    return bool(select.select([pidfd], [], [], timeout)[0])
