"""Cancel the jobs recorded in a cache directory — for a driver that left with
``wait=False`` and whose jobs are no longer wanted.

Each queued entry's job record (``cache.entry.write_job_record``) holds its job id and the
``kind`` of queue it was submitted to
(``batch.queues.QUEUES``); the job is cancelled by that same queue, so a cache directory
of SLURM jobs, Flux jobs, pysqa jobs or local processes (``TestClusterExecutor``) is
cleaned the same way. Entries written before the queue was recorded count as ``backend`` (SLURM by default,
pysqa where ``pysqa_config_directory`` is given).
"""

from __future__ import annotations

from hpcfutures.cache.entry import mark_job_ended
from hpcfutures.cache.store import CacheStore, check_key, entry_paths, queued_job


def _check_backend(backend: str | None) -> None:
    from hpcfutures.batch.queues import QUEUES

    if backend is not None and backend not in QUEUES:
        known = ", ".join(sorted(QUEUES))
        raise ValueError(f"backend={backend!r} is not a queue hpcfutures knows; use one of: {known} (or None: the queue each entry records)")


def _queue_for(kind: str | None, pysqa_config_directory=None, backend: str | None = None):
    from hpcfutures.batch.queues import QUEUES

    if kind is None:  # an entry from before queues were recorded
        kind = backend or ("pysqa" if pysqa_config_directory else "slurm")
    if kind not in QUEUES:
        raise ValueError(f"a cache entry names the queue {kind!r}, which this hpcfutures does not know")
    if kind == "pysqa" and not pysqa_config_directory:
        raise ValueError("the cache holds jobs submitted through pysqa: pass the pysqa_config_directory they were submitted with")
    return QUEUES[kind](pysqa_config_directory=pysqa_config_directory)


def _queued_job(path: str) -> tuple[str, str, str | None] | None:
    """(entry path, job id, queue kind) of an entry whose job has not written its result; None otherwise."""
    record = queued_job(path)
    return None if record is None else (path, str(record["job_id"]), record.get("queue"))


def _cancel(found: list, pysqa_config_directory, backend) -> list[str]:
    """Cancel ``found`` ((entry path, job id, queue kind) each) and mark each entry's job
    record ended, so the entry reads ``cancelled`` and a later run computes it again."""
    by_kind: dict = {}
    for _path, job, kind in found:
        by_kind.setdefault(kind, []).append(job)
    queues = {kind: _queue_for(kind, pysqa_config_directory, backend) for kind in by_kind}  # refuse before cancelling any
    for kind, jobs in by_kind.items():
        queues[kind].cancel(jobs)
    for path, job, kind in found:
        mark_job_ended(path, job, kind, "cancelled by terminate_tasks_in_cache")
    return [job for _path, job, _kind in found]


def terminate_tasks_in_cache(cache_directory, pysqa_config_directory=None, backend: str | None = None) -> list[str]:
    """Cancel every job whose entry in ``cache_directory`` has no result yet.

    Args:
        cache_directory: the executor's ``cache_directory``.
        pysqa_config_directory: the pysqa configuration the jobs were submitted with
            (needed for entries of jobs submitted through pysqa).
        backend: the queue (``"slurm"``, ``"flux"``, ``"pysqa"``, ``"local"``) of entries that do not
            record one (written by an older hpcfutures); None: SLURM, or pysqa where
            ``pysqa_config_directory`` is given.

    Returns:
        The ids of the jobs asked to end (jobs that had ended already are skipped quietly
        by their queue).

    Raises:
        ValueError: an unknown ``backend``, or pysqa jobs without ``pysqa_config_directory``
            (nothing is cancelled then).
    """
    _check_backend(backend)
    found = [job for job in (_queued_job(p) for p in entry_paths(cache_directory)) if job]
    return _cancel(found, pysqa_config_directory, backend)


def terminate_task_in_cache(cache_directory, cache_key: str, pysqa_config_directory=None, backend: str | None = None) -> str | None:
    """Cancel the job of one entry.

    Args:
        cache_directory: the executor's ``cache_directory``.
        cache_key: the entry's key.
        pysqa_config_directory, backend: as for ``terminate_tasks_in_cache``.

    Returns:
        The job's id, or None if the entry has no job waiting for its result.

    Raises:
        ValueError: a malformed ``cache_key``, an unknown ``backend``, or a pysqa job
            without ``pysqa_config_directory``.
    """
    _check_backend(backend)
    found = _queued_job(CacheStore(cache_directory).path(check_key(cache_key)))
    if found is None:
        return None
    _cancel([found], pysqa_config_directory, backend)
    return found[1]
