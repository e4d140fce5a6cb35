"""One cache entry on disk — the format, and nothing else.

    HPCFCACHE <version> <SHA-256 of the header, hex>\\n
    <8-byte length><header: JSON — status, function, runtime, resources, times, sizes,
                    and the SHA-256 of the input and of the output>
    <8-byte length><input: the pickled call {"fn", "args", "kwargs"}>
    <8-byte length><output: the pickled reply {"result": ...} or {"error": ..., "traceback": ...}>

The header comes first so listing a cache reads a few hundred bytes per entry; the output
is last and is unpickled straight from the file, so a hit never holds a second copy of a
large result. Every part is checked against its checksum before it is used (the output by
a streaming pass over the file before it is unpickled): a flipped bit anywhere makes the
entry "damaged" — reported, and the task runs again — never a wrong value. Version 1
entries (no checksums) are refused the same way. An entry is written under a temporary name in its own directory and renamed
into place (atomic on POSIX): a reader sees the old entry or the new one, never half of
one, and of two writers of one key the last rename wins with a whole entry.

A queued entry (``SlurmClusterExecutor``) has a job record beside it,
``<entry>.job``: JSON ``{"job_id", "queue"}``, written by the driver once the queue gave the
job an id. It is a file of its own because the job may already have written its result into
the entry by then: rewriting the entry's header would lose it.

Everything that writes or reads the header's ``status`` uses ``Status``, and every header
is built by ``make_header`` (the executors' cache, the queued-job engine, the batch-job
worker, ``terminate_tasks_in_cache`` and ``hpcfutures cache`` all go through this file).
Imported by the workers too: standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import time
from enum import Enum

from hpcfutures.files import atomic_write

VERSION = 2  # 2: checksums of header, input and output
MAGIC = b"HPCFCACHE"
SUFFIX = ".hpcfcache"
TEMP_MARK = ".tmp-"  # temporary names: ".<name>.tmp-<pid>-<random>"; never read as entries
_LENGTH = struct.Struct("<Q")
_SMALL = 1 << 20


class CacheEntryError(ValueError):
    """An entry that cannot be read: written by an unknown format version, or damaged."""


class CacheEntryNotFinishedError(CacheEntryError):
    """An entry without an output: its batch job is queued or running (status ``queued``),
    or ended without writing one (``cancelled``). The message names the job and what to do."""


class Status(str, Enum):
    """The ``status`` of an entry. A ``str`` subclass, so headers stay plain JSON and
    ``Status.OK == "ok"`` holds for code and tools that compare text."""

    QUEUED = "queued"  # the input is stored and a job will write the output (queued-job executors)
    OK = "ok"  # the output is the call's result
    ERROR = "error"  # the output is the call's error
    UNREADABLE = "unreadable"  # not stored: what inspection reports for a damaged entry
    # not stored in a header either: what inspection reports for a ``queued`` entry whose job
    # record says the job ended without writing the output (``terminate_tasks_in_cache``,
    # scancel, a crash, the driver's shutdown); a later run computes it again, never serves it
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # the word alone in messages, on every Python version
        return self.value

    @property
    def finished(self) -> bool:
        """Whether the entry holds an output (``ok`` or ``error``)."""
        return self in (Status.OK, Status.ERROR)

    @classmethod
    def of(cls, header: dict) -> "Status | None":
        """The status a header records; None for a missing or unknown value."""
        try:
            return cls(header.get("status"))
        except ValueError:
            return None


def make_header(
    cache_key: str,
    status: Status,
    function: str | None = None,
    resource_dict: dict | None = None,
    runtime: float | None = None,
    **fields,
) -> dict:
    """The header of an entry, as ``write_entry`` takes it.

    Args:
        cache_key: the entry's key (its path below the cache directory, without suffix).
        status: what the entry holds.
        function: the name of the called function.
        resource_dict: the call's resources; ``None`` values and callables are left out
            (the header is JSON).
        runtime: seconds the call ran, where known.
        **fields: further fields: ``cwd`` (where a job runs the call), ``host``.

    Returns:
        A new dict; ``write_entry`` adds the version, the time and the sizes and checksums.

    Raises:
        ValueError: ``status`` is not a ``Status`` value.
    """
    header = {"cache_key": cache_key, "status": Status(status).value, "function": function}
    if resource_dict is not None:
        header["resource_dict"] = {k: v for k, v in resource_dict.items() if v is not None and not callable(v)}
    if runtime is not None:
        header["runtime"] = runtime
    header.update({k: v for k, v in fields.items() if v is not None})
    return header


JOB_SUFFIX = ".job"  # "<entry>.job": the job record of a queued entry


def write_job_record(entry_path: str, job_id: str, queue: str | None) -> None:
    """Record, beside a queued entry, the job that will write its output.

    Args:
        entry_path: the entry's file.
        job_id: the queue's id of the job.
        queue: the queue's ``kind`` (``batch.queues.QUEUES``), so ``terminate_tasks_in_cache``
            and a later run ask the queue the job was submitted to.

    Raises:
        OSError: the record could not be written.
    """
    atomic_write(entry_path + JOB_SUFFIX, json.dumps({"job_id": str(job_id), "queue": queue}))


def read_job_record(entry_path: str) -> dict | None:
    """The job record of an entry (``{"job_id", "queue"}``); None where there is none or it
    cannot be read (an entry whose job never got an id)."""
    try:
        with open(entry_path + JOB_SUFFIX, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("job_id") else None


def mark_job_ended(entry_path: str, job_id: str, queue: str | None, why: str) -> None:
    """Record that the job of a queued entry ended without writing its output (it was
    cancelled, or died): the entry then reads as ``Status.CANCELLED`` (``entry_status``),
    is not followed or cancelled again, and a later run computes it anew. The entry itself
    is not rewritten: a job that wrote its output after all still wins (its header says so).

    Args:
        entry_path: the entry's file.
        job_id: the queue's id of the job.
        queue: the queue's ``kind``.
        why: a few words: how the job ended (shown by ``get_future_from_cache``).

    Raises:
        OSError: the record could not be written.
    """
    atomic_write(entry_path + JOB_SUFFIX, json.dumps({"job_id": str(job_id), "queue": queue, "ended": why}))


def entry_status(header: dict, record: dict | None) -> "Status | None":
    """The status of an entry as inspection reports it: the header's, except that a
    ``queued`` entry whose job record says the job ended is ``Status.CANCELLED``.

    Args:
        header: the entry's header.
        record: its job record (``read_job_record``), or None.

    Returns:
        A ``Status``; None for a header with a missing or unknown status.
    """
    status = Status.of(header)
    if status is Status.QUEUED and record is not None and record.get("ended"):
        return Status.CANCELLED
    return status


def remove_job_record(entry_path: str) -> None:
    """Remove an entry's job record (its job ended); nothing happens where there is none."""
    try:
        os.unlink(entry_path + JOB_SUFFIX)
    except OSError:
        pass


