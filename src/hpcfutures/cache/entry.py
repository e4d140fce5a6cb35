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
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import time

VERSION = 2  # 2: checksums of header, input and output
MAGIC = b"HPCFCACHE"
SUFFIX = ".hpcfcache"
TEMP_MARK = ".tmp-"  # temporary names: ".<name>.tmp-<pid>-<random>"; never read as entries
_LENGTH = struct.Struct("<Q")
_SMALL = 1 << 20


class CacheEntryError(ValueError):
    """An entry that cannot be read: written by an unknown format version, or damaged."""


def write_entry(path: str, header: dict, input_bytes, output_bytes) -> int:
    """Write atomically; return the entry's size in bytes."""
    directory, name = os.path.split(path)
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
    tmp = os.path.join(directory, f".{name}{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            for part in parts:
                view = memoryview(part).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
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
        self._file.seek(self._input_at)
        data = self._part()
        if _digest(data) != self.header.get("input_sha256"):
            raise CacheEntryError(f"{self.path}: damaged (the stored input does not match its checksum)")
        return data

    def input(self) -> dict:
        return _unpickle(self.path, self.input_bytes(), "input")

    def output(self) -> dict:
        """The stored reply, unpickled from the file as it is read — after a first pass
        over the same bytes has checked them against their checksum (reading twice costs
        far less than holding a second copy of a large result)."""
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
