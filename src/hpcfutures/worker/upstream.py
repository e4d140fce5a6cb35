"""Markers for results stored in other cache entries — what a queued job receives in place
of a future of another job. A module of its own, so the class is the same object whether
``file_task`` runs as ``__main__`` or is imported."""

from __future__ import annotations

from hpcfutures.cache.entry import EntryReader, Status
from hpcfutures.nested import replace


class UpstreamResult:
    """Stands for the result stored in another entry (``path``).

    Args:
        path: the upstream task's cache entry.
        key: its cache key, for errors.
    """

    def __init__(self, path: str, key: str):
        self.path = path
        self.key = key

    def __reduce__(self):
        return (UpstreamResult, (self.path, self.key))

    def load(self):
        """The upstream task's result, read from its entry in the job.

        Raises:
            RuntimeError: the entry holds no result (the upstream failed or has not run).
            CacheEntryError: the entry cannot be read.
        """
        with EntryReader(self.path) as reader:
            reply = reader.output()
        if "result" not in reply:
            raise RuntimeError(f"the upstream task {self.key!r} has no result (status {Status.of(reader.header)})")
        return reply["result"]


def resolve(obj):
    """``obj`` with every ``UpstreamResult`` replaced by its value (lists, tuples, dicts)."""
    return replace(obj, UpstreamResult, UpstreamResult.load)


