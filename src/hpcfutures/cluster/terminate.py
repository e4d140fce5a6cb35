"""Cancel the jobs recorded in a cache directory — for a driver that left with
``wait=False`` and whose jobs are no longer wanted."""

from __future__ import annotations

from hpcfutures.cache.entry import EntryReader
from hpcfutures.cache.store import CacheStore, check_key, entry_paths


def _queue(pysqa_config_directory=None, backend=None):
    from hpcfutures.cluster.queues import PysqaQueue, SlurmQueue

    if backend not in (None, "slurm", "flux"):
        raise ValueError(f"backend={backend!r}: the queues are 'slurm' (the default) and 'flux'")
    if pysqa_config_directory:
        return PysqaQueue(pysqa_config_directory)
    if backend == "flux":
        from hpcfutures.cluster.flux_queue import FluxQueue

        return FluxQueue()
    return SlurmQueue()


def _queued_job(path: str) -> str | None:
    try:
        with EntryReader(path) as reader:
            header = reader.header
    except (OSError, ValueError):
        return None
    return header.get("job_id") if header.get("status") == "queued" else None


def terminate_tasks_in_cache(cache_directory, pysqa_config_directory=None, backend=None) -> list[str]:
    """Cancel every job whose entry in ``cache_directory`` has no result yet; returns their ids."""
    jobs = [job for job in (_queued_job(p) for p in entry_paths(cache_directory)) if job]
    _queue(pysqa_config_directory, backend).cancel(jobs)
    return jobs


def terminate_task_in_cache(cache_directory, cache_key: str, pysqa_config_directory=None, backend=None) -> str | None:
    """Cancel the job of one entry (by its cache key); returns its id, or None if it had none."""
    job = _queued_job(CacheStore(cache_directory).path(check_key(cache_key)))
    if job:
        _queue(pysqa_config_directory, backend).cancel([job])
    return job
