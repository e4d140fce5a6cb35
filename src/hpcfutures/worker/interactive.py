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
    AuthenticationError,
    read_frame,
    seal,
    take_key_from_env,
    unseal,
    write_frame,
)
from hpcfutures.worker.execute import (
    adopt_driver_path,
    call,
    decode_message,
    encode,
    encode_reply,
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
    """Rank 0's end of a zmq PAIR socket over TCP (workers on other nodes)."""

    def __init__(self, address: str, key: bytes):
        import zmq

        self._key = key
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PAIR)
        self._socket.setsockopt(zmq.LINGER, 2000)
        self._socket.connect(address)

    def receive(self) -> bytes:
        while True:
            try:
                return unseal(self._key, self._socket.recv(copy=True))
            except AuthenticationError:
                continue  # dropped unread

    def send(self, payload: bytes) -> None:
        self._socket.send(seal(self._key, payload), copy=False)

    def close(self) -> None:
        self._socket.close()
        self._context.term()


def connect(address: str, key: bytes):
    if address.startswith("unix:"):
        return _UnixLink(address[len("unix:"):], key)
    return _ZmqLink(address, key)


def _handle(message: dict, store: dict) -> dict:
    if "init" in message:
        try:
            store.update(run_init(message["init"], message.get("worker_id", 0)))
            return {"result": None}
        except BaseException as exc:
            return error_reply(exc)
    return call(message, store)


def serve_serial(link) -> None:
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
    that fails while others cannot reach the end reports and aborts the job."""
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
    address = argv[1]
    key = take_key_from_env()
    exit_with_driver()
    adopt_driver_path()
    if not any(arg.startswith("--mpi") for arg in argv[2:]):  # serial: nothing of MPI is loaded
        link = connect(address, key)
        serve_serial(link)
        link.close()
        return 0
    from mpi4py import MPI

    from hpcfutures.worker.mpi_world import World, exit_after_world_error, requested_ranks

    ranks = requested_ranks(argv[2:])

    world = World(MPI.COMM_WORLD, key)
    wrong = world.check(ranks)
    if wrong is not None:
        return exit_after_world_error(world, wrong, link_factory=lambda: connect(address, key))
    link = None
    try:
        link = connect(address, key) if world.rank == 0 else None
        serve_mpi(link, world)
    except BaseException as exc:  # the worker's own loop failed on this rank: end the job, say why
        problem = RuntimeError(f"the MPI worker's loop failed on rank {world.rank}: {type(exc).__name__}: {exc}")
        world.report_and_abort(encode_reply(error_reply(problem)), link)
    if link is not None:
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
