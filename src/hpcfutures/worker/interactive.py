"""A warm worker: connects to the driver and runs calls until told to stop.

Usage: ``python -m hpcfutures.worker.interactive ADDRESS [--mpi]``; ADDRESS is
``unix:PATH`` on the driver's machine (stdlib socket, no zmq import) or ``tcp://HOST:PORT``
across nodes (zmq).
With ``--mpi`` it runs under ``mpiexec``/``srun``: rank 0 talks to the driver, broadcasts
each call to every rank, every rank runs the function, and rank 0 sends back the list of
the ranks' results ordered by rank (or the error of the lowest failing rank).

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
    dumps,
    loads,
    mac_matches,
    mac_of,
    read_frame,
    take_key_from_env,
    write_frame,
)
from hpcfutures.worker.execute import (
    adopt_driver_path,
    call,
    decode_message,
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
    proves it holds the key (HMAC of the driver's nonce); frames are (MAC, payload) parts."""

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


def serve_mpi(link, comm) -> None:
    rank = comm.Get_rank()
    store: dict = {}
    while True:
        payload = bytes(link.receive()) if rank == 0 else None  # bcast pickles it: bytes, not a view
        payload = comm.bcast(payload, root=0)
        message, problem = decode_message(payload)
        if message is not None and message.get("shutdown"):
            return
        parts = comm.gather(encode_reply(problem or _handle(message, store)), root=0)
        flush_std_streams()
        if rank == 0:
            link.send(_combine(parts, is_call=message is not None and "init" not in message))


def _combine(parts: list, is_call: bool) -> bytes:
    replies = [loads(p) for p in parts]
    for rank, reply in enumerate(replies):
        if "error" in reply:
            reply["traceback"] = f"on MPI rank {rank} of {len(replies)}:\n" + reply.get("traceback", "")
            return dumps(reply)
    if not is_call:
        return parts[0]
    return encode_reply({"result": [r["result"] for r in replies]})


def main(argv: list) -> int:
    address = argv[1]
    use_mpi = "--mpi" in argv[2:]
    key = None if use_mpi else take_key_from_env()
    exit_with_driver()
    adopt_driver_path()
    try:
        if use_mpi:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
            if comm.Get_rank() == 0:  # only rank 0 talks to the driver, so only it reads the key
                link = connect(address, take_key_from_env())
            else:
                drop_key_from_env()
                link = None
            serve_mpi(link, comm)
        else:
            link = connect(address, key)
            serve_serial(link)
        if link is not None:
            link.close()
    finally:
        # told to stop, or the driver's end of the link is gone: the executor is done with
        # this worker, and with what its tasks started
        end_own_session()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
