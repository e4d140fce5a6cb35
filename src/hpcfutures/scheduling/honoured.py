"""Which ``resource_dict`` keys each backend honours: one table, keys x backends.

The executors read their column (``refusals``, ``worker_keys``) instead of keeping lists
of their own, so "a key accepted but not honoured" cannot creep in on one executor only:
a cell is either honoured, honoured but fixed per warm worker, or refused unless the value
is neutral, with the reason the user sees.

Columns (backends):

- ``local``: ``SingleNodeExecutor`` and pympipool's fronts, processes on this machine
  (``mpiexec`` for several ranks).
- ``srun``: ``SlurmJobExecutor`` (and ``SlurmClusterExecutor(block_allocation=True)``,
  the fronts' ``enable_slurm_backend``), every task or warm worker an ``srun`` step.
- ``sbatch``: ``SlurmClusterExecutor``, one batch job per call (built-in script or pysqa).
- ``local_jobs``: ``TestClusterExecutor``, the batch-job path with local processes.
- ``flux``: ``FluxJobExecutor`` (and the fronts' ``enable_flux_backend``), every task or
  warm worker a job of the enclosing Flux instance.
- ``flux_batch``: ``FluxClusterExecutor``, one Flux batch job per call.

How to add a backend: add its name to ``BACKENDS`` and one cell per key below (a test
checks every key has one), write its renderer in ``scheduling.render``, and let its
executor read ``refusals(name)``/``worker_keys(name)``.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Callable

LOCAL, SRUN, SBATCH, LOCAL_JOBS, FLUX, FLUX_BATCH = "local", "srun", "sbatch", "local_jobs", "flux", "flux_batch"
BACKENDS = (LOCAL, SRUN, SBATCH, LOCAL_JOBS, FLUX, FLUX_BATCH)


# One cell: how a backend treats a key.
#   worker: the value is fixed when a warm worker starts (a task of a warm pool cannot change it);
#   accept: None: every valid value is honoured; otherwise a predicate accepting the values
#           honoured (the neutral ones), and any other value is refused with ``reason``;
#   reason: why other values are refused, and what to use instead.
Rule = namedtuple("Rule", "worker accept reason", defaults=(False, None, ""))


YES = Rule()
WORKER = Rule(worker=True)


def _refused(accept: Callable, reason: str, worker: bool = False) -> Rule:
    return Rule(worker, accept, reason)


def _unset(value) -> bool:
    return not value


def _none(value) -> bool:
    return value is None


def _one_node(value) -> bool:
    return value in (None, 1)


def _whole(value) -> bool:
    return value == int(value)


_SCRIPTS = "submission templates are for SlurmClusterExecutor's batch jobs (without block_allocation)"
_NO_RETRY = (
    "a batch job is not run again by the executor: its dependants are bound to it by job id; "
    "use the queue's requeue options, or SlurmClusterExecutor(block_allocation=True) / SlurmJobExecutor"
)
_LOCAL_JOB = "TestClusterExecutor's jobs are processes on this machine"
_FLUX_GPUS = "a Flux jobspec counts whole GPUs per rank"
_FLUX_PLACES = (
    "Flux gives every rank a core of its own and has no oversubscription; ask for fewer cores, or use "
    "SingleNodeExecutor (mpiexec --oversubscribe)"
)
_FLUX_NO_RETRY = (
    "a Flux batch job is not run again by the executor: its dependants are bound to it by job id; "
    "use FluxJobExecutor for retries"
)

# key -> backend -> Rule
HONOURED: dict[str, dict[str, Rule]] = {
    "cores": {LOCAL: WORKER, SRUN: WORKER, SBATCH: YES, LOCAL_JOBS: YES, FLUX: WORKER, FLUX_BATCH: YES},
    "threads_per_core": {LOCAL: WORKER, SRUN: WORKER, SBATCH: YES, LOCAL_JOBS: YES, FLUX: WORKER, FLUX_BATCH: YES},
    "gpus_per_core": {
        LOCAL: WORKER,
        SRUN: _refused(_whole, "srun --gpus-per-task counts whole GPUs per rank", worker=True),
        SBATCH: _refused(_whole, "a job's --gpus-per-task counts whole GPUs per rank"),
        LOCAL_JOBS: _refused(_unset, f"{_LOCAL_JOB} and get no GPUs of their own; SingleNodeExecutor hands out devices"),
        FLUX: _refused(_whole, _FLUX_GPUS, worker=True),
        FLUX_BATCH: _refused(_whole, _FLUX_GPUS),
    },
    "cwd": {LOCAL: WORKER, SRUN: WORKER, SBATCH: YES, LOCAL_JOBS: YES, FLUX: WORKER, FLUX_BATCH: YES},
    "cache_key": dict.fromkeys(BACKENDS, YES),
    "cache_directory": dict.fromkeys(BACKENDS, YES),
    "error_log_file": dict.fromkeys(BACKENDS, YES),
    "run_time_max": dict.fromkeys(BACKENDS, YES),
    "retries": {
        LOCAL: YES,
        SRUN: YES,
        SBATCH: _refused(_unset, _NO_RETRY),
        LOCAL_JOBS: _refused(_unset, _NO_RETRY),
        FLUX: YES,
        FLUX_BATCH: _refused(_unset, _FLUX_NO_RETRY),
    },
    "retry_on": {
        LOCAL: YES,
        SRUN: YES,
        SBATCH: _refused(_none, "a batch job is not run again by the executor (see retries)"),
        LOCAL_JOBS: _refused(_none, "a batch job is not run again by the executor (see retries)"),
        FLUX: YES,
        FLUX_BATCH: _refused(_none, "a Flux batch job is not run again by the executor (see retries)"),
    },
    "openmpi_oversubscribe": {
        LOCAL: WORKER,
        SRUN: WORKER,
        SBATCH: YES,
        LOCAL_JOBS: YES,
        FLUX: _refused(_unset, _FLUX_PLACES),
        FLUX_BATCH: _refused(_unset, _FLUX_PLACES),
    },
    "num_nodes": {
        LOCAL: _refused(_one_node, "SingleNodeExecutor runs on this machine only; use SlurmJobExecutor for several nodes"),
        SRUN: WORKER,
        SBATCH: YES,
        LOCAL_JOBS: _refused(_one_node, f"{_LOCAL_JOB} only; use SlurmClusterExecutor for several nodes"),
        FLUX: WORKER,
        FLUX_BATCH: YES,
    },
    "exclusive": {
        LOCAL: _refused(_unset, "exclusive node use needs a scheduler (SlurmJobExecutor)"),
        SRUN: WORKER,
        SBATCH: YES,
        LOCAL_JOBS: _refused(_unset, f"{_LOCAL_JOB}: exclusive node use needs a scheduler (SlurmClusterExecutor)"),
        FLUX: WORKER,
        FLUX_BATCH: YES,
    },
    "slurm_cmd_args": {
        LOCAL: _refused(_unset, "srun arguments need SlurmJobExecutor"),
        SRUN: WORKER,
        SBATCH: _refused(
            _unset,
            "they are srun arguments of SlurmJobExecutor; a batch job takes partition, account, qos, "
            "memory_max or a submission_template",
        ),
        LOCAL_JOBS: _refused(_unset, "srun arguments need SlurmJobExecutor"),
        FLUX: _refused(_unset, "srun arguments need SlurmJobExecutor; Flux takes the resource_dict keys only"),
        FLUX_BATCH: _refused(_unset, "srun arguments need SlurmJobExecutor; a Flux batch job takes queue or the resource_dict keys"),
    },
    "submission_template": {
        LOCAL: _refused(_none, _SCRIPTS),
        SRUN: _refused(_none, _SCRIPTS),
        SBATCH: YES,
        LOCAL_JOBS: _refused(_none, f"{_SCRIPTS}; {_LOCAL_JOB}, started without a job script"),
        FLUX: _refused(_none, _SCRIPTS),
        FLUX_BATCH: _refused(
            _none, "FluxClusterExecutor writes its own batch script; for templates use pysqa_config_directory (queue_type FLUX)"
        ),
    },
    "priority": {
        LOCAL: _refused(_none, "priorities are for the queued-job executors; this one runs tasks first in first out"),
        SRUN: _refused(_none, "priorities are for batch jobs (SlurmClusterExecutor without block_allocation); srun steps start first in first out"),
        SBATCH: YES,
        LOCAL_JOBS: _refused(_none, f"priorities are for SlurmClusterExecutor; {_LOCAL_JOB}, started first in first out"),
        FLUX: WORKER,  # the job's urgency (scheduling.render.flux_jobspec_args); a warm worker's is fixed
        FLUX_BATCH: YES,
    },
}

def refusals(backend: str) -> dict[str, tuple[Callable, str]]:
    """The keys ``backend`` honours only with their neutral value.

    Args:
        backend: one of ``BACKENDS``.

    Returns:
        key -> (predicate accepting the values honoured, reason shown for any other value).

    Raises:
        KeyError: an unknown backend.
    """
    _check(backend)
    return {key: (row[backend].accept, row[backend].reason) for key, row in HONOURED.items() if row[backend].accept}


def worker_keys(backend: str) -> tuple[str, ...]:
    """The keys a warm worker of ``backend`` is started with, which its tasks cannot change.

    Raises:
        KeyError: an unknown backend.
    """
    _check(backend)
    return tuple(key for key, row in HONOURED.items() if row[backend].worker)


def refuse_unhonoured(resources: dict, where: str, backend: str) -> None:
    """Refuse a value ``backend`` would accept but not honour.

    Args:
        resources: a validated ``resource_dict`` (keys it does not know are ignored).
        where: the call, for the message (``"submit()"``, ...).
        backend: one of ``BACKENDS``.

    Raises:
        ValueError: naming the key, the value and the reason.
    """
    for key, value in resources.items():
        rule = HONOURED.get(key, {}).get(backend)
        if rule is not None and rule.accept is not None and not rule.accept(value):
            raise ValueError(f"{where}: resource_dict[{key!r}]={value!r} is not supported: {rule.reason}")


def _check(backend: str) -> None:
    if backend not in BACKENDS:
        raise KeyError(f"unknown backend {backend!r}; known: {BACKENDS}")
