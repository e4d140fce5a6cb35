"""Call a function inside a worker and turn the outcome into a reply that can travel.

Shared by every worker kind. A reply is ``{"result": value}`` or
``{"error": exception, "traceback": text}``; the driver rebuilds the exception and chains
the worker-side traceback text as its ``__cause__``.
"""

from __future__ import annotations

import os
import sys

from hpcfutures.wire.frames import DRIVER_PID_ENV, SYS_PATH_ENV, dumps, dumps_with_buffers, loads

WORKER_ID_NAME = "executorlib_worker_id"
# bound now: a user (or a test) patching these must not change how sessions end
_listdir, _getsid, _getpgid = os.listdir, os.getsid, os.getpgid


def adopt_driver_path() -> None:
    """Make the driver's import path ours too (as ``multiprocessing``'s spawn does): a
    function from a module beside the user's script unpickles here as it imported there.
    Missing entries are appended, so this interpreter's own order wins for shared names."""
    entries = os.environ.pop(SYS_PATH_ENV, "")
    for entry in entries.split(os.pathsep) if entries else ():
        if entry and entry not in sys.path:
            sys.path.append(entry)


def decode_message(payload: bytes):
    """The message, or an error reply when it cannot be unpickled here — typically a
    function whose module this worker cannot import. That fails the one call, not the worker."""
    try:
        return loads(payload), None
    except Exception as exc:
        if isinstance(exc, ImportError):
            try:
                exc = type(exc)(f"the worker could not unpickle the call: {exc} (is the module importable there?)")
            except Exception:
                pass
        return None, error_reply(exc)


def inject(fn, kwargs: dict, store: dict) -> dict:
    """Add the entries of the ``init_function`` store that ``fn`` has a parameter for,
    unless the caller passed them: explicit arguments win.

    Args:
        fn: the function to be called.
        kwargs: the caller's keyword arguments.
        store: what ``init_function`` returned (plus ``worker_id``).

    Returns:
        ``kwargs`` with the store's matching entries added (a new dict when any is).
    """
    if not store:
        return kwargs
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    extra = {k: v for k, v in store.items() if k in params and k not in kwargs}
    return {**extra, **kwargs} if extra else kwargs


def call(message: dict, store: dict) -> dict:
    """Run one task message.

    Args:
        message: ``fn``, ``args``, ``kwargs``.
        store: the worker's ``init_function`` store.

    Returns:
        ``{"result": value}``, or an ``error_reply`` (``SystemExit`` included: it must reach
        the caller, not end the worker).
    """
    fn = message["fn"]
    try:
        args = message.get("args", ())
        if store and _is_map_chunk(fn):
            args = (_with_store(args[0], store), *args[1:])
        kwargs = inject(fn, message.get("kwargs", {}), store)
        return {"result": fn(*args, **kwargs)}
    except BaseException as exc:  # SystemExit too: it must reach the caller, not end the worker
        return error_reply(exc)


def _is_map_chunk(fn) -> bool:
    """Whether ``fn`` is ``map``'s chunk adapter (``pool_calls.run_chunk``), whose first
    argument is the mapped function."""
    chunks = sys.modules.get("hpcfutures.worker.pool_calls")  # loaded when a chunk was unpickled
    return chunks is not None and fn is chunks.run_chunk


def _with_store(func, store: dict):
    """The mapped function of a chunk with its ``init_function`` entries bound, as each call
    of an unchunked ``map`` (a ``submit`` per item) gets them."""
    extra = inject(func, {}, store)
    if not extra:
        return func
    import functools

    return functools.partial(func, **extra)


