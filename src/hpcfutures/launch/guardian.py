"""The guardian: what this driver started ends when the driver ends, SIGKILL included.

A worker watches its driver and exits when it dies; but a launcher that has not started
its worker yet (an ``srun`` waiting for its job to be scheduled, an ``mpiexec`` still
starting its ranks) and a batch job still in the queue have nobody watching. The
guardian is one small process per driver, started with the first such launch. The driver
tells it over a pipe (the guardian's stdin) which process groups, which SLURM jobs and
which Flux jobs are live ("+p PID", "-p PID", "+j JOB", "-j JOB", "+f JOB", "-f JOB").
When the driver ends — however it ends — the kernel closes the pipe's write end and the
guardian reads end-of-file: it sends SIGTERM to every registered group whose leader is
still alive (srun cancels its pending job on SIGTERM, mpiexec stops its ranks), SIGKILL
after a grace period, ``scancel`` for the registered SLURM jobs and ``flux cancel`` for
the registered Flux jobs (of the instance in the driver's ``FLUX_URI``, which the
guardian inherits), then exits.

Why a process, not ``prctl(PR_SET_PDEATHSIG)``: the death signal fires when the *thread*
that forked the child ends, not the process (our launches come from short-lived threads),
it cannot cancel a queued batch job, and it needs a pre-exec hook in the child that
``subprocess`` runs under a fork lock. Why not the process group or session: our
launchers run in sessions of their own, so a terminal's Ctrl-C reaches only the driver.
The guardian needs nothing but the standard library; it runs as ``python -I -S`` on this
file, importing nothing of the package. Each registered process is held as a pidfd, so a
pid reused after its process ended is never signalled.

Forked children (``multiprocessing`` with fork) inherit the pipe; the guardian then waits
until they end too.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading

GRACE = 3.0  # seconds between SIGTERM and SIGKILL


class Guardian:
    """Driver side: starts the guardian process on first use and tells it what is live.

    Every method is safe from any thread and never raises: if the guardian cannot be
    started or has died, launches go on unguarded (as they were before it existed).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd = -1
        self._owner = -1  # pid that started it: a forked child starts its own

    def _pipe(self) -> int:
        if self._pid is None or self._owner != os.getpid():
            read_end, write_end = os.pipe()  # close-on-exec: no launched process holds it
            try:
                # posix_spawn, not Popen: no Popen object to warn at exit that it still runs
                self._pid = os.posix_spawn(
                    sys.executable,
                    [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                    os.environ,
                    file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
                    setsid=True,  # Ctrl-C and the terminal's hangup reach the driver only
                )
            except OSError:
                os.close(write_end)
                raise
            finally:
                os.close(read_end)
            self._fd = write_end
            self._owner = os.getpid()
        return self._fd

    def _say(self, line: str) -> None:
        with self._lock:
            try:
                os.write(self._pipe(), (line + "\n").encode())
            except OSError:
                pass  # the guardian is gone or cannot start: nothing better to do than go on

    def add_process(self, pid: int) -> None:
        """Stop the process group led by ``pid`` when the driver ends."""
        self._say(f"+p {pid}")

    def remove_process(self, pid: int) -> None:
        """Forget the process group led by ``pid``: it ended and was reaped."""
        self._say(f"-p {pid}")

    def add_job(self, job: str) -> None:
        """``scancel`` SLURM job ``job`` when the driver ends."""
        self._say(f"+j {job}")

    def remove_job(self, job: str) -> None:
        """Forget SLURM job ``job``: it ended or was cancelled."""
        self._say(f"-j {job}")

    def add_flux_job(self, job: str) -> None:
        """``flux cancel`` Flux job ``job`` (of the driver's ``FLUX_URI``) when the driver ends."""
        self._say(f"+f {job}")

    def remove_flux_job(self, job: str) -> None:
        """Forget Flux job ``job``: it ended or was cancelled."""
        self._say(f"-f {job}")

    @property
    def pid(self) -> int | None:
        """The guardian process's pid (None before the first registration)."""
        return self._pid


_guardian = Guardian()


def guardian() -> Guardian:
    """The guardian of this driver process."""
    return _guardian


# -- the guardian process itself: standard library only --------------------------------
def _main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: dict[int, int] = {}  # pid -> pidfd
    jobs: set[str] = set()
    flux_jobs: set[str] = set()
    buffer = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            op, _, value = line.decode(errors="replace").strip().partition(" ")
            if op == "+p" and value.isdigit():
                try:
                    groups[int(value)] = os.pidfd_open(int(value))
                except OSError:
                    pass  # already gone
            elif op == "-p" and value.isdigit():
                fd = groups.pop(int(value), None)
                if fd is not None:
                    os.close(fd)
            elif op == "+j" and value:
                jobs.add(value)
            elif op == "-j":
                jobs.discard(value)
            elif op == "+f" and value:
                flux_jobs.add(value)
            elif op == "-f":
                flux_jobs.discard(value)
    # the driver has ended
    for argv, ids in ((["scancel"], jobs), (["flux", "cancel"], flux_jobs)):
        if not ids:
            continue
        try:
            subprocess.run([*argv, *sorted(ids)], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = {pid: fd for pid, fd in groups.items() if not select.select([fd], [], [], 0)[0]}
        for pid in alive:
            try:
                os.killpg(pid, sig)
            except OSError:
                pass
        if not alive:
            break
        if sig == signal.SIGTERM:
            pending = list(alive.values())
            import time

            deadline = time.monotonic() + GRACE
            while pending and time.monotonic() < deadline:
                ready, _, _ = select.select(pending, [], [], max(0.0, deadline - time.monotonic()))
                pending = [fd for fd in pending if fd not in ready]
            groups = alive


if __name__ == "__main__":
    _main()
