"""One ``Resources`` value, rendered for every backend — "where does a task get its cores?"

Each backend states a task's resources in its own words; the words are all here, side by
side, so they cannot drift apart:

- ``mpiexec_args``: ``launch.mpi.mpiexec_command`` (``SingleNodeExecutor``, ``TestClusterExecutor``).
- ``srun_args``: ``launch.srun.srun_command`` (``SlurmJobExecutor``: one step per task or worker).
- ``sbatch_lines``: ``batch.queues.SlurmQueue``, the ``#SBATCH`` lines of the built-in job script.
- ``job_step_args``: ``batch.queues`` (built-in script and pysqa on SLURM), the ``srun``
  step inside a job that starts its ranks.
- ``template_variables``: the variables of a jinja2 ``submission_template``, and pysqa's
  keyword arguments.
- ``flux_jobspec_args``: plain data for a Flux jobspec (nothing of Flux imported).

Every limit goes through ``Resources``: a time limit reaches SLURM as whole minutes rounded
up (``scheduling.resources.whole_minutes``, so ``run_time_max=60.5`` is 2 minutes for srun,
``#SBATCH`` and templates alike), GPUs per rank are whole on SLURM, CPUs per rank are
``threads_per_core``.

How to add a backend (Flux, say):

1. Add its column to ``scheduling.honoured.HONOURED`` (which keys it honours, which it
   refuses and why) and let its executor read ``refusals``/``worker_keys`` for it.
2. Write ``<backend>_args(resources: Resources)`` here. Where its options map one to one
   onto SLURM's, add a column to ``SLURM_OPTIONS``; otherwise read the ``Resources``
   attributes directly (``flux_jobspec_args`` is the model). Return plain data (argv
   fragments, dicts), import nothing of the backend, raise ``ValueError`` for a value it
   cannot express.
3. Add the backend to ``ASPECTS`` in ``tests/test_render.py``, which renders the same
   values with every backend and checks they agree.
"""

from __future__ import annotations

import math
from collections import namedtuple

from hpcfutures.scheduling.resources import Resources

# One resource as SLURM options.
#   name:   the Resources attribute (or what the row derives from it);
#   value:  Resources -> the value to render, or None (also False) for "no option";
#   srun:   the flag of an srun step (str.format'ed with the value), None: srun has none;
#   sbatch: the #SBATCH option of a batch job, None: the job script has none;
#   step:   whether the srun step that starts a batch job's ranks repeats the flag (Slurm
#           >= 22.05 srun no longer inherits --cpus-per-task from its job, for one).
Option = namedtuple("Option", "name value srun sbatch step")


def _whole_gpus(res: Resources):
    gpus = res.gpus_per_rank
    if not gpus:
        return None
    if gpus != int(gpus):  # the executors refuse it first (scheduling.honoured); never truncate
        raise ValueError(f"gpus_per_core={gpus}: SLURM's --gpus-per-task counts whole GPUs per rank")
    return int(gpus)


def _nice(res: Resources):
    # THE priority rule, for every backend: higher runs sooner, 0 is the queue's default.
    # SLURM: --nice=-priority (a negative nice raises a job's priority; sbatch refuses it to a
    # user who is not an operator, and batch.queues turns that refusal into a QueueError that
    # says so). Flux: the urgency itself, 1..31, as executorlib passes it (flux_urgency).
    return None if res.priority is None else -int(res.priority)


SLURM_OPTIONS = (
    Option("ranks", lambda r: r.ranks, "--ntasks={}", "--ntasks={}", True),
    # always given: srun steps no longer inherit it from their allocation (Slurm >= 22.05)
    Option("threads_per_rank", lambda r: r.threads_per_rank, "--cpus-per-task={}", "--cpus-per-task={}", True),
    Option("gpus_per_rank", _whole_gpus, "--gpus-per-task={}", "--gpus-per-task={}", True),
    Option("nodes", lambda r: r.nodes, "--nodes={}", "--nodes={}", False),
    # a step's CPUs not shared with other steps / a job's nodes not shared with other jobs
    Option("exclusive", lambda r: r.exclusive, "--exact", "--exclusive", False),
    Option("time_limit", lambda r: r.time_minutes, "--time={}", "--time={}", False),
    # absolute: srun itself starts in cwd, where a relative --chdir would be taken again;
    # a batch job's directory is the queue's (batch.queues: made first, then --chdir)
    Option("cwd", lambda r: r.cwd, "--chdir={}", None, False),
    Option("priority", _nice, None, "--nice={}", False),
    Option("pmi", lambda r: r.pmi, "--mpi={}", None, True),
    # a rank that dies ends the step: the others would wait for it in a collective
    Option("ranks", lambda r: r.ranks > 1 and 1, "--kill-on-bad-exit={}", None, True),
    Option("oversubscribe", lambda r: r.oversubscribe, "--oversubscribe", None, True),
)

