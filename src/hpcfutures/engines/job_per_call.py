"""The engine of the queued-job executors: each task one job, tracked by its cache entry.

A task's input is written into its entry (status ``queued``, with the job id) before the
job is submitted; the job writes its output into the same entry. One poller thread per
executor watches the entries (a ``stat`` each, re-read only when one changed) every
``interval`` and asks the queue about *all* its jobs in one query every
``query_interval``: a job that ended without writing a result — refused, cancelled, over
its time limit, killed — fails its future with the job id and final state. A later run
with the same cache directory finds queued entries and follows their jobs instead of
submitting them again.

A job still pending whose reason says SLURM will never start it (``PartitionConfig``,
``PartitionNodeLimit``, ...; ``launch.slurm_reasons``) is cancelled at the query that
sees it, and its future fails with ``UnsatisfiableRequestError``. With ``guard`` (an
executor whose ``wait`` is True) every job is registered with the driver's guardian
(``launch.guardian``) while it is live, so a driver killed before its shutdown cancels
its jobs; ``wait=False`` executors leave their jobs unregistered: they are meant to
outlive the driver.
"""

from __future__ import annotations

import os
import threading
import time

from hpcfutures.cache.entry import EntryReader, Status, make_header, mark_job_ended, read_job_record, remove_job_record, write_entry, write_job_record
from hpcfutures.cache.store import queued_job
from hpcfutures.batch.queues import JobSpec, file_task_command
from hpcfutures.scheduling.job_states import JobState, translate
from hpcfutures.errors import UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.launch.guardian import guardian
from hpcfutures.launch.slurm_reasons import explain, never_starts
from hpcfutures.engines.interface import EngineDefaults
from hpcfutures.engines.outcome import settle, stopped_by_shutdown
from hpcfutures.logs import get_logger
from hpcfutures.scheduling.task import Task
from hpcfutures.worker.directory import make_working_directory


_log = get_logger("cluster")