def finish_header(header: dict, failed: bool, runtime: float | None = None, **fields) -> dict:
    """A copy of ``header`` for the entry once its output is known (``ok`` or ``error``).

    Args:
        header: the header the entry had (e.g. ``queued``).
        failed: the output is an error.
        runtime: seconds the call ran, where known.
        **fields: more fields to set (``host``).

    Returns:
        A new dict.
    """
    done = dict(header, status=(Status.ERROR if failed else Status.OK).value, **fields)
    if runtime is not None:
        done["runtime"] = runtime
    return done


def write_entry(path: str, header: dict, input_bytes, output_bytes) -> int:
    """Write atomically; return the entry's size in bytes.

    Args:
        path: the entry's file; written beside it and renamed into place.
        header: the JSON header (``make_header``); version and checksums are added here.
        input_bytes: the pickled call (function, arguments, resources).
        output_bytes: the pickled reply; ``b""`` for an entry whose job has not written one.

    Returns:
        The entry's size in bytes.
    """
    name = os.path.basename(path)
    header = dict(
        header,
        version=VERSION,
        written=time.time(),
        input_size=len(input_bytes),
        output_size=len(output_bytes),
        input_sha256=_digest(input_bytes),
        output_sha256=_digest(output_bytes),
    )
    head = json.dumps(header, default=repr).encode()
    first = b"%s %d %s\n" % (MAGIC, VERSION, _digest(head).encode())
    parts = [first, _LENGTH.pack(len(head)), head, _LENGTH.pack(len(input_bytes)), input_bytes]
    parts += [_LENGTH.pack(len(output_bytes)), output_bytes]
    size = sum(len(p) for p in parts)
    if size < _SMALL:  # one write call; large parts are written where they lie, uncopied
        parts = [b"".join(parts)]
    atomic_write(path, parts, temp_name=f".{name}{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}", make_dirs=True)
    return size


