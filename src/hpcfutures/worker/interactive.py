"""A warm worker: connects to the driver and runs calls until told to stop.

Usage: ``python -m hpcfutures.worker.interactive ADDRESS [--mpi=N]``; ADDRESS is
``unix:PATH`` on the driver's machine (stdlib socket, no zmq import) or ``tcp://HOST:PORT``
across nodes (zmq).
With ``--mpi=N`` it runs under ``mpiexec``/``srun`` as one world of N ranks (checked at
start, see ``mpi_world``): rank 0 talks to the driver, broadcasts each call to every rank,
every rank runs the function, and rank 0 forwards the ranks' pickled replies, which the
driver combines into the list of results ordered by rank (or the error of the lowest
failing rank). A rank that fails while the others cannot finish aborts the job.

Messages from the driver: ``{"fn", "args", "kwargs"}`` (a call), ``{"init": fn,
"worker_id": n}`` (run ``init_function`` once; its dict feeds later calls), and
``{"shutdown": True}``.
"""

import sys

from hpcfutures.wire.frames import (
    HELLO,
    AuthenticationError,
    challenge_answer,
    drop_key_from_env,
    mac_matches,
    mac_of,
    read_frame,
    take_key_from_env,
    write_frame,
)
from hpcfutures.worker.directory import enter_from_environment
from hpcfutures.worker.execute import (
    adopt_driver_path,
    call,
    decode_message,
    encode,
    encode_reply,
    end_own_session,
    error_reply,
    exit_with_driver,
    flush_std_streams,
    run_init,
)


class _UnixLink:
    """Rank 0's end of a Unix-domain stream socket (workers on the driver's machine)."""

    def __init__(self, path: str, key: bytes):
        import socket

        self._key = key
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(path)
        self._fd = self._socket.fileno()

    def receive(self) -> bytes:
        while True:
            try:
                return read_frame(self._fd, self._key)
            except AuthenticationError:
                continue  # dropped unread

    def send(self, payload: bytes) -> None:
        write_frame(self._fd, self._key, payload)

    def close(self) -> None:
        self._socket.close()


class _ZmqLink:
    """Rank 0's end of a zmq link over TCP (workers on other nodes): a DEALER that first
    proves it holds the key (the keyed MAC of the driver's nonce); frames are (MAC, payload) parts."""

    def __init__(self, address: str, key: bytes):
        import zmq

        self._key = key
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 2000)
        self._socket.connect(address)
        self._socket.send(HELLO)
        nonce = self._socket.recv()
        self._socket.send(challenge_answer(key, nonce))

    def receive(self) -> bytes:
        while True:
            parts = self._socket.recv_multipart(copy=False)
            if len(parts) == 2:
                payload = parts[1].buffer
                if mac_matches(self._key, parts[0].bytes, payload):
                    return payload
            # anything else: dropped unread

    def send(self, payload: bytes) -> None:
        self._socket.send_multipart([mac_of(self._key, payload), payload], copy=False)

    def close(self) -> None:
        self._socket.close()
        self._context.term()


def connect(address: str, key: bytes):
    """The link to the driver. Over TCP the worker first answers the driver's challenge
    with the shared key (as ``multiprocessing.connection``'s ``answer_challenge`` does), so
    the driver sends nothing to a stray peer on its port; a Unix socket lies in the
    driver's fresh 0700 folder. Every frame carries a MAC either way.

    Args:
        address: ``unix:<path>`` or a zmq ``tcp://host:port``.
        key: the MAC key of every frame.

    Returns:
        A link with ``send`` and ``receive``.
    """
    if address.startswith("unix:"):
        return _UnixLink(address[len("unix:"):], key)
    return _ZmqLink(address, key)


_wrong_cwd: list = []  # the error entering the worker's cwd gave, if any: every call fails with it


def _handle(message: dict, store: dict) -> dict:
    if _wrong_cwd:
        return error_reply(_wrong_cwd[0])
    if "init" in message:
        try:
            store.update(run_init(message["init"], message.get("worker_id", 0)))
            return {"result": None}
        except BaseException as exc:
            return error_reply(exc)
    return call(message, store)


def serve_serial(link) -> None:
    """Answer task messages on ``link`` one at a time until a ``shutdown`` message."""
    store: dict = {}
    while True:
        message, problem = decode_message(link.receive())
        if message is not None and message.get("shutdown"):
            return
        reply = encode_reply(problem or _handle(message, store))
        flush_std_streams()
        link.send(reply)


def serve_mpi(link, world) -> None:
    """Rank 0 receives each message and broadcasts it; every rank runs it; the ranks meet
    at the end (``World.end_of_call``) and rank 0 forwards their replies unopened. A rank
    that fails while others cannot reach the end reports and aborts the job.

    Args:
        link: rank 0's link to the driver (``None`` on the other ranks).
        world: this worker's ``mpi_world.World``.
    """
    from hpcfutures.wire.replies import mpi_parts

    rank = world.rank
    comm = world.comm
    store: dict = {}
    while True:
        payload = bytes(link.receive()) if rank == 0 else None  # bcast pickles it: bytes, not a view
        payload = comm.bcast(payload, root=0)
        message, problem = decode_message(payload)
        if message is not None and message.get("shutdown"):
            return
        reply = problem or _handle(message, store)
        part, failed = encode(reply)
        flush_std_streams()
        everyone, parts = world.end_of_call(part, failed)
        if not everyone:
            world.report_and_abort(part, link)
        if rank == 0:
            link.send(mpi_parts(parts))


def main(argv: list) -> int:
    """``python -m hpcfutures.worker.interactive ADDRESS [--mpi...]``: a warm worker.

    Args:
        argv: ``sys.argv``; the key comes from the environment or a file, never argv.

    Returns:
        The process's exit status.
    """
    address = argv[1]
    exit_with_driver()
    adopt_driver_path()
    wrong_cwd = enter_from_environment()
    if wrong_cwd is not None:
        _wrong_cwd.append(wrong_cwd)
    try:
        if not any(arg.startswith("--mpi") for arg in argv[2:]):  # serial: nothing of MPI is loaded
            link = connect(address, take_key_from_env())
            serve_serial(link)
            link.close()
            return 0
        return _main_mpi(address, argv)
    finally:
        # told to stop, or the driver's end of the link is gone: the executor is done with
        # this worker, and with what its tasks started
        end_own_session()


def _main_mpi(address: str, argv: list) -> int:
    from mpi4py import MPI

    from hpcfutures.worker.mpi_world import World, exit_after_world_error, launcher_rank, requested_ranks

    world = World(MPI.COMM_WORLD, b"")
    wrong = world.check(requested_ranks(argv[2:]))
    if wrong is not None:  # only the launcher's rank 0 reports, so only it reads the key
        if world.rank == 0 and launcher_rank(world) == 0:
            world.key = take_key_from_env()
        drop_key_from_env()
        return exit_after_world_error(world, wrong, link_factory=lambda: connect(address, world.key))
    # Only rank 0 reads the key (under mpiexec it is a file that this read deletes); the
    # others get it from rank 0, in memory, to seal the error report of a failing rank.
    key = take_key_from_env() if world.rank == 0 else None
    drop_key_from_env()
    world.share_key(key)
    link = None
    try:
        link = connect(address, world.key) if world.rank == 0 else None
        serve_mpi(link, world)
    except BaseException as exc:  # the worker's own loop failed on this rank: end the job, say why
        problem = RuntimeError(f"the MPI worker's loop failed on rank {world.rank}: {type(exc).__name__}: {exc}")
        world.report_and_abort(encode_reply(error_reply(problem)), link)
    if link is not None:
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
