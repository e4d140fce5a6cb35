"""Authenticated message frames, the one format both ends of every link speak.

A frame is ``MAC(key, payload) || payload`` where the payload is a pickle and the MAC a
32-byte keyed hash: keyed BLAKE2b for payloads under 1 MiB, HMAC-SHA256 from 1 MiB on
(both ends choose by the payload's length, which the MAC covers). The receiver checks the
MAC *before* unpickling, so a peer without the key can make us drop bytes but never run
code (unpickling is code execution).

Why two: ``_blake2`` is built into the interpreter and loads in ~0.5 ms, where ``hmac``
pulls in OpenSSL's ``_hashlib`` (~2.5 ms of every worker's start); OpenSSL's SHA-256 runs
at ~2 GB/s here against BLAKE2b's ~1.2 GB/s, which a 100 MB argument notices. So a
worker that only sees small messages never loads OpenSSL, and a large one is hashed at
the faster rate.

This module is imported by the worker processes, so it may import only the standard
library, and only what a bare start needs: ``_pickle`` rather than ``pickle`` (which adds
``re`` and friends, ~3 ms); cloudpickle is imported lazily, the first time something needs
pickling by value (a lambda, a function from ``__main__``, a class defined in a notebook).
"""

from __future__ import annotations

import os
from _operator import _compare_digest as compare_digest  # what hmac.compare_digest is

try:
    from _blake2 import blake2b as _blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b as _blake2b

import _pickle

HIGHEST_PROTOCOL = 5

KEY_ENV = "HPCFUTURES_KEY"
"""Environment variable carrying the hex key to a worker started through a launcher
(``mpiexec``, ``srun``): never the command line, where every user of the machine can read
it in ``ps``. The environment is readable by the same user (``/proc/PID/environ``) for
the life of the process, so workers the driver starts itself get the key through a pipe
instead (``KEY_FD_ENV``)."""

KEY_FD_ENV = "HPCFUTURES_KEY_FD"
"""Number of an inherited pipe holding the hex key: read once, closed, gone."""

KEY_FILE_ENV = "HPCFUTURES_KEY_FILE"
"""Path of a 0600 file holding the hex key, for MPI ranks started by a local ``mpiexec``
(which passes on the environment, not descriptors): rank 0 reads it and deletes it."""

DRIVER_PID_ENV = "HPCFUTURES_DRIVER_PID"
"""Pid of the driver; a worker on the same machine exits when that process ends."""

SYS_PATH_ENV = "HPCFUTURES_SYS_PATH"
"""The driver's ``sys.path``, which a worker adopts to import what the driver imported."""

MAC_SIZE = 32
_LENGTH_SIZE = 8  # frame length prefix, big-endian
_ONE_WRITE = 1 << 20  # below this a frame is joined and written at once
_BIG = 1 << 20  # from this payload size on, HMAC-SHA256 (OpenSSL's speed) instead of BLAKE2b


class AuthenticationError(Exception):
    """A frame whose MAC does not match the key: dropped unread."""


def new_key() -> bytes:
    """A fresh random key for one executor's links: 32 bytes from ``os.urandom``."""
    return os.urandom(32)


def take_key_from_env() -> bytes:
    """Read the key — from the inherited pipe where there is one, else from the
    environment — and remove it, so that subprocesses the user's function starts do not
    inherit it. (Removing a variable does not erase it from ``/proc/PID/environ``, which
    shows the environment the process started with; the pipe leaves nothing there.)

    The places are tried in order: the key file (``KEY_FILE_ENV``, deleted once read), the
    inherited pipe (``KEY_FD_ENV``, closed once read), the variable (``KEY_ENV``).

    Returns:
        The key's bytes.

    Raises:
        RuntimeError: none of the three is set (the process was not started by hpcfutures).
        ValueError: what was found is not hex text.
    """
    key_file = os.environ.pop(KEY_FILE_ENV, None)
    if key_file:
        try:
            with open(key_file, "rb") as f:
                text = f.read()
        finally:
            try:
                os.unlink(key_file)
                os.rmdir(os.path.dirname(key_file))  # the driver made that directory for this file alone
            except OSError:
                pass
        os.environ.pop(KEY_ENV, None)
        return bytes.fromhex(text.decode())
    fd_text = os.environ.pop(KEY_FD_ENV, None)
    if fd_text:
        fd = int(fd_text)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 256)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        os.environ.pop(KEY_ENV, None)
        return bytes.fromhex(b"".join(chunks).decode())
    value = os.environ.pop(KEY_ENV, None)
    if not value:
        raise RuntimeError(f"{KEY_ENV} is not set: this worker was not started by hpcfutures")
    return bytes.fromhex(value)


