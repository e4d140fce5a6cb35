"""Neutral job states: the words every queue's own states are translated to.

A queue (``batch.queues``: SLURM, pysqa, local processes; ``batch.flux_queue``) answers ``states``
in ``JobState``, through one translation table of its own and ``translate``; the engine
(``engines/job_per_call.py``) and srun's pending-job watcher (``launch/pending.py``) read
only these values. Stdlib only; below ``launch/`` so that both can use it.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """A job's state in words every queue can be translated to. ``str`` values, so logs
    and messages read the same as before (``job 7: PENDING -> RUNNING``)."""

    PENDING = "PENDING"  # waiting to start (held, queued, being configured, requeued)
    RUNNING = "RUNNING"  # started and not ended (including suspended and completing)
    COMPLETED = "COMPLETED"  # ended with exit code 0
    FAILED = "FAILED"  # ended otherwise: a non-zero exit, a node failure, out of memory
    CANCELLED = "CANCELLED"  # ended by a cancel (a user, an administrator, preemption)
    TIMEOUT = "TIMEOUT"  # ended at its time limit
    UNKNOWN = "UNKNOWN"  # the queue no longer knows the job, or said something untranslatable

    def __str__(self) -> str:  # the word alone in messages, on every Python version
        return self.value

    @property
    def ended(self) -> bool:
        """Whether the job will not run (further): no query can see it change again."""
        return self not in (JobState.PENDING, JobState.RUNNING)


# terminal states, for the engine (UNKNOWN included: a job no query can follow)
ENDED = frozenset(s for s in JobState if s.ended)

# squeue's %T words (squeue(1) "JOB STATE CODES"); sacct's longer forms ("CANCELLED by 0")
# are reduced to their first word by translate()
SLURM_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
}

# pysqa's get_status_of_jobs words; None and "finished": the job left the queue
PYSQA_STATES = {
    "pending": JobState.PENDING,
    "running": JobState.RUNNING,
    "error": JobState.FAILED,
    "finished": JobState.UNKNOWN,
}

# Flux's words for a job (``flux.job.JobInfo``): an active job's state; an inactive one's
# result. The queue asks for the result once the state is INACTIVE (batch.flux_queue).
FLUX_STATES = {
    "DEPEND": JobState.PENDING,
    "PRIORITY": JobState.PENDING,
    "SCHED": JobState.PENDING,
    "NEW": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "CLEANUP": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
}


def translate(table: dict, word) -> JobState:
    """A queue's state word as a ``JobState``.

    Args:
        table: the queue's translation table (word -> ``JobState``).
        word: what the queue said, e.g. ``"CANCELLED by 0"`` or ``"CANCELLED+"``: only
            the first word counts, without SLURM's trailing ``+``.

    Returns:
        The ``JobState``; ``JobState.UNKNOWN`` for None or a word missing from the table.
    """
    if not isinstance(word, str):
        return table.get(word, JobState.UNKNOWN)
    text = word.strip()
    base = text.split(None, 1)[0].rstrip("+") if text else ""
    return table.get(base, table.get(text, JobState.UNKNOWN))
