"""``FluxQueue``: one Flux batch job per call, for ``FluxClusterExecutor``.

A ``batch.queues.Queue`` (``kind = "flux"``, registered in ``QUEUES``), so the job-per-call
engine (``engines.job_per_call``) drives it as it drives SLURM, and
``terminate_tasks_in_cache`` finds it through the kind each cache entry records:

- ``submit``: a batch job (a nested Flux instance of the call's size, as ``flux batch``
  makes) through the Python API, whose script runs the call's file worker — under
  ``flux run`` of the call's ranks, with the ``pmi`` the MPI of mpi4py needs, when
  ``cores > 1``. What the job asks for comes from ``scheduling.render.flux_jobspec_args``
  (the renderer ``launch.flux`` uses too); dependencies are Flux's own (``afterok``), the
  job's output goes to the log beside its cache entry.
- ``states``: ONE ``job-list`` query for all of this user's jobs since the first
  submission, translated to ``JobState`` through ``scheduling.job_states.FLUX_STATES``.
- ``cancel``: a Flux cancel of each job.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
import warnings

from hpcfutures.batch.queues import JobSpec, QueueError
from hpcfutures.scheduling.job_states import FLUX_STATES, JobState, translate
from hpcfutures.scheduling.render import flux_jobspec_args, raised_priority_remedy
from hpcfutures.scheduling.resources import Resources

_CLOCK_SKEW = 60.0  # seconds: the job-list query looks back this far before our first submission


class FluxQueue:
    """Batch jobs of the enclosing Flux instance.

    Args:
        pmi_mode: the shell's ``pmi`` option for MPI calls (None: from mpi4py's MPI).
        who: the class the user built, named by the messages.

    Raises:
        ValueError: an unknown ``pmi_mode``. ImportError, RuntimeError: no Flux here.
    """

    kind = "flux"
    supports_dependencies = True
    guard_kind = "flux"  # a driver's death cancels its jobs with flux cancel (launch.guardian)
    writes_log = True

    def __init__(self, pmi_mode: str | None = None, who: str = "FluxClusterExecutor"):
        from hpcfutures.launch.flux import check_pmi_mode, require_flux

        check_pmi_mode(pmi_mode)
        require_flux(who)
        self.pmi_mode = pmi_mode
        self.pending_reasons: dict[str, str] = {}  # Flux says why at once (an exception), not as a reason
        self.end_reasons: dict[str, str] = {}  # job id -> the exception Flux recorded on it (its own words)
        self._lock = threading.Lock()  # flux handles are not thread-safe
        self._handle = None
        self._since: float | None = None  # submission time of the first job, for the query

    def _flux(self):
        import flux

        if self._handle is None:
            self._handle = flux.Flux()
        return self._handle

    def check(self, resources: dict) -> None:
        """Refuse at ``submit()`` what this instance can never run, as ``FluxJobExecutor``
        does (the same ``launch.flux.check_request``).

        Args:
            resources: a call's merged ``resource_dict``.

        Raises:
            UnsatisfiableRequestError: more cores, GPUs or nodes than the instance has.
            ValueError: a jobspec Flux refuses.
        """
        from hpcfutures.launch.flux import check_request

        check_request(resources)

    def _rendered(self, resources: dict) -> dict:
        from hpcfutures.launch.flux import pmi_for, shaped

        res = Resources.of(shaped(resources))  # exclusive without num_nodes: whole nodes, as job steps
        return flux_jobspec_args(Resources.of(res, pmi_for(res.ranks, self.pmi_mode)))

    def script(self, command: list[str], resources: dict) -> str:
        """The batch script: the file worker, under ``flux run`` of the call's ranks for MPI.

        Args:
            command: the file worker's argv.
            resources: the call's ``resource_dict``.

        Returns:
            The script's text.
        """
        args = self._rendered(resources)
        if args["num_tasks"] > 1 or args["cores_per_task"] > 1:
            run = ["flux", "run", "-n", str(args["num_tasks"]), "-c", str(args["cores_per_task"])]
            if args["gpus_per_task"]:
                run += ["-g", str(args["gpus_per_task"])]
            for name, value in args["shell_options"].items():
                run += ["-o", f"{name}={value}"]
            command = run + list(command)
        # every word quoted: a cache path may hold '<lambda>', which bash would read as a redirect
        return "#!/bin/bash\n" + " ".join(shlex.quote(c) for c in command) + "\n"

    def submit(self, spec: JobSpec) -> str:
        """Submit one call as a batch job.

        Args:
            spec: the job (command, name, cwd, resources, dependencies, ``extra``: ``queue``
                is the Flux queue; other keys are warned about and ignored, log).

        Returns:
            Its id (decimal).

        Raises:
            QueueError: Flux refused the job (its own message).
        """
        import flux.job
        from flux.job import JobspecV1

        args = self._rendered(spec.resources)
        jobspec = JobspecV1.from_batch_command(
            self.script(spec.command, spec.resources),
            spec.name,
            num_slots=args["num_tasks"],
            cores_per_slot=args["cores_per_task"],
            gpus_per_slot=args["gpus_per_task"] or None,
            num_nodes=args["num_nodes"] or None,
            exclusive=args["exclusive"],
        )
        env = dict(os.environ)
        if "pmix" in (args["shell_options"].get("pmi") or "pmix"):
            env.setdefault("PMIX_MCA_psec", "native")  # Open MPI wheel + pmix: no help text per rank
        jobspec.environment = env
        jobspec.cwd = spec.cwd
        jobspec.stdout = spec.log
        jobspec.stderr = spec.log
        if args["duration"]:
            jobspec.duration = float(args["duration"])
        if spec.dependencies:
            jobspec.setattr("system.dependencies", [{"scheme": "afterok", "value": str(d)} for d in spec.dependencies])
        for key, value in spec.extra.items():
            if key == "queue":
                jobspec.setattr("system.queue", str(value))
            else:
                warnings.warn(f"resource_dict[{key!r}] is not a Flux job option FluxClusterExecutor knows; ignored", stacklevel=4)
        with self._lock:
            if self._since is None:
                self._since = time.time() - _CLOCK_SKEW
            try:
                job = flux.job.submit(self._flux(), jobspec, urgency=args["urgency"])
            except OSError as exc:
                remedy = raised_priority_remedy(spec.resources.get("priority"), "flux")
                hint = f"\n(if it refused the urgency: {remedy})" if remedy else ""
                raise QueueError(f"Flux refused the batch job {spec.name}: {exc}{hint}") from exc
        return str(int(job))

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """The state of each job, from one ``job-list`` query for all of them; a job Flux
        does not list is ``UNKNOWN``.

        Raises:
            OSError: the instance does not answer (the engine asks again).
        """
        if not job_ids:
            return {}
        import flux.job
        from flux.job import JobInfo

        with self._lock:
            since = self._since or 0.0
            attrs = ["state", "result", "exception_occurred", "exception_type", "exception_note"]
            jobs = flux.job.job_list(self._flux(), max_entries=0, attrs=attrs, since=since).get_jobs()
        found = {}
        for job in jobs:
            info = JobInfo(job)
            # an inactive job's result says how it ended (an unknown result: FAILED, not
            # UNKNOWN, since the job did end); an active one's state says where it is
            word = info.result if info.state == "INACTIVE" else info.state
            state = translate(FLUX_STATES, word)
            if info.state == "INACTIVE" and not state.ended:
                state = JobState.FAILED
            found[str(int(info.id))] = state
            exception = getattr(info, "exception", None)
            if state.ended and exception is not None and getattr(exception, "occurred", False):
                note = getattr(exception, "note", "") or ""
                self.end_reasons[str(int(info.id))] = f"{getattr(exception, 'type', 'exception')}: {note}".rstrip(": ")
        return {job: found.get(str(job), JobState.UNKNOWN) for job in job_ids}

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