# the resource_dict keys that change a launch command (srun's flags, which cover mpiexec's):
# a new combination of them is checked with the launcher at submit() (srun --test-only)
LAUNCH_KEYS = tuple(
    key
    for key, field in Resources.FIELDS.items()
    if field == "scheduler_args" or any(o.name == field and o.srun for o in SLURM_OPTIONS)
)

# queue keys the built-in job script renders (others go to pysqa's templates only)
SBATCH_QUEUE_OPTIONS = {"partition": '--partition="{}"', "account": '--account="{}"', "qos": '--qos="{}"', "memory_max": "--mem={}"}


def _flags(res: Resources, column: str, step_only: bool = False) -> list[str]:
    flags = []
    for option in SLURM_OPTIONS:
        pattern = getattr(option, column)
        if pattern is None or (step_only and not option.step):
            continue
        value = option.value(res)
        if value is None or value is False:
            continue
        flags.append(pattern.format(value) if "{}" in pattern else pattern)
    return flags


def srun_args(res: Resources) -> list[str]:
    """srun's flags for one step (after ``srun``, before the command).

    Args:
        res: the step's resources; ``res.pmi`` the ``--mpi`` plugin (None: srun's default).

    Returns:
        The flags, ``slurm_cmd_args`` last (so the user's own can override).

    Raises:
        ValueError: GPUs per rank that are not whole.
    """
    return _flags(res, "srun") + list(res.scheduler_args)


def job_step_args(res: Resources) -> list[str]:
    """Flags of the ``srun`` step that starts a batch job's ranks (``cores > 1``): the
    rank shape again (tasks, CPUs and GPUs per task), the PMI, kill-on-bad-exit.

    Raises:
        ValueError: GPUs per rank that are not whole.
    """
    return _flags(res, "srun", step_only=True)


def memory_text(gigabytes) -> str:
    """``memory_max`` (GB) as ``sbatch --mem`` takes it: whole GB as ``4G``, anything else
    in whole MB, rounded up (``--mem`` refuses ``1.5G``) — never less than asked."""
    if gigabytes == int(gigabytes):
        return f"{int(gigabytes)}G"
    return f"{math.ceil(gigabytes * 1024)}M"


def sbatch_lines(res: Resources) -> tuple[list[str], list[str]]:
    """The ``#SBATCH`` lines of a batch job's resources (without name, directory, output
    and dependencies, which are the queue's).

    Args:
        res: the job's resources; ``res.queue_options`` may hold ``partition``,
            ``account``, ``qos`` (str) and ``memory_max`` (GB).

    Returns:
        (the lines, the queue-option keys the built-in script cannot render).

    Raises:
        ValueError: GPUs per rank that are not whole.
    """
    lines = ["#SBATCH " + flag for flag in _flags(res, "sbatch")]
    unknown = []
    for key, value in res.queue_options.items():
        pattern = SBATCH_QUEUE_OPTIONS.get(key)
        if pattern is None:
            unknown.append(key)
        elif value is not None:
            lines.append("#SBATCH " + pattern.format(memory_text(value) if key == "memory_max" else value))
    return lines, unknown


def template_variables(res: Resources) -> dict:
    """The variables a jinja2 ``submission_template`` sees — and the keyword arguments a
    pysqa ``QueueAdapter.submit_job`` gets, whose templates use the same names.

    ``run_time_max`` is the granted limit in seconds (whole minutes rounded up, times 60),
    so a template that divides by 60 (``run_time_max // 60``) gets the same minutes as
    srun and ``#SBATCH``; ``run_time_minutes`` gives them directly.

    Returns:
        ``cores`` (ranks), ``threads_per_core`` (CPUs per rank), ``gpus_per_core`` (per
        rank), ``num_nodes``, ``exclusive``, ``run_time_max`` (s), ``run_time_minutes``,
        ``priority``, ``nice``, and the queue options (``partition``, ...); ``memory_max``
        in whole GB rounded up (pysqa counts whole GB; its templates append ``G``) with
        ``memory_text`` the exact amount as ``#SBATCH --mem`` takes it (``1536M``).
    """
    return {
        "cores": res.ranks,
        "threads_per_core": res.threads_per_rank,
        # whole as an int: a template's "--gpus-per-task={{gpus_per_core}}" must not read "2.0"
        "gpus_per_core": int(res.gpus_per_rank) if res.gpus_per_rank == int(res.gpus_per_rank) else res.gpus_per_rank,
        "num_nodes": res.nodes,
        "exclusive": res.exclusive,
        "run_time_max": res.granted_seconds,
        "run_time_minutes": res.time_minutes,
        "priority": res.priority,
        "nice": _nice(res),
        **res.queue_options,
        **_memory_variables(res.queue_options.get("memory_max")),
    }


