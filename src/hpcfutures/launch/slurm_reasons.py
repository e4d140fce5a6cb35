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
    """The message a future fails with: the scheduler's reason and the request behind it."""
    return (
        f"SLURM will never start this request: it stays pending with the reason {reason!r} "
        f"(the request exceeds what the partition, account or QOS allows, or names nodes or "
        f"constraints that are not available); request: {request}. The job was cancelled; "
        "ask for fewer nodes, cores, memory or time, or another partition (sinfo, scontrol show partition)"
    )