def error_reply(exc: BaseException) -> dict:
    """The reply of a call that raised ``exc``: the exception and its traceback as text
    (the driver rebuilds them with ``errors.rebuild``; ``concurrent.futures.process``
    carries a worker's traceback the same way, as text beside the exception).
    """
    import traceback

    return {"error": exc, "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def encode_reply(reply: dict) -> bytes:
    """``encode`` without the flag, for a reply that goes over a link to the driver: a
    large result's buffers travel out of band (``frames.dumps_with_buffers``)."""
    if "result" in reply:
        try:
            return dumps_with_buffers(reply)
        except BaseException:
            pass  # encode() says what could not be pickled
    return encode(reply)[0]


def encode(reply: dict) -> tuple[bytes, bool]:
    """Pickle a reply; return the bytes and whether they carry an error. When the value
    cannot be pickled, only this call fails, with a
    message that says what could not be sent. An exception is also unpickled here once:
    one whose class cannot be rebuilt from its pickle (an ``__init__`` that needs more
    arguments than ``args`` holds) is replaced by a ``RuntimeError`` naming its class and
    message, so the driver never receives bytes it cannot open."""
    try:
        data = dumps(reply)
    except BaseException as exc:
        if "result" in reply:
            problem = TypeError(
                f"the result of type {type(reply['result']).__qualname__} could not be pickled "
                f"to send it back: {type(exc).__name__}: {exc}"
            )
            return dumps({"error": problem, "traceback": ""}), True
        return dumps({"error": _stand_in(reply["error"], "pickled", exc), "traceback": reply.get("traceback", "")}), True
    if "error" not in reply:
        return data, False
    try:
        loads(data)
    except BaseException as exc:
        return dumps({"error": _stand_in(reply["error"], "unpickled", exc), "traceback": reply.get("traceback", "")}), True
    return data, True


def _stand_in(original: BaseException, what: str, why: BaseException) -> RuntimeError:
    cls = type(original)
    name = cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"
    try:
        text = str(original)
    except Exception:
        text = "<str() failed>"
    stand_in = RuntimeError(
        f"{name}: {text} (the exception raised in the worker could not be {what}: {type(why).__name__}: {why}; "
        "its traceback follows as the cause)"
    )
    # a map chunk's results before the failing item travel on the stand-in, as they would
    # on the original (worker.pool_calls.run_chunk; review H2)
    done = getattr(original, "__dict__", {}).get("_hpcfutures_done")
    if isinstance(done, list):
        try:
            dumps(done)
            stand_in._hpcfutures_done = done
        except Exception:
            pass
    return stand_in


def run_init(init_function, worker_id: int) -> dict:
    """Run a warm worker's ``init_function``.

    Args:
        init_function: called once, with ``worker_id`` when it has that parameter.
        worker_id: the worker's number (0 ... max_workers - 1).

    Returns:
        Its dict plus ``worker_id``.

    Raises:
        TypeError: it returned something other than a dict.
    """
    kwargs = {WORKER_ID_NAME: worker_id} if _accepts(init_function, WORKER_ID_NAME) else {}
    store = init_function(**kwargs)
    if not isinstance(store, dict):
        raise TypeError(f"init_function must return a dict, got {type(store).__qualname__}")
    return {**store, WORKER_ID_NAME: worker_id}


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def exit_with_driver() -> None:
    """End this process when the driver process ends, even by SIGKILL, so that no worker
    outlives the program that started it. Uses a pidfd: an event, not a timer."""
    pid_text, _, node = os.environ.get(DRIVER_PID_ENV, "0").partition("@")
    pid = int(pid_text) if pid_text.isdigit() else 0
    if pid <= 0 or not hasattr(os, "pidfd_open") or (node and node != os.uname().nodename):
        return  # a driver on another node: the socket closing ends this worker instead
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # the driver is already gone
        os._exit(70)
    except OSError:
        return

    # _thread, not threading: threading (with _weakrefset) costs ~0.7 ms of every one-shot
    # and srun worker's start (issue 15). A _thread thread is never joined at exit, as a
    # daemon thread is not, and os._exit needs nothing of threading's bookkeeping.
    import _thread
    import select

    running = _thread.allocate_lock()
    running.acquire()

    def watch():
        running.release()
        select.select([fd], [], [])
        end_own_session()  # the driver is gone: so must be what our tasks started
        os._exit(70)

    _thread.start_new_thread(watch, ())
    # wait until the thread runs, as Thread.start() does: a thread still starting while a
    # short task's interpreter already exits could touch state the exit frees
    running.acquire()


def process_stat(pid: int) -> tuple[bytes, int, int, int] | None:
    """What ``/proc/PID/stat`` says of a process.

    Args:
        pid: the process id.

    Returns:
        (state, ppid, process group, session), the state as bytes (``b"Z"``: a zombie);
        None where it is gone or there is no ``/proc``.
    """
    try:  # os.open/os.read: a third cheaper than file objects
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 512)
        finally:
            os.close(fd)
        fields = data.rsplit(b")", 1)[1].split(None, 5)
        # fields after the command: state ppid pgrp session ...
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None  # ended meanwhile