class JobEngine(EngineDefaults):
    """The engine of one queued-job executor: submits each task as a job of ``queue`` and
    completes its future from the job's cache entry (see the module docstring).

    Args:
        queue: a ``batch.queues.Queue`` (``submit(JobSpec)``, ``states`` in ``JobState``,
            ``cancel``; optionally ``forget`` and ``close``).
        interval: seconds between two looks at the entries of live jobs.
        query_interval: seconds between two queue queries (one for all jobs).
        guard: register live jobs with the driver's guardian (``queue.guard_kind``).
        log_obj_size: log the bytes of each job's input and output.
    """

    max_workers = None  # the queue decides how many run at once

    def __init__(self, queue, interval: float = 0.1, query_interval: float = 1.0, guard: bool = False, log_obj_size: bool = False):
        self.queue = queue
        self._guard_kind = getattr(queue, "guard_kind", None) if guard else None
        self.log_obj_size = log_obj_size
        self.supports_dependencies = queue.supports_dependencies
        self.interval = interval
        self.query_interval = query_interval
        self.queries = 0  # queue queries made: the benchmark reports it
        self._cond = threading.Condition()
        self._jobs: dict[str, Task] = {}  # job id -> task
        self._mtime: dict[str, float] = {}
        self._paths: dict[str, str] = {}  # job id -> its entry
        self._state: dict[str, JobState] = {}
        self._by_future: dict = {}  # future -> (job id, entry path), while the job is pending
        self._poller: threading.Thread | None = None
        self._adopted: dict[str, list] = {}  # job id from an earlier run -> its dependencies
        self._renamed: dict[str, str] = {}  # an earlier run's job id -> the job that runs it again
        self._adopt_lock = threading.RLock()  # an adopted job is checked (and resubmitted) by one thread
        self._query_soon = False
        self._stopping = False

    # -- submitting -----------------------------------------------------------------
    def enqueue(self, task: Task, after: list | None = None) -> None:
        """Submit the task as one batch job (or follow the job an earlier run recorded in
        its entry); its future ends when the poller sees the entry written or the job gone.

        Args:
            task: a task with a cache entry (``task.cache``: store and key).
            after: the job ids of upstream tasks this job waits for (the queue's dependency,
                e.g. ``--dependency=afterok``).
        """
        store, key = task.cache
        path = store.path(key)
        try:
            adopted = self._adopt(task, path, after or [])
            if not adopted:
                self._submit(task, key, path, self._current(after or []))
        except BaseException as exc:  # refused by the scheduler, no sbatch, ...
            task.cache = None
            if task.start():
                settle(task, exc)

    def _adopt(self, task: Task, path: str, after: list) -> bool:
        """Follow the job an earlier run recorded in this entry. Whether it still runs is
        learnt from the poller's next query (one for all adopted jobs, asked at once): one
        that ended without a result is then submitted again."""
        record = queued_job(path)
        if record is None:
            return False
        job = record["job_id"]
        _log.info("job %s of an earlier run followed for %s()", job, task.name)
        with self._cond:
            self._adopted[job] = after
            self._query_soon = True
        self._track(task, job, path)
        return True

    def _submit(self, task: Task, key: str, path: str, after: list) -> None:
        res = task.resources
        header = make_header(key, Status.QUEUED, function=task.name, resource_dict=res)
        if res.get("cwd") is not None:
            # made here, where submit() checked it (the driver and its jobs share file systems,
            # as they share the cache directory); the job enters it itself (header "cwd"), since
            # SLURM runs a job whose --chdir fails in /tmp instead
            cwd = header["cwd"] = make_working_directory(res["cwd"])
        else:
            cwd = os.path.dirname(path)
        write_entry(path, header, task.payload, b"")
        name = "hpcf-" + os.path.basename(key)[:40]
        command = file_task_command(path, res.get("cores", 1))
        spec = JobSpec(command=command, name=name, cwd=cwd, resources=res, dependencies=list(after), extra=_extra(res), log=path + ".log")
        job = self.queue.submit(spec)
        # beside the entry, not in it: the job may have written its result already
        write_job_record(path, job, getattr(self.queue, "kind", None))
        if self.log_obj_size:
            _log_size(job, "input", len(task.payload))
        _log.info("job %s submitted for %s()%s", job, task.name, f" after {','.join(map(str, after))}" if after else "")
        self._track(task, job, path)
        return job

    def _current(self, after: list) -> list:
        """The current job ids of the upstream jobs ``after``: an earlier run's job that is
        followed but not checked yet is checked now (and submitted again if it ended without
        a result), so a dependency never names a job that was replaced (F03)."""
        with self._adopt_lock:
            unchecked = [job for job in after if job in self._adopted]
            if unchecked:
                try:
                    states = self.queue.states(unchecked)
                except Exception:  # the poller checks them at its next query
                    states = {}
                for job in unchecked:
                    state = states.get(job)
                    if state is None:
                        continue
                    if not isinstance(state, JobState):
                        state = translate({s.value: s for s in JobState}, state)
                    self._check_adopted(job, state)
            current = []
            for job in after:
                while job in self._renamed:
                    job = self._renamed[job]
                current.append(job)
            return current

    def _check_adopted(self, job: str, state: JobState) -> None:
        """An earlier run's job in ``state``: still on (followed as it is), over with its
        result (finished), or over without one (submitted again, under a new id)."""
        with self._adopt_lock:
            after = self._adopted.pop(job, None)
            task = self._jobs.get(job)
            if after is None or task is None or not state.ended:
                return
            self._mtime.pop(job, None)
            if self._check_entry(job, task):
                return
            self._resubmit(job, task, after)

    def _track(self, task: Task, job: str, path: str) -> None:
        if not task.start():
            self.queue.cancel([job])
            return
        self._guard(job, True)
        task.worker = f"job {job}"
        with self._cond:
            self._jobs[job] = task
            self._paths[job] = path
            self._by_future[task.future] = (job, path)
            self._state[job] = JobState.PENDING
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="hpcfutures-job-poller", daemon=True)
                self._poller.start()
            self._cond.notify_all()

    def _guard(self, job: str, live: bool) -> None:
        kind = self._guard_kind
        if kind == "job":
            (guardian().add_job if live else guardian().remove_job)(job)
        elif kind == "flux":
            (guardian().add_flux_job if live else guardian().remove_flux_job)(job)
        elif kind == "process" and job.isdigit():
            (guardian().add_process if live else guardian().remove_process)(int(job))

    def still_queued(self, task: Task) -> bool:
        """Whether the task's job waits in the queue (for the task overview)."""
        known = self._by_future.get(task.future)
        return known is not None and self._state.get(known[0]) is JobState.PENDING

    def pending(self, future) -> tuple | None:
        """(job id, entry path) of a future whose job has not finished; None otherwise."""
        return self._by_future.get(future)

    def abandon(self, future, error) -> bool:
        """An upstream failed: cancel this future's job and end it with ``error`` (None:
        cancelled). False when no job of it is tracked (not submitted yet, or over).

        Args:
            future: the downstream task's future.
            error: what it ends with; ``None``: it is cancelled.
        """
        known = self._by_future.get(future)
        if known is None:
            return False
        job = known[0]
        self.queue.cancel([job])
        task = self._jobs.get(job)
        if task is not None:
            self._finish(job, task, error if error is not None else stopped_by_shutdown())
        return True

    # -- watching ---------------------------------------------------------------------
    def _poll(self) -> None:
        last_query = 0.0
        while True:
            with self._cond:
                if not self._jobs:
                    if self._stopping:
                        self._poller = None
                        break
                    self._cond.wait()
                    continue
                jobs = dict(self._jobs)
            try:
                for job, task in jobs.items():
                    self._check_entry(job, task)
                now = time.monotonic()
                if now - last_query >= self.query_interval or self._query_soon:
                    last_query = now
                    self._query_soon = False
                    self._check_queue()
            except Exception as exc:  # the poller must outlive any one bad entry or query
                import warnings

                warnings.warn(f"hpcfutures job poller: {type(exc).__name__}: {exc}", stacklevel=1)
            with self._cond:
                self._cond.wait(self.interval)
        close = getattr(self.queue, "close", None)
        if close is not None:  # stopped with no job left: release what the queue holds
            close()

    def _check_entry(self, job: str, task: Task) -> bool:
        path = self._paths.get(job)
        if path is None:  # finished meanwhile
            return True
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return False
        if self._mtime.get(job) == mtime:
            return False
        self._mtime[job] = mtime
        try:
            with EntryReader(path) as reader:
                status = Status.of(reader.header)
                if status is None or not status.finished:
                    return False
                reply = reader.output()
                if self.log_obj_size:
                    _log_size(job, "output", reader.header.get("output_size"))
        except (OSError, ValueError) as exc:
            reply = exc
        self._finish(job, task, reply)
        return True

    def _check_queue(self) -> None:
        with self._cond:
            jobs = list(self._jobs)
        if not jobs:
            return
        try:
            states = self.queue.states(jobs)
        except Exception:
            return  # a slow or failing squeue: ask again next interval
        self.queries += 1
        reasons = getattr(self.queue, "pending_reasons", {})
        for job, state in states.items():
            if not isinstance(state, JobState):  # a queue that answered in its own words: never a hang
                state = translate({s.value: s for s in JobState}, state)
            before = self._state.get(job)
            if before != state and before is not None:
                _log.info("job %s: %s -> %s", job, before, state)
            self._state[job] = state
            if job in self._adopted:  # an earlier run's job: followed, or submitted again
                self._check_adopted(job, state)
                continue
            task = self._jobs.get(job)
            if task is not None and state is JobState.PENDING and never_starts(reasons.get(job)):
                self.queue.cancel([job])
                request = f"job {job} of {task.name}() with resource_dict {_plain(task.resources)}"
                self._finish(job, task, UnsatisfiableRequestError(explain(reasons[job], request)))
                continue
            if task is None or not state.ended:
                continue
            self._mtime.pop(job, None)
            if self._check_entry(job, task):  # the result landed after all
                continue
            log = self._paths.get(job) if getattr(self.queue, "writes_log", True) else None
            if state is JobState.TIMEOUT:  # stopped at its time limit: one exception type for every queue
                limit = task.resources.get("run_time_max")
                crashed = TimeoutError(
                    f"the task {task.name}() ran longer than run_time_max={limit} s and was stopped "
                    f"({_ended_without_result(job, state, log)}); raise resource_dict['run_time_max']"
                )
            else:
                message = _ended_without_result(job, state, log)
                why = getattr(self.queue, "end_reasons", {}).get(job)
                if why:  # the scheduler's own reason (e.g. Flux's "alloc: unsatisfiable ...")
                    message = f"{message}\n{self.queue.kind} recorded on the job: {why}"
                crashed = WorkerCrashedError(message)
            _log.warning("%s", crashed)
            self._finish(job, task, crashed)

    def _resubmit(self, job: str, task: Task, after: list) -> None:
        path = self._paths.get(job)
        with self._cond:
            self._jobs.pop(job, None)
            self._paths.pop(job, None)
            self._by_future.pop(task.future, None)
            self._state.pop(job, None)
        self._guard(job, False)
        try:
            self._renamed[job] = self._submit(task, task.cache[1], path, self._current(after))
        except BaseException as exc:
            task.cache = None
            settle(task, exc)

    def _finish(self, job: str, task: Task, reply) -> None:
        with self._cond:
            if self._jobs.pop(job, None) is None:
                return
            self._adopted.pop(job, None)  # its result landed: the old id is the one to depend on
            self._guard(job, False)
            self._by_future.pop(task.future, None)
            path = self._paths.pop(job, None)
            self._mtime.pop(job, None)
            self._state.pop(job, None)
            self._cond.notify_all()
        if path is not None:  # the job is over: nothing to follow or cancel any more
            _record_end(path, job, getattr(self.queue, "kind", None), reply)
        forget = getattr(self.queue, "forget", None)
        if forget is not None:  # e.g. local processes, reaped once they end
            forget([job])
        task.cache = None  # the job wrote the entry itself
        settle(task, reply)

    # -- the engine interface ---------------------------------------------------------
    def queued(self) -> int:
        """Jobs the queue reports pending, as of the last query."""
        return sum(1 for state in list(self._state.values()) if state is JobState.PENDING)

    def resize(self, n: int) -> None:
        """The batch queue decides how many jobs run: nothing to change here."""
        pass

    def cancel_queued(self) -> None:
        """Cancel every job still pending in the queue (one cancel for all)."""
        pending = [job for job, state in list(self._state.items()) if state is JobState.PENDING]
        self._cancel(pending)

    def _cancel(self, jobs: list) -> None:
        if not jobs:
            return
        self.queue.cancel(jobs)
        for job in jobs:
            task = self._jobs.get(job)
            if task is not None:
                self._finish(job, task, stopped_by_shutdown())

    def stop(self, wait: bool) -> None:
        """Take no more tasks; ``wait=True`` returns once every tracked job has ended."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            if wait:
                while self._jobs:
                    self._cond.wait()

    def kill_all(self) -> None:
        """Cancel every tracked job (one cancel for all), then stop and wait for them to end."""
        self._cancel(list(self._jobs))
        self.stop(wait=True)


def _plain(resources: dict) -> dict:
    return {k: v for k, v in resources.items() if v is not None and not callable(v)}


def _extra(resources: dict) -> dict:
    from hpcfutures.scheduling.resources import KEYS

    return {k: v for k, v in resources.items() if k not in KEYS and k != "cache_directory"}


def _log_size(job: str, what: str, size) -> None:
    import logging

    logging.getLogger("hpcfutures").info("job %s: %s of %s bytes", job, what, size)


LOG_TAIL_LINES = 20


def _ended_without_result(job: str, state: JobState, entry_path: str | None) -> str:
    """The message of a job that ended without a result: its state, its log file and the
    log's last lines (where the job's own error usually is). ``entry_path``: the job's
    cache entry, whose log is beside it; None where the queue put the log elsewhere."""
    gone = " (the queue no longer knows it)" if state is JobState.UNKNOWN else ""
    message = f"job {job} ended in state {state}{gone} without writing a result"
    if entry_path is None:
        return f"{message}; its output is where the queue's job template sends it"
    log = entry_path + ".log"
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))  # the tail is enough; a log may be huge
            lines = f.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return f"{message}; its log file {log} could not be read"
    tail = "\n".join(lines).strip()
    if not tail:
        return f"{message}; its log file {log} is empty"
    return f"{message}; the last lines of its log file {log}:\n{tail}"


def _record_end(path: str, job: str, kind, reply) -> None:
    """The job of ``path`` is over: drop its job record where the entry holds the output;
    otherwise (cancelled, crashed, refused) mark it ended, so the entry reads ``cancelled``
    and a later run computes it again."""
    try:
        with EntryReader(path) as reader:
            finished = bool(Status.of(reader.header) and Status.of(reader.header).finished)
    except (OSError, ValueError):
        finished = False
    if finished:
        remove_job_record(path)
        return
    if (read_job_record(path) or {}).get("ended"):  # marked already (terminate_tasks_in_cache): its words stay
        return
    why = f"{type(reply).__name__}: {reply}" if isinstance(reply, BaseException) else "ended"
    try:
        mark_job_ended(path, job, kind, why.splitlines()[0][:300])
    except OSError:
        remove_job_record(path)