def drop_key_from_env() -> None:
    """For a process that does not talk to the driver (MPI ranks other than 0): forget
    where the key is, so the user's subprocesses do not inherit it."""
    for name in (KEY_ENV, KEY_FD_ENV, KEY_FILE_ENV):
        os.environ.pop(name, None)


def nbytes(payload) -> int:
    """Size of a payload in bytes.

    Args:
        payload: bytes, a bytearray or a ``memoryview`` of any format.

    Returns:
        Its length in bytes (a view's ``nbytes``, not its count of items).
    """
    return payload.nbytes if isinstance(payload, memoryview) else len(payload)


def _mac(key: bytes, payload) -> bytes:
    if nbytes(payload) >= _BIG:
        import hmac  # OpenSSL: loaded by the first large frame only
        from hashlib import sha256

        # hmac.new, not hmac.digest: the one-shot digest refuses messages over 2 GiB
        return hmac.new(key, payload, sha256).digest()
    return _blake2b(payload, key=key, digest_size=MAC_SIZE).digest()


def seal(key: bytes, payload: bytes) -> bytes:
    """A frame without its length prefix: the MAC of ``payload`` followed by ``payload``.

    Args:
        key: the links' key.
        payload: the bytes to send (a pickle).

    Returns:
        ``MAC_SIZE`` (32) bytes of MAC, then the payload; ``unseal`` takes it back.
    """
    return _mac(key, payload) + payload


def mac_of(key: bytes, payload) -> bytes:
    """The MAC of ``payload`` (bytes or a buffer) under ``key``: 32 bytes (keyed BLAKE2b
    below 1 MiB, HMAC-SHA256 from there on).

    Args:
        key: the links' key.
        payload: bytes or any buffer (a ``memoryview`` of a large result).

    Returns:
        The 32-byte MAC.
    """
    return _mac(key, payload)


def mac_matches(key: bytes, mac: bytes, payload) -> bool:
    """Whether ``mac`` authenticates ``payload`` under ``key`` (constant-time comparison).

    Args:
        key: the links' key.
        mac: the 32 bytes that came with the payload.
        payload: bytes or any buffer.

    Returns:
        ``True`` when the MAC matches.
    """
    return compare_digest(mac, _mac(key, payload))


HELLO = b"hpcfutures-hello"
"""A worker's first message on a TCP link; the driver answers it with a random nonce."""


def challenge_answer(key: bytes, nonce: bytes) -> bytes:
    """What proves a peer holds the key: the MAC of the driver's fresh nonce (never the key
    itself, and never the same answer twice).

    Args:
        key: the links' key.
        nonce: the random bytes the driver sent in answer to ``HELLO``.

    Returns:
        The 32-byte answer.
    """
    return _blake2b(b"hpcfutures-worker:" + nonce, key=key, digest_size=MAC_SIZE).digest()


def answer_is_right(key: bytes, nonce: bytes, answer: bytes) -> bool:
    """Whether ``answer`` is ``challenge_answer(key, nonce)`` (constant-time comparison).

    Args:
        key: the links' key.
        nonce: the nonce the driver sent.
        answer: what the peer sent back.

    Returns:
        ``True`` when the peer holds the key.
    """
    return compare_digest(answer, challenge_answer(key, nonce))


