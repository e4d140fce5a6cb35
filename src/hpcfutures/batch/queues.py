"""The queues a job reaches, behind one small interface, speaking neutral job states.

- ``SlurmQueue``: ``sbatch``/``squeue``/``scancel`` directly, with a built-in job script
  that works on a stock SLURM with no configuration (no empty ``--partition=``).
- ``PysqaQueue``: through a pysqa ``QueueAdapter`` (``pysqa_config_directory``), for sites
  whose queues and templates users already configured for executorlib.
- ``LocalQueue``: local processes instead of jobs (``TestClusterExecutor``).
- ``FluxQueue`` (``batch/flux_queue.py``): Flux batch jobs (``FluxClusterExecutor``).

The interface (``Queue``): ``submit(spec)`` takes one ``JobSpec`` (command, job name,
working directory, resources, dependencies, extra scheduler options, log file) and returns
a job id or raises ``QueueError`` with the scheduler's own message; ``states(ids)`` asks
about many jobs in one query and answers in ``JobState`` (pending, running, completed,
failed, cancelled, timeout, unknown), translated from the queue's own words by one table
per queue; ``cancel(ids)`` ends jobs. The engine (``engines.job_per_call``) knows nothing else.

How to add a queue (``batch/flux_queue.py`` is the latest example):

1. Write a class with the attributes and methods of ``Queue``: a unique ``kind`` (it is
   recorded in every cache entry the queue's jobs write, so ``terminate_tasks_in_cache``
   can ask the same queue later), ``submit``, ``states``, ``cancel``.
2. Give it a translation table from its own state words to ``JobState`` and answer
   ``states`` through ``translate(table, word)``; a word missing from the table becomes
   ``JobState.UNKNOWN``, which the engine treats as ended (a job no query can follow).
3. Register a constructor in ``QUEUES`` (``kind`` -> factory taking the keyword arguments
   of ``make_queue``) so ``batch.terminate`` finds it, and build it in the executor
   (``executors/cluster_jobs.py``) that uses it.

What a job's resources become (the ``#SBATCH`` lines, the srun step of its ranks, template
variables, pysqa's arguments) is rendered in ``scheduling.render``, beside srun's and
mpiexec's flags.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

from hpcfutures.launch.spawn import run_command, spawn
from hpcfutures.scheduling.job_states import PYSQA_STATES, SLURM_STATES, JobState, translate
from hpcfutures.scheduling.render import job_step_args, raised_priority_remedy, sbatch_lines, template_variables
from hpcfutures.scheduling.resources import Resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Protocol
else:
    Protocol = object


@dataclass
class JobSpec:
    """Everything a queue needs to submit one job.

    Attributes:
        command: the argv the job runs (for ``cores > 1`` the queue wraps it in its MPI
            launcher: ``srun`` in a SLURM job, ``mpiexec`` for local processes).
        name: the job name shown by the scheduler.
        cwd: the directory the job starts in.
        resources: the call's ``resource_dict`` (``cores`` = MPI ranks, ``threads_per_core``
            = cores per rank, ``run_time_max`` in seconds, ...).
        dependencies: job ids that must complete successfully before this one starts.
        extra: scheduler options outside the resource keys (``partition``, ``account``, ...).
        log: the file the job's stdout and stderr go to (where the queue decides that).
    """

    command: list
    name: str
    cwd: str
    resources: dict = field(default_factory=dict)
    dependencies: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    log: str = os.devnull


class Queue(Protocol):
    """What the engine asks of a queue (implemented by ``SlurmQueue``, ``PysqaQueue``,
    ``LocalQueue``).

    Attributes:
        kind: a short unique name, recorded in the cache entries of its jobs (``QUEUES``).
        supports_dependencies: the queue starts a job only after its dependencies
            succeeded; otherwise the executor holds the task until its inputs are done.
        guard_kind: how a driver's guardian cancels live jobs if the driver dies:
            ``"job"`` (``scancel`` by job id), ``"flux"`` (``flux cancel`` by job id),
            ``"process"`` (a job id is a process group), or None.
        writes_log: the job's output goes to ``JobSpec.log``.
        pending_reasons: job id -> the scheduler's reason a pending job waits, from the
            last ``states`` query (empty where the queue gives none).
    """

    kind: str
    supports_dependencies: bool
    guard_kind: "str | None"
    writes_log: bool
    pending_reasons: dict

    def submit(self, spec: JobSpec) -> str:
        """Submit one job. Returns its id; raises ``QueueError`` (the scheduler's message)."""

    def states(self, job_ids: list) -> dict:
        """One query for many jobs: job id -> ``JobState``."""

    def cancel(self, job_ids: list) -> None:
        """End the jobs (quietly skipping ended or unknown ones)."""

    # optional, for a queue that holds something per job (LocalQueue: its processes):
    #   forget(job_ids): the engine follows these jobs no more (their result arrived);
    #   close(): the engine stopped; release what is left (called by the poller as it ends).


class QueueError(RuntimeError):
    """The scheduler refused a job; the message is its own."""


def _run(argv: list[str], input_text: str | None = None) -> str:
    try:
        out = run_command(argv, input=input_text, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise FileNotFoundError(f"{argv[0]!r} is not on PATH: SlurmClusterExecutor needs the SLURM client tools") from None
    if out.returncode != 0:
        raise QueueError(f"{' '.join(argv[:1])} failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()}")
    return out.stdout


class SlurmQueue:
    """SLURM through its client tools (``sbatch``, ``squeue``, ``scancel``).

    Args:
        pmi_mode: the ``srun --mpi`` plugin for jobs of several ranks (None: chosen).
    """

    kind = "slurm"
    supports_dependencies = True
    guard_kind = "job"  # a driver's death cancels its jobs by id (launch.guardian)
    writes_log = True

    def __init__(self, pmi_mode: str | None = None):
        from hpcfutures.launch.srun import check_pmi_mode

        check_pmi_mode(pmi_mode)
        self.pmi_mode = pmi_mode
        # pending reason of each job asked about in the last ``states`` query
        self.pending_reasons: dict[str, str] = {}

    def submit(self, spec: JobSpec) -> str:
        """Submit ``spec`` with ``sbatch``; returns the job id."""
        return self._sbatch(spec.command, spec.name, spec.cwd, spec.resources, spec.dependencies, spec.extra, spec.log)

    def _sbatch(self, command: list[str], job_name: str, cwd: str, resources: dict, dependencies: list, extra: dict, log: str) -> str:
        res = Resources.of(resources)
        if res.ranks > 1:  # the ranks are one srun step of the job, with the PMI this MPI needs
            from hpcfutures.launch.srun import pmi_for

            res = Resources.of(res, pmi_for(res.ranks, self.pmi_mode))
            command = ["srun", *job_step_args(res), *command]
        command = _with_threads(command, res)
        # paths quoted: sbatch reads '#SBATCH --chdir="/a b"' as one value (line breaks and
        # quotes are refused at submit(): scheduling.resources.script_safe)
        lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f'#SBATCH --chdir="{cwd}"', f'#SBATCH --output="{log}"']
        rendered, unknown = sbatch_lines(Resources.of({**resources, **extra}))
        lines += rendered
        if dependencies:
            lines.append(f"#SBATCH --dependency=afterok:{':'.join(dependencies)}")
            lines.append("#SBATCH --kill-on-invalid-dep=yes")
        for key in unknown:
            warnings.warn(f"resource_dict[{key!r}] is not a job-script option the built-in SLURM adapter knows; ignored", stacklevel=4)
        template = resources.get("submission_template")
        script = _render(template, lines, command, job_name, cwd, {**resources, **extra}, dependencies)
        try:
            return _run(["sbatch", "--parsable"], script).strip().split(";")[0]
        except QueueError as exc:
            remedy = raised_priority_remedy(res.priority, "slurm")
            if remedy and "nice" in str(exc).lower():
                raise QueueError(f"{exc}\n{remedy}") from None
            raise

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """One ``squeue`` for all ``job_ids`` (the query ``launch.pending`` makes for srun's
        jobs); a job squeue no longer lists is ``UNKNOWN``. Raises ``OSError`` or
        ``subprocess.SubprocessError`` when squeue cannot answer (the engine asks again)."""
        from hpcfutures.launch.pending import query_reasons

        if not job_ids:
            return {}
        found = query_reasons(job_ids)  # job -> (SLURM's state word, pending reason)
        states = {job: translate(SLURM_STATES, found[job][0]) if job in found else JobState.UNKNOWN for job in job_ids}
        self.pending_reasons = {job: found[job][1] for job, state in states.items() if state is JobState.PENDING}
        return states

    def cancel(self, job_ids: list[str]) -> None:
        """One ``scancel`` for all ``job_ids``; its exit status is ignored (a job that ended
        meanwhile is no error).

        Raises:
            FileNotFoundError: ``scancel`` is not on ``PATH``.
            subprocess.TimeoutExpired: ``scancel`` took more than 60 seconds.
        """
        if job_ids:
            run_command(["scancel", *job_ids], capture_output=True, timeout=60)


def _with_threads(command: list[str], res: Resources) -> list[str]:
    """The job's command with the thread count of every common threading runtime set, as
    ``SingleNodeExecutor``'s and ``SlurmJobExecutor``'s workers get it (a batch job gets
    ``--cpus-per-task`` CPUs, but SLURM sets no ``OMP_NUM_THREADS``)."""
    from hpcfutures.launch.process import THREAD_VARIABLES

    return ["env", *(f"{name}={res.threads_per_rank}" for name in THREAD_VARIABLES), *command]


def _render(template, lines, command, job_name, cwd, resources, dependencies) -> str:
    command_text = " ".join(shlex.quote(c) for c in command)
    if template is None:
        return "\n".join(lines + ["", command_text, ""])
    try:
        import jinja2
    except ImportError:
        raise ImportError("submission_template is a jinja2 template: pip install jinja2") from None
    return jinja2.Template(template).render(
        job_name=job_name,
        working_directory=cwd,
        dependency_list=dependencies,
        command=command_text,
        **template_variables(Resources.of(resources)),
    )


class PysqaQueue:
    """A pysqa ``QueueAdapter`` (pip install pysqa), configured by ``pysqa_config_directory``.

    Its jobs are not cancelled when the driver dies: the guardian cannot tell which
    scheduler's cancel command applies.

    Args:
        config_directory: pysqa's configuration directory (``queue.yaml`` and templates).
        pmi_mode: the ``srun --mpi`` plugin for jobs of several ranks on a SLURM queue
            (None: chosen).

    Raises:
        ImportError: pysqa is not installed (``pip install "hpcfutures[cluster]"``).
        ValueError: ``pmi_mode`` is not a plugin srun knows.
    """

    kind = "pysqa"
    supports_dependencies = True
    guard_kind = None
    writes_log = False  # the site's template decides where a job's output goes
    pending_reasons: dict = {}  # pysqa reports none

    def __init__(self, config_directory: str, pmi_mode: str | None = None):
        try:
            from pysqa import QueueAdapter
        except ImportError:
            raise ImportError('pysqa_config_directory needs pysqa: pip install "hpcfutures[cluster]"') from None
        self._adapter = QueueAdapter(directory=os.fspath(config_directory))
        from hpcfutures.launch.srun import check_pmi_mode

        check_pmi_mode(pmi_mode)
        self.pmi_mode = pmi_mode
        self._queue_type = str((self._adapter.config or {}).get("queue_type", "")).upper()

    def submit(self, spec: JobSpec) -> str:
        """Submit ``spec`` through the adapter; returns the job id."""
        return self._submit_job(spec.command, spec.name, spec.cwd, spec.resources, spec.dependencies, spec.extra, spec.log)

    def _submit_job(self, command, job_name, cwd, resources, dependencies, extra, log) -> str:
        res = Resources.of(resources)
        if res.ranks > 1 and self._queue_type == "SLURM":  # the ranks as one srun step, as SlurmQueue's
            from hpcfutures.launch.srun import pmi_for

            command = ["srun", *job_step_args(Resources.of(res, pmi_for(res.ranks, self.pmi_mode))), *command]
        variables = template_variables(Resources.of({**resources, **extra}))
        job = self._adapter.submit_job(
            job_name=job_name,
            working_directory=cwd,
            dependency_list=[int(d) for d in dependencies] or None,
            command=" ".join(shlex.quote(c) for c in _with_threads(command, res)),
            submission_template=resources.get("submission_template"),
            **variables,
        )
        if job is None:  # pysqa returns None where sbatch refused the job
            raise QueueError("the queue adapter did not return a job id: the scheduler refused the job (see pysqa's log)")
        return str(job)

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """One adapter query for all ``job_ids``."""
        if not job_ids:
            return {}
        statuses = self._adapter.get_status_of_jobs(process_id_lst=[int(j) for j in job_ids])
        return {job: translate(PYSQA_STATES, status) for job, status in zip(job_ids, statuses)}

    def cancel(self, job_ids: list[str]) -> None:
        """Delete each job through the adapter; a job it cannot delete (ended, unknown) is
        skipped quietly."""
        for job in job_ids:
            try:
                self._adapter.delete_job(process_id=int(job))
            except Exception:
                pass


class LocalQueue:
    """Each "job" a local process; dependencies are left to the executor (held futures).
    A job id is the process's pid; its state comes from its exit code (``local_state``)."""

    kind = "local"
    supports_dependencies = False
    guard_kind = "process"  # a job id is the pid of a process leading its own group
    writes_log = True
    pending_reasons: dict = {}  # a process starts at once

    def __init__(self):
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._deadlines: dict[str, float] = {}  # job -> time.monotonic() at which its run_time_max is up
        self._timed_out: set[str] = set()
        self._cancelled: set[str] = set()
        self._ending: list[subprocess.Popen] = []  # forgotten, not yet ended: reaped later

    def submit(self, spec: JobSpec) -> str:
        """Start ``spec.command`` as a process of its own session; returns its pid."""
        command, cwd, resources, log = spec.command, spec.cwd, spec.resources, spec.log
        res = Resources.of(resources)
        for key in spec.extra:  # partition, memory_max, ...: a local process has no queue to give them to
            warnings.warn(f"resource_dict[{key!r}] is a queue option; TestClusterExecutor's local jobs ignore it", stacklevel=4)
        if res.ranks > 1:
            from hpcfutures.launch.mpi import mpiexec_command

            command = mpiexec_command(res.ranks, res.oversubscribe) + command
        command = _with_threads(command, res)
        with open(log, "ab") as out:
            process = spawn(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self._processes[str(process.pid)] = process
            if res.time_limit is not None:  # ended (TIMEOUT) by ``states``, as SLURM ends a job at its --time
                self._deadlines[str(process.pid)] = time.monotonic() + res.time_limit
        self._reap()
        return str(process.pid)

    def forget(self, job_ids: list[str]) -> None:
        """The engine has the jobs' results: wait for their processes (which end right
        after writing them) without blocking, so none is left a zombie."""
        with self._lock:
            for job in job_ids:
                process = self._processes.pop(job, None)
                self._cancelled.discard(job)
                if process is not None and process.poll() is None:
                    self._ending.append(process)
        self._reap()

    def close(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` seconds for processes whose results arrived; kill the
        group of one that does not end (a rank hanging after rank 0 wrote the result)."""
        with self._lock:
            ending, self._ending = self._ending, []
        deadline = time.monotonic() + timeout
        for process in ending:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()

    def _reap(self) -> None:
        with self._lock:
            self._ending = [p for p in self._ending if p.poll() is None]

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """The state of each process started here (``UNKNOWN``: not one of them)."""
        states = {}
        with self._lock:
            for job in job_ids:
                process = self._processes.get(job)
                if process is None:
                    states[job] = JobState.UNKNOWN
                elif process.poll() is None and time.monotonic() > self._deadlines.get(job, math.inf):
                    _kill_group(process)
                    self._timed_out.add(job)
                    states[job] = JobState.TIMEOUT
                elif process.poll() is None:
                    states[job] = JobState.RUNNING
                elif job in self._timed_out:
                    states[job] = JobState.TIMEOUT
                else:
                    states[job] = local_state(process.returncode, job in self._cancelled)
        return states

    def cancel(self, job_ids: list[str]) -> None:
        """SIGKILL each job's process group: this queue's running processes (their state
        becomes ``CANCELLED``), and a job another driver started if its pid still leads a
        ``file_task`` session (so a reused pid is never killed); anything else is skipped."""
        with self._lock:
            processes = [self._processes.get(j) for j in job_ids]
            self._cancelled.update(j for j, p in zip(job_ids, processes) if p is not None and p.poll() is None)
        for job, process in zip(job_ids, processes):
            if process is not None and process.poll() is None:
                _kill_group(process)
            elif process is None and _foreign_file_task(job):  # started by another driver (terminate_tasks_in_cache)
                try:
                    os.killpg(int(job), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a local job's process group (it leads its own session) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _foreign_file_task(job: str) -> bool:
    """Whether the pid ``job`` is a local job another driver started: a session
    leader running ``hpcfutures.worker.file_task`` (so a reused pid is never killed)."""
    if not job.isdigit():
        return False
    from hpcfutures.worker.execute import process_stat

    pid = int(job)
    for _ in range(100):  # a job just started may still be inside exec: its cmdline is empty then
        try:
            with open(f"/proc/{job}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        stat = process_stat(pid)
        if stat is None:
            return False
        if argv != [b""] or stat[0] in (b"Z", b"X"):
            break
        time.sleep(0.01)
    state, _ppid, group, session = stat
    # a local job leads its own session (``submit``): a group leader alone may be srun's
    # rank 0, whose group holds the node's other ranks too
    return b"hpcfutures.worker.file_task" in argv and state not in (b"Z", b"X") and group == pid and session == pid


def local_state(returncode: int, cancelled: bool = False) -> JobState:
    """The ``JobState`` of an ended local process: exit 0 ``COMPLETED``; killed by this
    queue's ``cancel`` ``CANCELLED``; anything else (a non-zero exit, a signal from
    elsewhere) ``FAILED``.

    Args:
        returncode: the process's exit status (``Popen.returncode``: negative for a signal).
        cancelled: this queue's ``cancel`` killed it.

    Returns:
        The job's state.
    """
    if returncode == 0:
        return JobState.COMPLETED
    return JobState.CANCELLED if cancelled else JobState.FAILED


# kind -> factory(pysqa_config_directory=None, pmi_mode=None): the queues a cache directory's
# entries can name, for ``batch.terminate``
QUEUES: "dict[str, Callable[..., Queue]]" = {
    "slurm": lambda pysqa_config_directory=None, pmi_mode=None: SlurmQueue(pmi_mode),
    "pysqa": lambda pysqa_config_directory=None, pmi_mode=None: PysqaQueue(pysqa_config_directory, pmi_mode),
    "local": lambda pysqa_config_directory=None, pmi_mode=None: LocalQueue(),
    "flux": lambda pysqa_config_directory=None, pmi_mode=None: _flux_queue(pmi_mode),
}


def _flux_queue(pmi_mode=None):
    from hpcfutures.batch.flux_queue import FluxQueue  # imports this module: loaded late

    return FluxQueue(pmi_mode)


def file_task_command(entry_path: str, cores: int) -> list[str]:
    """The job's command: ``cores > 1`` runs it as one MPI world of that many ranks,
    which the worker checks.

    Args:
        entry_path: the cache entry holding the pickled call; the job writes its result there.
        cores: MPI ranks of the job.

    Returns:
        The argv: this interpreter running ``hpcfutures.worker.file_task``.
    """
    return [sys.executable, "-m", "hpcfutures.worker.file_task", entry_path, *([f"--mpi={cores}"] if cores > 1 else [])]
