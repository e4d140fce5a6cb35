"""Cache lookups and writes for the executors, and the public inspection functions.

A lookup is O(1): the key names the file (``<cache_directory>/<cache_key>.hpcfcache``), so
it is one ``open`` — a miss is one failed ``open`` — and a hit unpickles the stored result
in the driver without starting any worker. Failed tasks are stored too (their error stays
inspectable) but never served: the next run computes them again.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from concurrent.futures import Future

from hpcfutures.cache.entry import SUFFIX, TEMP_MARK, CacheEntryError, CacheEntryNotFinishedError, EntryReader, Status, entry_status, make_header, read_job_record, write_entry
from hpcfutures.cache.fingerprint import default_key
from hpcfutures.logs import get_logger

_log = get_logger("cache")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def check_key(key: str, where: str = "cache_key") -> str:
    """A key is a relative path below the cache directory: ``/`` makes subfolders.

    Args:
        key: the key to check.
        where: the parameter named in the error (``cache_key``, ``resource_dict['cache_key']``).

    Returns:
        ``key`` unchanged.

    Raises:
        ValueError: an absolute key, an empty, ``.`` or ``..`` part, a NUL, or the
            temporary-file mark.
    """
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise ValueError(f"{where}={key!r}: a cache key is a relative name; '/' separates subfolders, no '..' or empty parts")
    if TEMP_MARK in key:
        raise ValueError(f"{where}={key!r} must not contain {TEMP_MARK!r} (reserved for files being written)")
    return key


class CacheStore:
    """One cache directory, as the executors use it.

    Entries are written by a writer thread of the store, after the future has its result:
    a miss then costs the caller the key and one failed ``open``, not the file system's
    create-write-rename. ``flush()`` (called by the executor's shutdown) returns once every
    entry is on disk, so a re-run after the ``with`` block finds them all."""

    _IDLE_EXIT = 2.0  # seconds a writer thread lingers for the next entry before it ends

    def __init__(self, directory):
        self.directory = os.path.abspath(os.fspath(directory))
        self._cond = threading.Condition()
        self._pending: deque = deque()
        # key -> (succeeded, pickled reply) until the writer has stored it: a repeat of the
        # call meanwhile is still a hit, and gets its own copy of the result
        self._unwritten: dict[str, tuple] = {}
        self._writing = False
        self._writer: threading.Thread | None = None

    default_key = staticmethod(default_key)

    def path(self, key: str) -> str:
        """The entry file of ``key`` (a relative key; ``/`` makes subfolders)."""
        return os.path.join(self.directory, key + SUFFIX)

    def lookup(self, key: str) -> dict | None:
        """The stored reply of a successful run, or ``None`` (miss, stored failure, or an
        entry that cannot be read — which is reported, and the task runs again)."""
        unwritten = self._unwritten.get(key)
        if unwritten is not None:
            from hpcfutures.wire.frames import loads

            return loads(unwritten[1]) if unwritten[0] else None
        try:
            reader = EntryReader(self.path(key))
        except FileNotFoundError:
            return None
        except (CacheEntryError, OSError) as exc:
            _unreadable(exc)
            return None
        with reader:
            if Status.of(reader.header) is not Status.OK:
                return None
            try:
                reply = reader.output()
            except CacheEntryError as exc:
                _unreadable(exc)
                return None
        return reply if isinstance(reply, dict) and "result" in reply else None

    def save(self, key: str, task, reply: dict, raw, runtime: float | None) -> None:
        """Queue the entry for the writer thread.

        Args:
            key: the entry's key.
            task: the task whose call is stored (its pickle is the entry's input).
            reply: the reply dict (``result`` or ``error`` and ``traceback``).
            raw: the reply's pickle as the worker sent it; ``None``: pickled here.
            runtime: the call's run time in seconds, ``None`` when unknown.
        """
        if raw is None:
            from hpcfutures.wire.frames import dumps

            raw = dumps(reply)
        status = Status.OK if "result" in reply else Status.ERROR
        header = make_header(key, status, function=task.name, resource_dict=task.resources, runtime=runtime)
        unwritten = ("result" in reply, raw)
        with self._cond:
            self._pending.append((key, header, task.payload or b"", unwritten))
            self._unwritten[key] = unwritten
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_pending, name="hpcfutures-cache-writer", daemon=True)
                self._writer.start()
            self._cond.notify_all()

    def _write_pending(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(self._IDLE_EXIT)
                if not self._pending:
                    self._writer = None
                    self._cond.notify_all()
                    return
                key, header, input_bytes, unwritten = self._pending.popleft()
                self._writing = True
            try:
                write_entry(self.path(key), header, input_bytes, unwritten[1])
            except Exception as exc:  # a full disk must not cost the user anything but the entry
                warnings.warn(f"could not store cache entry {key!r} in {self.directory}: {exc}", stacklevel=2)
            finally:
                with self._cond:
                    if self._unwritten.get(key) is unwritten:  # not replaced by a newer run
                        del self._unwritten[key]
                    self._writing = False
                    self._cond.notify_all()

    def flush(self) -> None:
        """Return once every queued entry is written."""
        with self._cond:
            while self._pending or self._writing:
                self._cond.wait()


# -- public inspection ---------------------------------------------------------------
def entry_paths(cache_directory) -> list[str]:
    """Every entry file below ``cache_directory`` (temporary files of unfinished writes excluded)."""
    found = []
    for root, _dirs, files in os.walk(os.fspath(cache_directory)):
        for name in files:
            if name.endswith(SUFFIX) and TEMP_MARK not in name:
                found.append(os.path.join(root, name))
    return sorted(found)



def queued_job(entry_path: str) -> dict | None:
    """The job record of an entry whose batch job has not written its result yet: the
    entry's status is ``queued`` and the record names a job (what a later run adopts and
    ``terminate_tasks_in_cache`` cancels).

    Args:
        entry_path: the entry's file.

    Returns:
        ``{"job_id": str, "queue": kind}``, or ``None`` (no such entry, another status, no
        job record, or an unreadable header).
    """
    try:
        with EntryReader(entry_path) as reader:
            header = reader.header
    except (OSError, ValueError):  # CacheEntryError is a ValueError: damaged, not queued
        return None
    if Status.of(header) is not Status.QUEUED:
        return None
    record = read_job_record(entry_path)
    return None if record is None or record.get("ended") else record


def key_of(cache_directory, path: str) -> str:
    """The key of the entry file ``path`` below ``cache_directory`` (the inverse of
    ``CacheStore.path``).

    Args:
        cache_directory: the cache's root folder.
        path: an entry file below it.
    """
    rel = os.path.relpath(path, os.fspath(cache_directory))
    return rel[: -len(SUFFIX)].replace(os.sep, "/")


def _unreadable(exc: BaseException) -> None:
    """Report an entry that cannot be used: a warning for the user and a log record."""
    _log.warning("cache entry unreadable, the task runs again: %s", exc)
    warnings.warn(f"cache entry not used, the task runs again: {exc}", stacklevel=5)


def read_entry(cache_directory, path: str, load: bool = True) -> dict[str, Any]:
    """One entry as a flat dict (the shape ``get_cache_data`` returns).

    Args:
        cache_directory: the cache's root folder.
        path: the entry's file below it.
        load: unpickle the stored input and output (``False``: the header's fields only).
    """
    record: dict[str, Any] = {
        "cache_key": key_of(cache_directory, path),
        "filename": path,
        "size": _size(path),
        "status": Status.UNREADABLE.value,
        "function": None,
        "input_args": None,
        "input_kwargs": None,
        "output": None,
        "error": None,
        "runtime": None,
        "resource_dict": None,
        "written": None,
        "queue_id": None,
    }
    try:
        with EntryReader(path) as reader:
            header = reader.header
            record.update(
                status=header.get("status"),
                function=header.get("function"),
                runtime=header.get("runtime"),
                resource_dict=header.get("resource_dict"),
                written=header.get("written"),
            )
            if Status.of(header) is Status.QUEUED:
                job = read_job_record(path)
                record.update(status=str(entry_status(header, job)), queue_id=(job or {}).get("job_id"))
            if not load:
                return record
            call = reader.input()
            record.update(function=call.get("fn"), input_args=call.get("args"), input_kwargs=call.get("kwargs"))
            if Status.of(header) is Status.QUEUED:  # its job has not written an output yet
                return record
            reply = reader.output()
    except (CacheEntryError, OSError) as exc:  # a header may read fine above a damaged body
        _log.warning("cache entry unreadable: %s", exc)
        record.update(status=Status.UNREADABLE.value, error=exc)
        return record
    if "result" in reply:
        record["output"] = reply["result"]
    else:
        from hpcfutures.errors import rebuild

        record["error"] = rebuild(reply)
    return record


def stat_or_none(path: str):
    """``os.stat`` of an entry that may vanish meanwhile (another process deleting it)."""
    try:
        return os.stat(path)
    except OSError:
        return None


def _size(path: str) -> int | None:
    st = stat_or_none(path)
    return None if st is None else st.st_size


def get_cache_data(cache_directory) -> list[dict]:
    """One dict per cache entry: ``function`` (the function object), ``input_args``,
    ``input_kwargs``, ``output``, ``error``, ``runtime`` (seconds), ``resource_dict``,
    ``filename``, ``status`` (``queued``, ``ok``, ``error``, ``cancelled`` or ``unreadable``;
    ``cache.entry.Status``), ``cache_key``, ``size`` (bytes), ``written`` (a Unix time) and
    ``queue_id`` (for a ``queued`` entry, the id of the batch job that will write the
    result; for a ``cancelled`` one, the job that ended without writing it; None otherwise).
    ``pandas.DataFrame(get_cache_data(d))`` makes a table of it.

    Args:
        cache_directory: the executor's ``cache_directory``.

    Returns:
        A list of dicts, one per entry, sorted by file name.
    """
    return [read_entry(cache_directory, path) for path in entry_paths(cache_directory)]


def get_future_from_cache(cache_directory, cache_key: str) -> Future:
    """A done future holding the stored result (or the stored exception) of ``cache_key``.
    ``FileNotFoundError`` when there is no such entry; ``CacheEntryNotFinishedError`` when it
    holds no output yet (its batch job is queued or running) or never will (the job was
    cancelled or died); ``CacheEntryError`` when it cannot be read.

    Args:
        cache_directory: the folder passed as ``cache_directory`` to the executor.
        cache_key: the entry's key (as listed by ``get_cache_data``).

    Returns:
        A done ``Future``.

    Raises:
        FileNotFoundError: no entry of that key.
        CacheEntryNotFinishedError: the entry is ``queued`` or ``cancelled`` (no output).
        CacheEntryError: the entry cannot be read.
        ValueError: a key that is not a relative name.
    """
    path = CacheStore(cache_directory).path(check_key(cache_key))
    try:
        reader = EntryReader(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no cache entry {cache_key!r} in {os.fspath(cache_directory)!r} (looked for {path})") from None
    with reader:
        if not Status.of(reader.header) or not Status.of(reader.header).finished:
            _not_finished(cache_directory, cache_key, reader.header, read_job_record(path))
        reply = reader.output()
    future: Future = Future()
    if isinstance(reply, dict) and "result" in reply:
        future.set_result(reply["result"])
    else:
        from hpcfutures.errors import rebuild

        future.set_exception(rebuild(reply) if isinstance(reply, dict) and "error" in reply else CacheEntryError(f"{path}: no result stored"))
    return future


def _not_finished(cache_directory, cache_key: str, header: dict, record: dict | None) -> None:
    """Raise the error for an entry without an output, saying why and what to do."""
    status = entry_status(header, record)
    where = f"cache entry {cache_key!r} in {os.fspath(cache_directory)!r}"
    job = f"job {record['job_id']} ({record.get('queue') or 'queue not recorded'})" if record else None
    if status is Status.CANCELLED:
        raise CacheEntryNotFinishedError(
            f"{where} has no result: its {job} ended without writing one ({record['ended']}); "
            "submit the call again with the same cache_directory and cache_key to compute it"
        )
    if status is Status.QUEUED:
        running = f"its {job} has not written it yet" if job else "its batch job has not been given an id yet"
        raise CacheEntryNotFinishedError(
            f"{where} has no result yet (status queued): {running}; wait for the job to end, or submit the "
            "call again with the same cache_directory and cache_key to get a future that follows the job "
            "(terminate_task_in_cache cancels it)"
        )
    raise CacheEntryError(f"{where} has status {header.get('status')!r}, which this hpcfutures does not know")
