"""The three ways a job reaches a queue, behind one small interface:

- ``SlurmQueue``: ``sbatch``/``squeue``/``scancel`` directly, with a built-in job script
  that works on a stock SLURM with no configuration (no empty ``--partition=``).
- ``PysqaQueue``: through a pysqa ``QueueAdapter`` (``pysqa_config_directory``), for sites
  whose queues and templates users already configured for executorlib.
- ``LocalQueue``: local processes instead of jobs (``TestClusterExecutor``).

``submit`` returns a job id or raises with the scheduler's own message; ``states`` asks
about many jobs in one query; ``cancel`` ends jobs. What a job's resources become (the
``#SBATCH`` lines, the srun step of its ranks, template variables, pysqa's arguments) is
rendered in ``scheduling.render``, beside srun's and mpiexec's flags.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import threading
import time
import warnings

from hpcfutures.scheduling.render import job_step_args, sbatch_lines, template_variables
from hpcfutures.scheduling.resources import Resources

# terminal SLURM states (squeue --states=all shows them for MinJobAge seconds)
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "GONE"}


class QueueError(RuntimeError):
    """The scheduler refused a job; the message is its own."""


def _run(argv: list[str], input_text: str | None = None) -> str:
    try:
        out = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise FileNotFoundError(f"{argv[0]!r} is not on PATH: SlurmClusterExecutor needs the SLURM client tools") from None
    if out.returncode != 0:
        raise QueueError(f"{' '.join(argv[:1])} failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()}")
    return out.stdout


class SlurmQueue:
    supports_dependencies = True
    guard_kind = "job"  # a driver's death cancels its jobs by id (launch.guardian)

    def __init__(self, pmi_mode: str | None = None):
        from hpcfutures.launch.srun import check_pmi_mode

        check_pmi_mode(pmi_mode)
        self.pmi_mode = pmi_mode
        # pending reason of each job asked about in the last ``states`` query
        self.pending_reasons: dict[str, str] = {}

    def submit(self, command: list[str], job_name: str, cwd: str, resources: dict, dependencies: list, extra: dict, log: str) -> str:
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
        return _run(["sbatch", "--parsable"], script).strip().split(";")[0]

    def states(self, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        try:
            out = _run(["squeue", "-h", "--states=all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"])
        except QueueError as exc:
            if "Invalid job id" not in str(exc):
                raise
            out = ""  # every job asked about has left the queue's memory (MinJobAge): all GONE
        found, reasons = {}, {}
        for line in out.splitlines():
            parts = line.split("|", 2)
            if len(parts) == 3:
                found[parts[0].strip()] = parts[1].strip()
                if parts[1].strip() == "PENDING":
                    reasons[parts[0].strip()] = parts[2].strip()
        self.pending_reasons = reasons
        return {job: found.get(job, "GONE") for job in job_ids}

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)


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
    scheduler's cancel command applies."""

    supports_dependencies = True
    guard_kind = None
    writes_log = False  # the site's template decides where a job's output goes

    def __init__(self, config_directory: str, backend: str | None = None, pmi_mode: str | None = None):
        try:
            from pysqa import QueueAdapter
        except ImportError:
            raise ImportError('pysqa_config_directory needs pysqa: pip install "hpcfutures[cluster]"') from None
        self._adapter = QueueAdapter(directory=os.fspath(config_directory))
        from hpcfutures.launch.srun import check_pmi_mode

        check_pmi_mode(pmi_mode)
        self.pmi_mode = pmi_mode
        self._queue_type = str((self._adapter.config or {}).get("queue_type", "")).upper()

    def submit(self, command, job_name, cwd, resources, dependencies, extra, log) -> str:
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

    def states(self, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        statuses = self._adapter.get_status_of_jobs(process_id_lst=[int(j) for j in job_ids])
        names = {"running": "RUNNING", "pending": "PENDING", "error": "FAILED", "finished": "GONE", None: "GONE"}
        return {job: names.get(status, "GONE") for job, status in zip(job_ids, statuses)}

    def cancel(self, job_ids: list[str]) -> None:
        for job in job_ids:
            try:
                self._adapter.delete_job(process_id=int(job))
            except Exception:
                pass


class LocalQueue:
    """Each "job" a local process; dependencies are left to the executor (held futures)."""

    supports_dependencies = False
    guard_kind = "process"  # a job id is the pid of a process leading its own group

    def __init__(self):
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._deadlines: dict[str, float] = {}  # job -> time.monotonic() at which its run_time_max is up
        self._timed_out: set[str] = set()

    def submit(self, command, job_name, cwd, resources, dependencies, extra, log) -> str:
        res = Resources.of(resources)
        for key in extra:  # partition, memory_max, ...: a local process has no queue to give them to
            warnings.warn(f"resource_dict[{key!r}] is a queue option; TestClusterExecutor's local jobs ignore it", stacklevel=4)
        if res.ranks > 1:
            from hpcfutures.launch.mpi import mpiexec_command

            command = mpiexec_command(res.ranks, res.oversubscribe) + command
        command = _with_threads(command, res)
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self._processes[str(process.pid)] = process
            if res.time_limit is not None:  # ended (TIMEOUT) by ``states``, as SLURM ends a job at its --time
                self._deadlines[str(process.pid)] = time.monotonic() + res.time_limit
        return str(process.pid)

    def states(self, job_ids: list[str]) -> dict[str, str]:
        states = {}
        with self._lock:
            for job in job_ids:
                process = self._processes.get(job)
                if process is None:
                    states[job] = "GONE"
                elif process.poll() is None and time.monotonic() > self._deadlines.get(job, math.inf):
                    _kill_group(process)
                    self._timed_out.add(job)
                    states[job] = "TIMEOUT"
                elif process.poll() is None:
                    states[job] = "RUNNING"
                elif job in self._timed_out:
                    states[job] = "TIMEOUT"
                else:
                    states[job] = "COMPLETED" if process.returncode == 0 else "FAILED"
        return states

    def cancel(self, job_ids: list[str]) -> None:
        with self._lock:
            processes = [self._processes.get(j) for j in job_ids]
        for process in processes:
            if process is not None and process.poll() is None:
                _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a local job's process group (it leads its own session) and reap it."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def file_task_command(entry_path: str, cores: int) -> list[str]:
    """The job's command: ``cores > 1`` runs it as one MPI world of that many ranks,
    which the worker checks."""
    return [sys.executable, "-m", "hpcfutures.worker.file_task", entry_path, *([f"--mpi={cores}"] if cores > 1 else [])]
