"""Watch queued SLURM jobs that our launches wait for, and give up on the hopeless ones.

An ``srun`` outside an allocation asks for a job of its own; when that job cannot start
at once, srun says so on stderr ("job N queued and waiting for resources") and waits.
The launch (``WorkerProcess``) hands the job id to the one ``PendingJobs`` of this
process. SLURM offers no event for "this job will never start", so its thread asks the
queue about *all* watched jobs in one ``squeue`` per interval — and only while at least
one job is watched; with none it waits on a condition variable, and ends after two idle
seconds. A job whose reason is of
the *never* class (``slurm_reasons.never_starts``) is reported to its launch, which
cancels it and fails what waited for it.
"""

from __future__ import annotations

import subprocess
import threading
import time

from hpcfutures.launch.slurm_reasons import never_starts
from hpcfutures.launch.spawn import run_command
from hpcfutures.scheduling.job_states import SLURM_STATES, JobState, translate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def query_reasons(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{job: (state, reason)}`` for the given jobs, in one ``squeue`` call; a job the
    queue no longer knows is left out.

    Args:
        job_ids: SLURM job ids.

    Returns:
        Job id -> (SLURM state word, pending reason).

    Raises:
        OSError: squeue cannot be run.
        subprocess.SubprocessError: the controller does not answer (or squeue times out
            after 60 seconds).
    """
    out = run_command(
        ["squeue", "-h", "--states=all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 and "Invalid job id" not in out.stderr:  # the controller did not answer
        raise subprocess.SubprocessError(f"squeue failed: {out.stderr.strip()}")
    found = {}
    for line in out.stdout.splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3:
            found[parts[0].strip()] = (parts[1].strip(), parts[2].strip())
    return found


class PendingJobs:
    """The pending jobs of this process's launches, asked about together.

    Args:
        interval: seconds between two queries while jobs are watched.
    """

    _IDLE_EXIT = 2.0  # seconds the thread waits for a new job before it ends

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.queries = 0  # squeue calls made (tests and benchmarks read it)
        self._cond = threading.Condition()
        self._jobs: dict[str, Callable[[str], None]] = {}
        self._thread: threading.Thread | None = None

    def watch(self, job: str, on_never: Callable[[str], None]) -> None:
        """Watch ``job`` until it leaves the pending state; call ``on_never(reason)`` (from
        the watch thread, once) if its reason says it will never start.

        Args:
            job: the SLURM job id.
            on_never: called with the explanation when SLURM will never start it.
        """
        with self._cond:
            self._jobs[job] = on_never
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hpcfutures-pending-jobs", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def forget(self, job: str) -> None:
        """Stop watching ``job`` (it started, or its launch ended)."""
        with self._cond:
            self._jobs.pop(job, None)

    def watched(self) -> list[str]:
        """The ids of the jobs being watched now."""
        with self._cond:
            return list(self._jobs)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    # idle: end after a moment rather than live as long as the process
                    # (watch() starts a new thread for the next job)
                    if not self._cond.wait(self._IDLE_EXIT) and not self._jobs:
                        self._thread = None
                        return
                jobs = list(self._jobs)
            try:
                found = query_reasons(jobs)
                self.queries += 1
            except (OSError, subprocess.SubprocessError):
                found = None  # squeue slow or missing: ask again next interval
            if found is not None:
                for job in jobs:
                    word, reason = found.get(job, (None, ""))  # None: squeue forgot it (UNKNOWN)
                    state = translate(SLURM_STATES, word)
                    if state is JobState.PENDING and not never_starts(reason):
                        continue
                    with self._cond:
                        on_never = self._jobs.pop(job, None)
                    if on_never is not None and state is JobState.PENDING:
                        try:
                            on_never(reason)
                        except Exception:
                            pass  # one launch's trouble must not stop the watch of the others
            deadline = time.monotonic() + self.interval
            with self._cond:
                # one query per interval at most, however many jobs come and go meanwhile
                while self._jobs and time.monotonic() < deadline:
                    self._cond.wait(max(0.0, deadline - time.monotonic()))


_shared: PendingJobs | None = None
_shared_lock = threading.Lock()


def pending_jobs() -> PendingJobs:
    """The one watch of this process (one squeue per interval for all its executors)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PendingJobs()
        return _shared