def unseal(key: bytes, frame: bytes) -> bytes:
    """Return the payload of an authentic frame; raise for anything else.

    Args:
        key: the links' key.
        frame: MAC then payload, as ``seal`` made it.

    Returns:
        The payload (the bytes after the MAC).

    Raises:
        AuthenticationError: the frame is shorter than a MAC, or its MAC does not match
            ``key`` (the payload is not unpickled).
    """
    if len(frame) < MAC_SIZE:
        raise AuthenticationError("frame shorter than its MAC")
    mac, payload = frame[:MAC_SIZE], frame[MAC_SIZE:]
    if not compare_digest(mac, _mac(key, payload)):
        raise AuthenticationError("frame failed MAC authentication")
    return payload


def dumps(obj: object) -> bytes:
    """Pickle by reference when possible (fast, no cloudpickle import), by value when needed."""
    try:
        return _pickle.dumps(obj, protocol=HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=HIGHEST_PROTOCOL)


def dumps_by_value(obj: object) -> bytes:
    """Functions are always sent with cloudpickle: a function defined in ``__main__``
    pickles "fine" by reference with plain pickle and then fails to load in the worker."""
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=HIGHEST_PROTOCOL)


def loads(payload) -> object:
    """Unpickle a payload: a plain pickle, or a ``dumps_with_buffers`` container, whose
    large buffers (numpy arrays' data) are used where they lie when the payload is writable
    (a frame just read into a ``bytearray``), copied once when it is not."""
    # cloudpickle output loads with plain pickle: it names its own helpers, which are
    # imported on demand, so the worker pays for cloudpickle only when it is used.
    if payload[: len(_OOB_MAGIC)] == _OOB_MAGIC:
        return _load_container(payload)
    return _pickle.loads(payload)


# ---- large buffers out of band (pickle protocol 5) ------------------------------------
# A result holding a large numpy array costs, in band, one copy into the pickle and one
# copy out of it when unpickled. The container below keeps the arrays' data beside the
# pickle: the receiver's unpickler takes slices of the frame it read as the arrays' memory
# (no copy). Layout: magic, count n, pickle length, n buffer lengths (8 bytes each,
# little-endian), then each buffer at a 16-byte aligned offset, then the pickle. The MAC
# of the frame covers all of it. Only replies use it (``is_container`` tells the driver
# not to store such bytes as a cache entry, which holds plain pickles).

_OOB_MAGIC = b"HPCFOOB1"  # a protocol-5 pickle starts with 0x80: never confused
_OOB_MIN = 1 << 20  # below this in buffers, in band is as cheap
_ALIGN = 16


def is_container(payload) -> bool:
    """Whether ``payload`` is a ``dumps_with_buffers`` container (not a plain pickle)."""
    return payload[: len(_OOB_MAGIC)] == _OOB_MAGIC


def dumps_with_buffers(obj: object) -> bytes:
    """Like ``dumps``, but large contiguous buffers (numpy arrays' data, 1 MiB or more in
    all) go beside the pickle rather than inside it, so that ``loads`` on the receiving
    side need not copy them. Anything else: the same bytes as ``dumps``."""
    buffers: list = []
    try:
        head = _pickle.dumps(obj, protocol=HIGHEST_PROTOCOL, buffer_callback=buffers.append)
    except Exception:
        import cloudpickle

        buffers = []
        head = cloudpickle.dumps(obj, protocol=HIGHEST_PROTOCOL, buffer_callback=buffers.append)
    return _container(head, buffers) or dumps(obj)


def dumps_by_value_with_buffers(obj: object) -> bytes:
    """``dumps_by_value`` (cloudpickle: functions of ``__main__`` by value) with large
    contiguous buffers beside the pickle, as ``dumps_with_buffers``: a call's large numpy
    arguments then load in the worker without a copy. Not for a cache entry's input, which
    is a plain pickle (``is_container`` tells them apart)."""
    import cloudpickle

    buffers: list = []
    head = cloudpickle.dumps(obj, protocol=HIGHEST_PROTOCOL, buffer_callback=buffers.append)
    return _container(head, buffers) or dumps_by_value(obj)