def _candidates(wanted: int, field: int) -> list[int]:
    """Pids of the processes (zombies included) whose session (``field=3``) or process group
    (``field=2``) is ``wanted``; for another field, every pid in ``/proc``.

    Asked with ``getsid``/``getpgid``, one system call per process, rather than by reading
    every ``/proc/PID/stat`` (open, read, close, and the kernel formats 52 fields): ~0.06
    against ~0.55 ms for 125 processes here, paid at the end of every srun task, by the
    worker and again by the driver (issue 15). Only the few that match are read in full."""
    try:
        names = _listdir("/proc")
    except OSError:
        return []
    ask = {2: _getpgid, 3: _getsid}.get(field)
    found = []
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        if ask is None:
            found.append(pid)
            continue
        try:
            if ask(pid) == wanted:
                found.append(pid)
        except ProcessLookupError:
            continue  # ended meanwhile
        except OSError:  # a security module that will not say: /proc/PID/stat does
            row = process_stat(pid)
            if row is not None and row[field] == wanted:
                found.append(pid)
    return found


def session_members(sid: int, field: int = 3) -> list[int]:
    """Pids of the live processes in a session (or, with ``field=2``, a process group),
    read from ``/proc``.

    Args:
        sid: the session id (the pid of the session's leader), or the process group id.
        field: which field of ``/proc/PID/stat`` after the state to compare: 3 the session,
            2 the process group.

    Returns:
        The pids, zombies excluded; empty where there is no ``/proc`` or no such session."""
    members = []
    for pid in _candidates(sid, field):
        row = process_stat(pid)  # its state (a zombie is no member), and the match once more
        if row is not None and row[0] not in (b"Z", b"X") and row[field] == sid:
            members.append(pid)
    return members


# what a launcher tells its ranks apart by (srun, Hydra, PRRTE/Open MPI, Flux)
_RANK_VARIABLES = (b"SLURM_PROCID", b"PMI_RANK", b"PMIX_RANK", b"OMPI_COMM_WORLD_RANK", b"FLUX_TASK_RANK")


