"""The replies of MPI workers as they travel, and how the driver opens them.

A serial worker sends one pickled reply, ``{"result": value}`` or ``{"error": exc,
"traceback": text}``. An MPI worker's ranks each pickle their own reply; rank 0 forwards
those bytes unopened, so nothing a rank sends can break rank 0's loop (a reply that does
not unpickle there would leave the other ranks waiting forever). Two envelopes exist:

- ``{"mpi_parts": [bytes, ...]}``: every rank reached the end of the call; one part per rank.
- ``{"aborted": {"rank", "size", "startup"}, "part": bytes}``: one rank failed while others
  did not reach the end (or the worker could not form its MPI world): that rank's reply,
  sent just before it aborted the whole job. The worker is gone after it.

A rank that is not rank 0 has no link to the driver; it writes its envelope, sealed with
the worker's key, as one line ``REPORT_MARK + hex`` to stderr before aborting, and the
driver picks it out of the stream (the handle's ``pump_stderr``, ``launch.process.LocalProcessHandle``).

Imported by the workers too: standard library only.
"""

from __future__ import annotations

from hpcfutures.wire.frames import dumps, is_container, loads

REPORT_MARK = b"HPCF-RANK-REPORT "
"""Starts a stderr line that carries a sealed, hex-encoded envelope from a rank."""


def mpi_parts(parts: list) -> bytes:
    """The envelope of a call every rank finished.

    Args:
        parts: each rank's pickled reply, in rank order.

    Returns:
        The pickled envelope (bytes and a list only: it always unpickles).
    """
    return dumps({"mpi_parts": [bytes(p) for p in parts]})


def aborted(part: bytes, rank: int, size: int, startup: bool = False) -> bytes:
    """The envelope a failing rank sends before it aborts the job.

    Args:
        part: the rank's pickled error reply.
        rank: the rank that failed.
        size: the size of its ``MPI_COMM_WORLD``.
        startup: the worker never became usable (e.g. its MPI world has the wrong size).

    Returns:
        The pickled envelope.
    """
    return dumps({"aborted": {"rank": rank, "size": size, "startup": startup}, "part": bytes(part)})


class Opened:
    """A reply as the driver sees it.

    Attributes:
        reply: ``{"result": ...}``, ``{"error": exc, "traceback": text}``, or an exception
            instance standing in for a reply that could not be decoded.
        plain: the payload is itself a storable reply (a cache may keep the bytes as sent).
        ends_worker: the worker aborted after sending it; it takes no further calls.
        startup: the worker failed before it could run anything (wrong MPI world).

    Args:
        reply, plain, ends_worker, startup: as the attributes of the same names.
    """

    __slots__ = ("reply", "plain", "ends_worker", "startup")

    def __init__(self, reply, plain: bool = True, ends_worker: bool = False, startup: bool = False):
        self.reply = reply
        self.plain = plain
        self.ends_worker = ends_worker
        self.startup = startup


def open_reply(payload) -> Opened:
    """Decode a worker's reply: a plain one, or either MPI envelope.

    Args:
        payload: the authenticated bytes the worker sent.

    Returns:
        An ``Opened``. Never raises: a reply (or one rank's part) that cannot be unpickled
        here becomes a ``RuntimeError`` that says so, and fails only the call it belongs to.
    """
    try:
        reply = loads(payload)
    except Exception as exc:
        return Opened(RuntimeError(f"the worker's reply could not be unpickled here: {type(exc).__name__}: {exc}"), plain=False)
    if isinstance(reply, dict) and "mpi_parts" in reply:
        return Opened(combine(reply["mpi_parts"]), plain=False)
    if isinstance(reply, dict) and "aborted" in reply:
        info = reply["aborted"]
        rank, size = info.get("rank", 0), info.get("size", 0)
        inner = _open_part(reply.get("part", b""), rank, size)
        note = "it aborted the MPI job, since other ranks did not reach the end of the call"
        if info.get("startup"):
            note = "the worker could not start"
        _prefix_traceback(inner, f"on MPI rank {rank} of {size} ({note}):\n")
        return Opened(inner, plain=False, ends_worker=True, startup=bool(info.get("startup")))
    return Opened(reply, plain=not is_container(payload))  # a cache stores plain pickles only


def combine(parts: list) -> dict:
    """One reply from the ranks' replies.

    Args:
        parts: each rank's pickled reply, in rank order.

    Returns:
        The error reply of the lowest failing rank (its traceback names the rank), or
        ``{"result": [...]}`` with the ranks' results in rank order.
    """
    size = len(parts)
    replies = [_open_part(p, rank, size) for rank, p in enumerate(parts)]
    for rank, reply in enumerate(replies):
        if "error" in reply:
            _prefix_traceback(reply, f"on MPI rank {rank} of {size}:\n")
            return reply
    return {"result": [r["result"] for r in replies]}


def _open_part(part, rank: int, size: int) -> dict:
    try:
        reply = loads(part)
    except Exception as exc:
        problem = RuntimeError(
            f"the reply of MPI rank {rank} of {size} could not be unpickled here: {type(exc).__name__}: {exc}"
        )
        return {"error": problem, "traceback": ""}
    if not isinstance(reply, dict) or not ("result" in reply or "error" in reply):
        return {"error": RuntimeError(f"malformed reply from MPI rank {rank} of {size}: {reply!r}"), "traceback": ""}
    return reply


def _prefix_traceback(reply: dict, prefix: str) -> None:
    if "error" in reply:
        reply["traceback"] = prefix + (reply.get("traceback") or "")