class EntryReader:
    """Open an entry and read its parts on demand. ``FileNotFoundError`` for no entry,
    ``CacheEntryError`` for one that cannot be trusted."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "rb")
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> "EntryReader":
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def _read_header(self) -> dict:
        first = self._file.readline(128)
        parts = first.split()
        if len(parts) < 2 or parts[0] != MAGIC or not parts[1].isdigit():
            raise CacheEntryError(f"{self.path} is not a hpcfutures cache entry (damaged, or another program's file)")
        version = int(parts[1])
        if version != VERSION:
            raise CacheEntryError(
                f"{self.path} was written in cache format version {version}; this hpcfutures reads version "
                f"{VERSION}. Use the hpcfutures that wrote it, or delete the entry (hpcfutures cache delete)."
            )
        head = self._part()
        if len(parts) != 3 or parts[2].decode("ascii", "replace") != _digest(head):
            raise CacheEntryError(f"{self.path}: damaged (the header does not match its checksum)")
        try:
            header = json.loads(head)
        except ValueError as exc:
            raise CacheEntryError(f"{self.path}: damaged header ({exc})") from None
        self._input_at = self._file.tell()
        expected = self._input_at + 16 + header.get("input_size", 0) + header.get("output_size", 0)
        actual = os.fstat(self._file.fileno()).st_size
        if expected != actual:
            raise CacheEntryError(f"{self.path}: damaged (size {actual} bytes, the header promises {expected})")
        return header

    def _part(self) -> bytes:
        raw = self._file.read(_LENGTH.size)
        if len(raw) != _LENGTH.size:
            raise CacheEntryError(f"{self.path}: damaged (truncated)")
        (n,) = _LENGTH.unpack(raw)
        data = self._file.read(n)
        if len(data) != n:
            raise CacheEntryError(f"{self.path}: damaged (truncated)")
        return data

    def input_bytes(self) -> bytes:
        """The stored call's pickle, checked against its checksum.

        Returns:
            The bytes as written by ``write_entry``.

        Raises:
            CacheEntryError: the bytes do not match the header's checksum.
        """
        self._file.seek(self._input_at)
        data = self._part()
        if _digest(data) != self.header.get("input_sha256"):
            raise CacheEntryError(f"{self.path}: damaged (the stored input does not match its checksum)")
        return data

    def input(self) -> dict:
        """The stored call, unpickled (``fn``, ``args``, ``kwargs``, ``resource_dict``).

        Raises:
            CacheEntryError: damaged bytes, or a pickle that cannot be loaded here.
        """
        return _unpickle(self.path, self.input_bytes(), "input")

    def output(self) -> dict:
        """The stored reply, unpickled from the file as it is read — after a first pass
        over the same bytes has checked them against their checksum (reading twice costs
        far less than holding a second copy of a large result).

        Raises:
            CacheEntryError: the bytes do not match their checksum, or cannot be unpickled here.
        """
        start = self._input_at + 8 + self.header["input_size"] + 8
        self._file.seek(start)
        hasher = hashlib.sha256()
        left = self.header.get("output_size", 0)
        while left:
            chunk = self._file.read(min(left, _SMALL))
            if not chunk:
                raise CacheEntryError(f"{self.path}: damaged (truncated)")
            hasher.update(chunk)
            left -= len(chunk)
        if hasher.hexdigest() != self.header.get("output_sha256"):
            raise CacheEntryError(f"{self.path}: damaged (the stored output does not match its checksum)")
        self._file.seek(start)
        try:
            return pickle.load(self._file)
        except Exception as exc:
            raise CacheEntryError(f"{self.path}: the stored output cannot be unpickled: {type(exc).__name__}: {exc}") from exc


def _digest(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _unpickle(path: str, data: bytes, what: str):
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise CacheEntryError(f"{path}: the stored {what} cannot be unpickled: {type(exc).__name__}: {exc}") from exc
