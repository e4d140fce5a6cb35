"""``FluxQueue``: one Flux batch job per call, for ``FluxClusterExecutor``.

It has the shape of ``cluster.queues.SlurmQueue`` (``submit`` -> a job id, ``states`` of
many jobs in one query, ``cancel``), so ``cluster.engine.JobEngine`` drives it unchanged:

- ``submit``: a batch job (a nested Flux instance of the call's size, as ``flux batch``
  makes) through the Python API, whose script runs the call's file worker — under
  ``flux run -n cores`` with the ``pmi`` the MPI of mpi4py needs when ``cores > 1``;
  dependencies are Flux's own (``afterok``), ``run_time_max`` is the duration,
  ``priority`` the urgency, the job's output goes to the log beside its cache entry.
- ``states``: ONE ``job-list`` query for all of this user's jobs since the first
  submission, mapped onto the neutral names the engine knows (``PENDING``, ``RUNNING``,
  ``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TIMEOUT``, ``GONE``).
- ``cancel``: a Flux cancel of each job.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
import warnings

# Flux results of inactive jobs -> the engine's (SLURM's) names
_RESULTS = {"COMPLETED": "COMPLETED", "FAILED": "FAILED", "CANCELED": "CANCELLED", "TIMEOUT": "TIMEOUT"}
_PENDING = {"NEW", "DEPEND", "PRIORITY", "SCHED"}


class FluxQueue:
    """Batch jobs of the enclosing Flux instance.

    Args:
        pmi_mode: the shell's ``pmi`` option for MPI calls (None: from mpi4py's MPI).

    Raises:
        ValueError: an unknown ``pmi_mode``; ImportError/RuntimeError: no Flux here.
    """

    supports_dependencies = True
    guard_kind = None  # the guardian knows scancel only; a wait=True driver cancels at shutdown

    def __init__(self, pmi_mode: str | None = None):
        from hpcfutures.launch.flux import check_pmi_mode, require_flux

        check_pmi_mode(pmi_mode)
        require_flux()
        self.pmi_mode = pmi_mode
        self.pending_reasons: dict[str, str] = {}  # Flux says why at once (an exception), not as a reason
        self._lock = threading.Lock()  # flux handles are not thread-safe
        self._handle = None
        self._since: float | None = None  # submission time of the first job, for the query

    def _flux(self):
        import flux

        if self._handle is None:
            self._handle = flux.Flux()
        return self._handle

    def script(self, command: list[str], resources: dict) -> str:
        """The batch script: the file worker, under ``flux run`` of the call's ranks for MPI."""
        from hpcfutures.launch.flux import pmi_for

        cores = int(resources.get("cores", 1))
        threads = int(resources.get("threads_per_core", 1))
        if cores > 1 or threads > 1:
            run = ["flux", "run", "-n", str(cores), "-c", str(threads)]
            gpus = int(resources.get("gpus_per_core") or 0)
            if gpus:
                run += ["-g", str(gpus)]
            pmi = pmi_for(cores, self.pmi_mode)
            if pmi is not None:
                run += ["-o", f"pmi={pmi}"]
            command = run + list(command)
        # every word quoted: a cache path may hold '<lambda>', which bash would read as a redirect
        return "#!/bin/bash\n" + " ".join(shlex.quote(c) for c in command) + "\n"

    def submit(self, command: list[str], job_name: str, cwd: str, resources: dict, dependencies: list, extra: dict, log: str) -> str:
        """Submit one call as a batch job; returns its id (decimal).

        Raises:
            hpcfutures.cluster.queues.QueueError: Flux refused the job (its own message).
        """
        import flux.job
        from flux.job import JobspecV1

        from hpcfutures.cluster.queues import QueueError

        cores = int(resources.get("cores", 1))
        gpus = int(resources.get("gpus_per_core") or 0) or None
        spec = JobspecV1.from_batch_command(
            self.script(command, resources),
            job_name,
            num_slots=cores,
            cores_per_slot=int(resources.get("threads_per_core", 1)),
            gpus_per_slot=gpus,
            num_nodes=resources.get("num_nodes") or None,
            exclusive=bool(resources.get("exclusive")),
        )
        env = dict(os.environ)
        if "pmix" in (self.pmi_mode or "pmix"):
            env.setdefault("PMIX_MCA_psec", "native")  # Open MPI wheel + pmix: no help text per rank
        spec.environment = env
        spec.cwd = cwd
        spec.stdout = log
        spec.stderr = log
        if resources.get("run_time_max"):
            spec.duration = float(resources["run_time_max"])
        if dependencies:
            spec.setattr("system.dependencies", [{"scheme": "afterok", "value": str(d)} for d in dependencies])
        for key, value in extra.items():
            if key == "queue":
                spec.setattr("system.queue", str(value))
            else:
                warnings.warn(f"resource_dict[{key!r}] is not a Flux job option FluxClusterExecutor knows; ignored", stacklevel=4)
        urgency = resources.get("priority")
        with self._lock:
            if self._since is None:
                self._since = time.time() - 60.0  # clock skew between us and the broker
            try:
                job = flux.job.submit(self._flux(), spec, urgency=16 if urgency is None else int(urgency))
            except OSError as exc:
                raise QueueError(f"Flux refused the batch job {job_name}: {exc}") from exc
        return str(int(job))

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """The state of each job, from one query for all of them."""
        if not job_ids:
            return {}
        import flux.job
        from flux.job import JobInfo

        with self._lock:
            since = self._since or 0.0
            jobs = flux.job.job_list(
                self._flux(), max_entries=0, attrs=["state", "result"], since=since
            ).get_jobs()
        found = {}
        for job in jobs:
            info = JobInfo(job)
            state = info.state
            if state == "INACTIVE":
                found[str(int(info.id))] = _RESULTS.get(info.result, "FAILED")
            elif state in _PENDING:
                found[str(int(info.id))] = "PENDING"
            else:
                found[str(int(info.id))] = "RUNNING"
        return {job: found.get(str(job), "GONE") for job in job_ids}

    def cancel(self, job_ids: list[str]) -> None:
        """Cancel each job (one that ended meanwhile is skipped)."""
        if not job_ids:
            return
        import flux.job

        with self._lock:
            for job in job_ids:
                try:
                    flux.job.cancel(self._flux(), int(job), "cancelled by hpcfutures")
                except (OSError, ValueError):
                    pass