def _container(head: bytes, buffers: list) -> bytes | None:
    """``head`` (a protocol-5 pickle) and its out-of-band ``buffers`` as one container;
    ``head`` itself when there are none; ``None`` when they are better in band (not
    contiguous, or under ``_OOB_MIN`` bytes in all): the caller pickles again in band."""
    if not buffers:
        return head
    try:
        raws = [b.raw() for b in buffers]
    except BufferError:  # not contiguous: in band, as before
        return None
    if sum(r.nbytes for r in raws) < _OOB_MIN:
        return None
    # one b"".join: a single allocation, filled once (a zeroed bytearray would write every
    # byte twice)
    parts = [_OOB_MAGIC, len(raws).to_bytes(8, "little"), len(head).to_bytes(8, "little")]
    parts += [r.nbytes.to_bytes(8, "little") for r in raws]
    at = 24 + 8 * len(raws)
    for r in raws:
        pad = -at % _ALIGN
        parts += [bytes(pad), r]
        at += pad + r.nbytes
    parts.append(head)
    return b"".join(parts)


def _load_container(payload) -> object:
    view = memoryview(payload).cast("B") if not isinstance(payload, memoryview) or payload.format != "B" else payload
    count = int.from_bytes(view[8:16], "little")
    head_size = int.from_bytes(view[16:24], "little")
    at = 24 + 8 * count
    buffers = []
    for i in range(count):
        size = int.from_bytes(view[24 + 8 * i : 32 + 8 * i], "little")
        at += -at % _ALIGN
        part = view[at : at + size]
        # read-only memory (bytes, a zmq frame) would give read-only arrays: copy it once
        buffers.append(bytearray(part) if view.readonly else part)
        at += size
    return _pickle.loads(view[at : at + head_size], buffers=buffers)


# ---- framing over a byte stream (pipes of one-shot workers) -------------------------

def write_frame(fd: int, key: bytes, payload) -> None:
    """Length, MAC, payload — the payload written from where it lies, not copied into a
    frame first (a result of gigabytes costs one pass of the MAC, no extra copy).

    Args:
        fd: a pipe's writing end, blocking.
        key: the links' key.
        payload: bytes or any buffer; frames under 1 MiB go in one ``os.write`` call.

    Raises:
        OSError: the write failed (``BrokenPipeError``: the reader is gone).
    """
    size = nbytes(payload)
    head = (MAC_SIZE + size).to_bytes(_LENGTH_SIZE, "big") + _mac(key, payload)
    if size < _ONE_WRITE:  # small: one write, one wake-up of the reader
        _write_all(fd, memoryview(head + payload))
    else:
        _write_all(fd, memoryview(head))
        _write_all(fd, memoryview(payload).cast("B"))


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int, key: bytes) -> memoryview:
    """The authentic payload, read straight into one buffer (no chunks to join) and
    returned as a view of it; ``pickle.loads`` and file writes take it as it is.

    Args:
        fd: a pipe's reading end, blocking.
        key: the links' key.

    Returns:
        A writable ``memoryview`` of the payload (the MAC checked and cut off).

    Raises:
        AuthenticationError: the length prefix is shorter than a MAC, or the MAC does not
            match ``key``.
        EOFError: the writer closed the pipe before the whole frame arrived.
    """
    size = int.from_bytes(read_exactly(fd, _LENGTH_SIZE), "big")
    if size < MAC_SIZE:
        raise AuthenticationError("frame shorter than its MAC")
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        n = os.readv(fd, [view[done:]])
        if not n:
            raise EOFError("peer closed the pipe")
        done += n
    payload = view[MAC_SIZE:]
    if not compare_digest(view[:MAC_SIZE], _mac(key, payload)):
        raise AuthenticationError("frame failed MAC authentication")
    return payload


def read_exactly(fd: int, size: int) -> bytes:
    """Read ``size`` bytes from ``fd``, however many reads that takes.

    Args:
        fd: a blocking descriptor (a pipe's reading end).
        size: bytes to read.

    Returns:
        Exactly ``size`` bytes.

    Raises:
        EOFError: the writer closed the pipe first.
    """
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("peer closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
