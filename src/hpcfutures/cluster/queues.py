"""The three ways a job reaches a queue, behind one small interface:

- ``SlurmQueue``: ``sbatch``/``squeue``/``scancel`` directly, with a built-in job script
  that works on a stock SLURM with no configuration (no empty ``--partition=``).
- ``PysqaQueue``: through a pysqa ``QueueAdapter`` (``pysqa_config_directory``), for sites
  whose queues and templates users already configured for executorlib.
- ``LocalQueue``: local processes instead of jobs (``TestClusterExecutor``).

``submit`` returns a job id or raises with the scheduler's own message; ``states`` asks
about many jobs in one query; ``cancel`` ends jobs.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import threading
import warnings

# terminal SLURM states (squeue --states=all shows them for MinJobAge seconds)
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "GONE"}

# resource keys a job script understands; others are passed to the adapter with a warning
_BUILTIN_EXTRA = {"partition": "--partition={}", "account": "--account={}", "qos": "--qos={}", "memory_max": "--mem={}"}


def memory_text(gigabytes) -> str:
    """``memory_max`` (GB) as ``sbatch --mem`` takes it: whole GB as ``4G``, anything else
    in whole MB, rounded up (``--mem`` refuses ``1.5G``)."""
    if gigabytes == int(gigabytes):
        return f"{int(gigabytes)}G"
    return f"{math.ceil(gigabytes * 1024)}M"


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
        cores = resources.get("cores", 1)
        if cores > 1:  # the ranks are one srun step of the job, with the PMI this MPI needs
            from hpcfutures.launch.srun import pmi_for

            pmi = pmi_for(cores, self.pmi_mode)
            command = ["srun", *([f"--mpi={pmi}"] if pmi else []), "--kill-on-bad-exit=1", *command]
            if resources.get("openmpi_oversubscribe"):  # openmpi_oversubscribe honoured by srun's own option
                command.insert(1, "--oversubscribe")
        # paths quoted: sbatch reads '#SBATCH --chdir="/a b"' as one value (line breaks and
        # quotes are refused at submit(): scheduling.resources.script_safe)
        lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f'#SBATCH --chdir="{cwd}"', f'#SBATCH --output="{log}"']
        lines.append(f"#SBATCH --ntasks={resources.get('cores', 1)}")
        lines.append(f"#SBATCH --cpus-per-task={resources.get('threads_per_core', 1)}")
        if resources.get("gpus_per_core"):
            lines.append(f"#SBATCH --gpus-per-task={int(resources['gpus_per_core'])}")  # whole GPUs (fractions refused)
        if resources.get("num_nodes"):
            lines.append(f"#SBATCH --nodes={resources['num_nodes']}")
        if resources.get("exclusive"):
            lines.append("#SBATCH --exclusive")
        if resources.get("run_time_max"):
            lines.append(f"#SBATCH --time={max(1, math.ceil(resources['run_time_max'] / 60))}")
        if resources.get("priority") is not None:
            lines.append(f"#SBATCH --nice={max(0, -int(resources['priority']))}")
        if dependencies:
            lines.append(f"#SBATCH --dependency=afterok:{':'.join(dependencies)}")
            lines.append("#SBATCH --kill-on-invalid-dep=yes")
        for key, value in extra.items():
            if key == "memory_max":
                lines.append(f"#SBATCH --mem={memory_text(value)}")
            elif key in _BUILTIN_EXTRA:
                lines.append("#SBATCH " + _BUILTIN_EXTRA[key].format(f'"{value}"'))
            else:
                warnings.warn(f"resource_dict[{key!r}] is not a job-script option the built-in SLURM adapter knows; ignored", stacklevel=4)
        template = resources.get("submission_template")
        script = _render(template, lines, command, job_name, cwd, resources, dependencies, extra)
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


def _render(template, lines, command, job_name, cwd, resources, dependencies, extra) -> str:
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
        cores=resources.get("cores", 1),
        threads_per_core=resources.get("threads_per_core", 1),
        run_time_max=resources.get("run_time_max"),
        dependency_list=dependencies,
        command=command_text,
        **extra,
    )


class PysqaQueue:
    """A pysqa ``QueueAdapter`` (pip install pysqa), configured by ``pysqa_config_directory``.

    Its jobs are not cancelled when the driver dies: the guardian cannot tell which
    scheduler's cancel command applies."""

    supports_dependencies = True
    guard_kind = None
    writes_log = False  # the site's template decides where a job's output goes

    def __init__(self, config_directory: str, backend: str | None = None):
        try:
            from pysqa import QueueAdapter
        except ImportError:
            raise ImportError('pysqa_config_directory needs pysqa: pip install "hpcfutures[cluster]"') from None
        self._adapter = QueueAdapter(directory=os.fspath(config_directory))

    def submit(self, command, job_name, cwd, resources, dependencies, extra, log) -> str:
        job = self._adapter.submit_job(
            job_name=job_name,
            working_directory=cwd,
            cores=resources.get("cores", 1),
            run_time_max=resources.get("run_time_max"),
            dependency_list=[int(d) for d in dependencies] or None,
            command=" ".join(shlex.quote(c) for c in command),
            submission_template=resources.get("submission_template"),
            **extra,
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

    def submit(self, command, job_name, cwd, resources, dependencies, extra, log) -> str:
        if resources.get("cores", 1) > 1:
            from hpcfutures.launch.mpi import mpiexec_command

            command = mpiexec_command(resources["cores"], resources.get("openmpi_oversubscribe", False)) + command
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self._processes[str(process.pid)] = process
        return str(process.pid)

    def states(self, job_ids: list[str]) -> dict[str, str]:
        states = {}
        with self._lock:
            for job in job_ids:
                process = self._processes.get(job)
                if process is None:
                    states[job] = "GONE"
                elif process.poll() is None:
                    states[job] = "RUNNING"
                else:
                    states[job] = "COMPLETED" if process.returncode == 0 else "FAILED"
        return states

    def cancel(self, job_ids: list[str]) -> None:
        import signal

        with self._lock:
            processes = [self._processes.get(j) for j in job_ids]
        for process in processes:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


def file_task_command(entry_path: str, cores: int) -> list[str]:
    """The job's command: ``cores > 1`` runs it as one MPI world of that many ranks,
    which the worker checks."""
    return [sys.executable, "-m", "hpcfutures.worker.file_task", entry_path, *([f"--mpi={cores}"] if cores > 1 else [])]
