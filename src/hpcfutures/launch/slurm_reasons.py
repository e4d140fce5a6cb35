"""Which SLURM pending reasons mean "this job will never start".

A pending job carries a reason (``squeue -o %r``). Most say *later*: the job waits for
cores (``Resources``), for its turn (``Priority``), for another job (``Dependency``), for
a limit shared with the user's other jobs (``AssocGrpCpuLimit``, ``AssocMaxJobsLimit``:
they clear when those jobs end). A few say *never*: the request itself exceeds what the
partition, the association or the QOS allows for any one job (``PartitionConfig``,
``PartitionNodeLimit``, ``PartitionTimeLimit``, ``AssocMaxNodesPerJobLimit``, ...), names
a constraint no node has (``BadConstraints``), asks for nodes that are not available
(``ReqNodeNotAvail``), or an account or QOS it may not use. Waiting for those waits
forever. A reason not listed here counts as *later*: waiting too long is a smaller fault
than failing a job that would have run.
"""

from __future__ import annotations

# exact reason names (SLURM 22.05 job_reason strings)
_NEVER = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "ReqNodeNotAvail",
        "DependencyNeverSatisfied",
        "InvalidAccount",
        "InvalidQOS",
        "AccountNotAllowed",
        "QOSNotAllowed",
        "PartitionNotAvail",
    }
)


def never_starts(reason: str | None) -> bool:
    """True when a pending job with this ``squeue %r`` reason can never start.

    Args:
        reason: the pending reason as squeue prints it, e.g. ``"PartitionConfig"`` or
            ``"ReqNodeNotAvail, UnavailableNodes:n[1-4]"``; ``None`` or empty for none.

    Returns:
        True for a reason of the *never* class, False for *later* and unknown reasons.
    """
    if not reason:
        return False
    name = reason.split(",", 1)[0].strip()
    if name in _NEVER:
        return True
    # a limit on one job (not on a group of jobs, which clears when the others end):
    # AssocMaxNodesPerJobLimit, QOSMaxWallDurationPerJobLimit, QOSMinCpuNotSatisfied, ...
    if name.startswith(("Assoc", "QOS")) and ("PerJob" in name or "MinCpu" in name or "MinGRES" in name):
        return True
    return False


def explain(reason: str, request: str) -> str:
    """The message a future fails with: the scheduler's reason and the request behind it.

    Args:
        reason: SLURM's pending reason (``squeue %r``).
        request: the request as a readable string (cores, nodes, time, ...).
    """
    return (
        f"SLURM will never start this request: it stays pending with the reason {reason!r} "
        f"(the request exceeds what the partition, account or QOS allows, or names nodes or "
        f"constraints that are not available); request: {request}. The job was cancelled; "
        "ask for fewer nodes, cores, memory or time, or another partition (sinfo, scontrol show partition)"
    )


# What srun prints when SLURM refuses a request outright (no job or step is made): these
# are verdicts on the request itself, so the same request would be refused again. A step
# that merely cannot fit *now* makes srun wait ("Job step creation temporarily disabled,
# retrying"), which is not listed.
_SRUN_REFUSALS = (
    "More processors requested than permitted",
    "Requested node configuration is not available",
    "Invalid generic resource",
    "Invalid Trackable RESource",
    "Memory required by task is not available",
    "Invalid feature specification",
    "Invalid partition name specified",
    "Invalid account or account/partition combination specified",
    "Invalid qos specification",
    "Node count specification invalid",
    "Requested time limit is invalid",
    "Job violates accounting/QOS policy",
)


def srun_refusal(text: str, verdict: bool = False) -> str | None:
    """srun's own words when SLURM refused a request, from srun's stderr.

    Args:
        text: what srun wrote on stderr (any amount; the task's own output may be mixed in).
        verdict: ``True`` for the output of ``srun --test-only``, whose only job is to ask:
            any ``allocation failure`` or ``Unable to allocate resources`` line is then a
            refusal, not only the ones listed here.

    Returns:
        The relevant lines joined with ``"; "`` (srun's ``error:`` lines, and the
        ``allocation failure`` line unless it only says ``No error``), or ``None`` when
        the text holds no refusal.
    """
    lines = [line.strip() for line in text.splitlines()]
    relevant = [
        line for line in lines
        if line.startswith("srun: error:") or (line.startswith("allocation failure:") and not line.endswith("No error"))
    ]
    refused = any(reason in line for line in relevant for reason in _SRUN_REFUSALS)
    if verdict and not refused:
        refused = any("allocation failure" in line or "Unable to allocate resources" in line for line in lines)
        if refused and not relevant:  # an allocation failure that says nothing more: keep it
            relevant = [line for line in lines if "allocation failure" in line]
    if not refused:
        return None
    return "; ".join(dict.fromkeys(relevant))  # in order, each line once


def explain_refusal(refusal: str, request: str) -> str:
    """The message of a request SLURM refused at once (``srun_refusal``'s lines).

    Args:
        refusal: srun's or sbatch's refusal line.
        request: the request as a readable string.
    """
    return (
        f"SLURM will never start this request ({request}): {refusal}; ask for fewer nodes, cores, GPUs, "
        "memory or time, or another partition (sinfo, scontrol show partition)"
    )