def _rank_identity(pid: int) -> dict[bytes, bytes]:
    """The launcher's rank variables in the environment process ``pid`` started with
    (``/proc/PID/environ``: a forked child shows its parent's); empty where unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            pairs = f.read().split(b"\0")
    except OSError:
        return {}
    found = {}
    for pair in pairs:
        name, _, value = pair.partition(b"=")
        if name in _RANK_VARIABLES:
            found[name] = value
    return found


def group_members_of_leader(group: int) -> list[int]:
    """The live processes of process group ``group`` that its leader (pid ``group``)
    started: those whose parent chain leads to the leader, and orphans (their parent
    ended) that started as no other rank's. Not the others: a launcher puts processes
    of its own into the group its first task leads — ``slurmstepd`` puts every task of a
    node in rank 0's group — and those are the leader's siblings, never its to end.

    Args:
        group: the process group id, which is also its leader's pid; call this while the
            leader is alive or not yet reaped, so that the number cannot name a newer group.

    Returns:
        The pids, the leader and zombies excluded; empty where there is no ``/proc``."""
    rows: dict = {}  # pid -> process_stat, read once each, only for the group and its ancestry

    def row(pid: int):
        if pid not in rows:
            rows[pid] = process_stat(pid)
        return rows[pid]

    leader = row(group)
    launcher = leader[1] if leader is not None else None  # the leader's parent
    mine = None  # the leader's rank variables, read only if an orphan needs them
    found = []
    for pid in _candidates(group, 2):
        own = row(pid)
        if pid == group or own is None or own[2] != group or own[0] in (b"Z", b"X"):
            continue
        ancestor, steps = pid, 0
        while ancestor not in (group, launcher) and ancestor > 1 and steps < 4096:
            parent = row(ancestor)
            if parent is None:  # gone: the chain ends here, as at an orphan
                break
            ancestor, steps = parent[1], steps + 1
        if ancestor == group:
            found.append(pid)  # the leader's own descendant
        elif ancestor == launcher and launcher is not None and launcher > 1:
            continue  # the launcher's: a sibling rank, or what a sibling started
        else:  # an orphan: ours unless it started as another rank's (its environment says which)
            if mine is None:
                mine = _rank_identity(group)
            theirs = _rank_identity(pid)
            if not any(name in mine and mine[name] != value for name, value in theirs.items()):
                found.append(pid)
    return found


def end_session(sid: int, spare: int = 0, field: int = 3) -> int:
    """SIGKILL every process of session ``sid`` except ``spare``: what a task started (forked
    children, ``subprocess.Popen``, also those in a process group of their own) must not
    outlive it. A process started in a session of its own (``os.setsid()``,
    ``start_new_session=True``) is out of reach on purpose: that is how a task starts a daemon
    that stays. A session holds only what its leader started (nothing joins a session from
    outside it); a process group does not: with ``field=2`` only what the group's leader
    started is ended (``group_members_of_leader``), never the processes a launcher placed
    beside it (``srun``'s other ranks on the node).

    Args:
        sid: the session id; call this while its leader is alive or not yet reaped, so that
            the number cannot name a newer session.
        spare: a pid not to signal (the caller itself), 0 for none.
        field: 2 to end what the leader of process group ``sid`` started instead.

    Returns:
        How many processes were signalled. Never raises for processes that are gone."""
    # _signal's plain int, not signal.SIGKILL: ``signal`` imports ``enum`` (~1.3 ms of every
    # srun worker's end, issue 15); _signal is loaded at every interpreter start anyway
    try:
        from _signal import SIGKILL
    except ImportError:  # an interpreter without the private module
        from signal import SIGKILL

    killed = 0
    members = group_members_of_leader(sid) if field == 2 else session_members(sid, field)
    for pid in members:
        if pid == spare:
            continue
        try:
            os.kill(pid, SIGKILL)
            killed += 1
        except OSError:
            pass
    return killed


def end_own_session() -> None:
    """A worker ends what its tasks left running before it exits: its session where it leads
    one (a serial worker the driver started; an MPICH rank), else what it started in its
    process group where it leads that (``srun`` makes each node's first task the leader of a
    process group inside slurmstepd's session, out of the driver's reach on another node, and
    puts the node's other tasks in it too: those are spared, so a rank ending first never
    kills a sibling rank still finishing). A child in a process group or session of its own
    is not reached from a process group: there only the job's end stops it."""
    me = os.getpid()
    try:
        if os.getsid(0) == me:
            end_session(me, spare=me)
        elif os.getpgid(0) == me:
            end_session(me, spare=me, field=2)
    except OSError:
        pass


def flush_std_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr`` (a closed stream is no error), so a
    call's prints reach the log before its reply.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