def _memory_variables(gigabytes) -> dict:
    # pysqa's memory_max is whole GB, and its templates write "--mem={{memory_max}}G", which
    # sbatch refuses for 1.5: whole GB rounded up there, the exact amount in memory_text
    if gigabytes is None:
        return {}
    return {"memory_max": math.ceil(gigabytes), "memory_text": memory_text(gigabytes)}


def mpiexec_args(res: Resources, family: str) -> list[str]:
    """``mpiexec``'s flags for one world (after ``mpiexec``, before the command).

    Args:
        res: its resources (ranks, oversubscribe).
        family: ``"openmpi"``, ``"mpich"`` or ``"unknown"`` (``launch.mpi.mpi_family``):
            Open MPI needs ``--oversubscribe`` to place more ranks than cores; MPICH does
            it anyway and rejects the flag.

    Returns:
        The flags.
    """
    return ["-n", str(res.ranks), *(["--oversubscribe"] if res.oversubscribe and family == "openmpi" else [])]


# Flux's urgency: 0 (held) to 31 (expedite); 16 is the default and the most a user who does
# not own the instance may ask (Flux refuses more, which reaches the user as a QueueError).
# executorlib passes resource_dict["priority"] straight through as the urgency; so do we.
FLUX_DEFAULT_URGENCY = 16
FLUX_MOST_URGENCY = 31


def raised_priority_remedy(priority, backend: str) -> str | None:
    """What to tell a user whose queue refused a raised priority (SLURM: a negative nice
    from a non-operator; Flux: an urgency above 16 from a non-owner); None where the
    priority did not raise anything.

    Args:
        priority: the task's ``priority``.
        backend: ``"slurm"`` or ``"flux"``.

    Returns:
        A sentence naming the request and the remedy, or None.
    """
    if priority is None:
        return None
    if backend == "flux":
        if priority <= FLUX_DEFAULT_URGENCY:
            return None
        return (
            f"priority={priority} asks for urgency {priority}, and only the owner of the Flux instance may ask "
            f"more than {FLUX_DEFAULT_URGENCY}: use priority <= {FLUX_DEFAULT_URGENCY} (Flux's default urgency), "
            "or run inside your own instance (flux alloc / flux batch)"
        )
    if priority <= 0:
        return None
    return (
        f"priority={priority} asks for --nice={-int(priority)}, and only a SLURM operator may set a negative nice: "
        "use priority <= 0 (a negative priority lowers this job below your others), "
        "or ask your SLURM administrator for operator rights"
    )


def flux_urgency(res: Resources) -> int:
    """Flux's urgency for ``res.priority``: the priority itself, as executorlib passes it
    (1 lowest .. 31 highest; 16 is Flux's default).

    Args:
        res: the resources; ``priority`` None is Flux's default.

    Returns:
        The urgency, 1..31.

    Raises:
        ValueError: a priority outside 1..31; 0 included, since Flux holds a job of urgency 0
            for ever and its future would never end.
    """
    if res.priority is None:
        return FLUX_DEFAULT_URGENCY
    priority = int(res.priority)
    if priority == 0:
        raise ValueError(
            "resource_dict['priority']=0 under Flux is urgency 0, which holds the job for ever (its future would "
            f"never end): use 1 (lowest) to {FLUX_MOST_URGENCY} (highest); {FLUX_DEFAULT_URGENCY} is Flux's default"
        )
    if not 1 <= priority <= FLUX_MOST_URGENCY:
        raise ValueError(
            f"resource_dict['priority']={priority} under Flux is the job's urgency, which Flux takes from 1 (lowest) "
            f"to {FLUX_MOST_URGENCY} (highest), as executorlib passes it: use 1..{FLUX_MOST_URGENCY}; "
            f"{FLUX_DEFAULT_URGENCY} is Flux's default"
        )
    return priority


def flux_jobspec_args(res: Resources) -> dict:
    """A Flux jobspec's resources, as plain data (Flux is not imported).

    Returns:
        ``num_tasks`` (ranks), ``cores_per_task`` (threads per rank), ``gpus_per_task``,
        ``num_nodes`` (None: Flux's choice), ``exclusive``, ``duration`` (seconds, as
        given: Flux counts seconds, so nothing is rounded; 0 means no limit), ``urgency``
        (the priority itself, 1..31, ``flux_urgency``), ``cwd``
        (absolute or None), ``shell_options`` (``{"pmi": ...}`` when a PMI is chosen).

    Raises:
        ValueError: GPUs per rank that are not whole; a priority outside 1..31.
    """
    return {
        "num_tasks": res.ranks,
        "cores_per_task": res.threads_per_rank,
        "gpus_per_task": _whole_gpus(res) or 0,
        "num_nodes": res.nodes,
        "exclusive": res.exclusive,
        "duration": 0 if res.time_limit is None else res.time_limit,
        "urgency": flux_urgency(res),
        "cwd": res.cwd,
        "shell_options": {"pmi": res.pmi} if res.pmi else {},
    }
