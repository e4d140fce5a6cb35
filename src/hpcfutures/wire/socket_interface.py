"""``WorkerLink``: the driver's end of the socket link to one worker (the pympipool
``SocketInterface`` is this with a launcher of its own, ``launch.link``).

Two transports, one framing (``frames``: HMAC-SHA256 over each pickled message, checked
before anything is unpickled; the key reaches the worker as its launcher passes it: an
inherited pipe, a 0600 file for a local ``mpiexec``, the environment through ``srun``):

- on one machine, a Unix-domain stream socket inside a fresh 0700 directory: only this
  user can even connect, and a round trip costs ~40 us, a quarter of zmq's (whose I/O
  threads add a hop on each side), so warm calls beat ``ProcessPoolExecutor``;
- across nodes (``hostname_localhost=False``), zmq over TCP, bound to the address this
  host's name resolves to where that is a real interface; a connecting peer is sent
  nothing before it has answered a challenge with the key (see ``_ZmqTransport``).

Every wait is ``wire.waiting.wait_for_reply``: it watches the worker's handle (its
``ended_fd``, a pidfd for a local process) beside the socket, so if the worker ends before
it connects or replies, ``WorkerCrashedError`` (exit code or signal, and the tail of the
launcher's stderr) is raised at once instead of waiting forever. The worker itself is
started by a launcher (``launch.handle.Launcher``) and seen only through its handle: this
module imports nothing from ``launch``.
"""

from __future__ import annotations

import os
import select
import shutil
import socket as _socket
import tempfile

from hpcfutures.wire import frames
from hpcfutures.wire.frames import AuthenticationError, dumps_by_value, new_key
from hpcfutures.wire.replies import open_reply
from hpcfutures.wire.waiting import lost, readable, wait_for_reply

POLLIN = select.POLLIN


class _UnixTransport:
    """Listening Unix socket; one accepted connection carries length-prefixed frames."""

    def __init__(self):
        self._dir = tempfile.mkdtemp(prefix="hpcf-")  # mode 0700
        self.path = os.path.join(self._dir, "w")
        self._listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._conn: _socket.socket | None = None

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    def poller(self):
        return select.poll()

    def pollable(self):
        """What to poll for input: the listener until the worker connects, then the link."""
        return self._conn.fileno() if self._conn is not None else self._listener.fileno()

    def connected(self) -> bool:
        return self._conn is not None

    def accept(self) -> None:
        self._conn, _ = self._listener.accept()
        self._listener.close()

    def accept_if_waiting(self) -> bool:
        """Accept a worker that has connected already; never block."""
        if self._conn is None and select.select([self._listener], [], [], 0)[0]:
            self.accept()
        return self._conn is not None

    def send(self, key: bytes, payload: bytes) -> None:
        # a dead peer makes the write fail (EPIPE): no need to watch its end here
        frames.write_frame(self._conn.fileno(), key, payload)

    def recv(self, key: bytes) -> bytes:
        return frames.read_frame(self._conn.fileno(), key)

    def close(self) -> None:
        for sock in (self._conn, self._listener):
            if sock is not None:
                sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _tcp_interface() -> tuple[str, str]:
    """(where to bind, what to tell the workers) for workers on other nodes: the address
    this host's name resolves to, when it resolves to one that is not loopback and can be
    bound; otherwise every interface, and the name (the best we can tell)."""
    name = _socket.getfqdn()
    if name == "localhost" or name.startswith("localhost."):  # /etc/hosts maps the host name to 127.0.0.1
        name = _socket.gethostname()
    try:
        infos = _socket.getaddrinfo(name, None, _socket.AF_INET, _socket.SOCK_STREAM)
    except OSError:
        infos = []
    for address in sorted({info[4][0] for info in infos}):
        if address.startswith("127."):
            continue
        try:
            probe = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            try:
                probe.bind((address, 0))
            finally:
                probe.close()
        except OSError:
            continue  # not an address of this host (NAT, a stale DNS record)
        return address, address
    return "*", name


class _ZmqTransport:
    """zmq over TCP, for workers on other nodes: a ROUTER socket, so that whoever connects
    first cannot take the place of the worker. Every peer must first answer a challenge
    (a fresh random nonce; the answer is its HMAC under the executor's key): only then is
    anything sent to it. Peers that fail are ignored, and the driver keeps waiting for its
    worker. Frames travel as two zmq parts (MAC, payload), so a large payload is not copied."""

    _MAX_PENDING = 64  # unanswered challenges kept; a flood of peers cannot grow this

    def __init__(self, local: bool, key: bytes):
        import zmq

        self._zmq = zmq
        self._key = key
        self._socket = zmq.Context.instance().socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a peer that left raises
        bind, advertised = ("127.0.0.1", "127.0.0.1") if local else _tcp_interface()
        self.port = self._socket.bind_to_random_port(f"tcp://{bind}")
        self.address = f"tcp://{advertised}:{self.port}"
        self._peer: bytes | None = None  # zmq identity of the authenticated worker
        self._challenges: dict[bytes, bytes] = {}

    def poller(self):
        return self._zmq.Poller()

    def pollable(self):
        return self._socket

    def connected(self) -> bool:
        return self._peer is not None

    def accept(self) -> None:
        """Take every waiting handshake message; never blocks."""
        zmq = self._zmq
        while self._peer is None:
            try:
                parts = self._socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handshake(parts[0], parts[1:])

    def _handshake(self, peer: bytes, parts: list) -> None:
        nonce = self._challenges.pop(peer, None)
        if nonce is None:
            if parts == [frames.HELLO] and len(self._challenges) < self._MAX_PENDING:
                nonce = os.urandom(32)
                try:
                    self._socket.send_multipart([peer, nonce], flags=self._zmq.NOBLOCK)
                    self._challenges[peer] = nonce
                except self._zmq.ZMQError:
                    pass  # gone already
            return  # anything else from an unknown peer: dropped unread
        if len(parts) == 1 and frames.answer_is_right(self._key, nonce, parts[0]):
            self._peer = peer
            self._challenges.clear()
        # a wrong answer: that peer is never answered again (its next hello has no challenge
        # pending, but a new identity per connection means it may try anew: each try costs it
        # a connection and us one HMAC)

    def accept_if_waiting(self) -> bool:
        self.accept()
        return self.connected()

    def send(self, key: bytes, payload: bytes) -> None:
        if self._peer is None:
            raise BrokenPipeError("no worker has authenticated on this link")
        mac = frames.mac_of(key, payload)
        try:
            self._socket.send_multipart([self._peer, mac, payload], copy=False)
        except self._zmq.ZMQError as exc:  # EHOSTUNREACH: the worker's connection is gone
            raise BrokenPipeError(f"the worker's connection is gone: {exc}") from None

    def recv(self, key: bytes) -> bytes:
        zmq = self._zmq
        try:
            parts = self._socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise AuthenticationError("nothing to read") from None
        if parts[0].bytes != self._peer or len(parts) != 3:
            raise AuthenticationError("a frame from a peer that is not our worker: dropped unread")
        mac, payload = parts[1].bytes, parts[2].buffer
        if not frames.mac_matches(key, mac, payload):
            raise AuthenticationError("frame failed HMAC authentication")
        return payload

    def close(self) -> None:
        self._socket.close(linger=0)


class WorkerLink:
    """Link to one worker: bind, attach (or boot up) the worker, exchange dicts, shut it down.

    Args:
        key: the HMAC key (32 bytes); None: a fresh one.
        hostname_localhost: None/True: the worker runs on this machine (a Unix socket);
            False: it may run on another node (zmq over TCP on this host's address).
        log_obj_size: log the size of every message (logger ``hpcfutures``, INFO).
        launcher: what ``bootup`` starts the worker with (``launch.handle.Launcher``);
            None: only ``attach`` a handle started elsewhere.
    """

    def __init__(self, key: bytes | None = None, hostname_localhost: bool | None = None, log_obj_size: bool = False,
                 launcher=None):
        self.key = key or new_key()
        self._local = hostname_localhost is not False
        self._log_obj_size = log_obj_size
        self._transport: _UnixTransport | _ZmqTransport | None = None
        self.launcher = launcher
        self.address: str | None = None
        self.process = None  # the worker's handle (launch.handle.WorkerHandle)
        self._peer_seen = False  # the worker has connected (zmq: took a first send)

    @property
    def handle(self):
        """The worker's handle, or None before ``bootup``/``attach`` and after ``shutdown``."""
        return self.process

    @property
    def transport(self):
        """The bound transport (``send(key, payload)``, ``recv(key)``, ``pollable()``), or
        None before ``bind`` and after ``shutdown``: for tests and tools that need to put a
        frame on the link by hand (e.g. one with a wrong key)."""
        return self._transport

    # -- binding -------------------------------------------------------------------
    def bind(self) -> str:
        """Bind and return the address a worker connects to.

        Returns:
            ``unix:PATH`` on one machine, ``tcp://HOST:PORT`` across nodes.
        """
        self._transport = _UnixTransport() if self._local else _ZmqTransport(local=False, key=self.key)
        self.address = self._transport.address
        return self.address

    def bind_to_random_port(self) -> int:
        """Bind zmq over TCP (loopback unless ``hostname_localhost=False``).

        Returns:
            The port; ``address`` holds the full ``tcp://HOST:PORT``.
        """
        self._transport = _ZmqTransport(local=self._local, key=self.key)
        self.address = self._transport.address
        return self._transport.port

    # -- the worker ----------------------------------------------------------------
    def bootup(self, command, env: dict | None = None, cwd: str | None = None, resources: dict | None = None):
        """Start the worker with this link's launcher and watch it from now on.

        Args:
            command: the worker's command line (it connects to ``address``).
            env: its environment, with the key (``launch.process.worker_environment``).
            cwd: its working directory (None: the driver's).
            resources: passed to the launcher (ranks, CPUs per rank, ...); None: ``{}``.

        Returns:
            The worker's handle.

        Raises:
            RuntimeError: this link has no launcher, or ``env`` is None (the key must reach
                the worker: ``launch.link.SocketInterface`` builds it for you).
            FileNotFoundError: the command does not exist.
        """
        if self.launcher is None:
            raise RuntimeError("this WorkerLink has no launcher: give one (launcher=...) or attach() a started worker")
        if env is None:
            raise RuntimeError("bootup needs the worker's environment (worker_environment(link.key, 1))")
        return self.attach(self.launcher.start(list(command), resources or {}, env, cwd))

    def attach(self, handle):
        """Watch ``handle`` (a worker started elsewhere) from now on; this link closes it at
        ``shutdown``.

        Returns:
            ``handle``.
        """
        self.process = handle
        return handle

    def wait_connected(self, wake_fd: int | None = None, timeout: float | None = None) -> None:
        """Return once the worker has connected.

        Args:
            wake_fd: a descriptor that, once readable, interrupts the wait.
            timeout: seconds to wait at most (None: no limit).

        Raises:
            WorkerCrashedError: the worker ended first (``UnsatisfiableRequestError`` for a
                request SLURM will never start).
            InterruptedError: ``wake_fd`` became readable.
            TimeoutError: ``timeout`` passed.
        """
        if isinstance(self._transport, _ZmqTransport) or not self._transport.connected():
            wait_for_reply(self._transport, self.key, self.process, timeout, wake_fd, until_connected=True)
        self._peer_seen = True

    # -- messages ------------------------------------------------------------------
    def send_dict(self, message: dict) -> None:
        """Pickle ``message`` (functions of ``__main__`` by value) and send it.

        Raises:
            WorkerCrashedError: the worker is gone (or never connected).
        """
        self.send_payload(dumps_by_value(message))

    def send_payload(self, payload: bytes) -> None:
        """Send an already pickled message (pickled where errors belong: at submit); waits
        for the worker to connect first.

        Raises:
            WorkerCrashedError: the worker is gone (or ended before it connected).
        """
        if self._log_obj_size:
            import logging

            logging.getLogger("hpcfutures").info("sending %d bytes", len(payload))
        transport = self._transport
        if not self._peer_seen:
            self.wait_connected()  # pumps the launcher's stderr meanwhile (srun reports a queued job there)
        try:
            transport.send(self.key, payload)
        except (BrokenPipeError, ConnectionError):
            if transport.connected() and readable(transport.pollable()):
                return  # it sent something and left (an MPI worker that could not start): read that
            raise lost(self.process)

    def receive_dict(self, timeout: float | None = None, wake_fd: int | None = None):
        """Next authentic reply, unpickled. The replies of an MPI worker's ranks arrive
        combined (``wire.replies.open_reply``).

        Args:
            timeout: seconds to wait at most (None: no limit).
            wake_fd: a descriptor that, once readable, interrupts the wait.

        Returns:
            The reply dict (``{"result": ...}`` or ``{"error": ..., "traceback": ...}``).

        Raises:
            WorkerCrashedError: the worker ended first.
            TimeoutError: ``timeout`` passed.
            InterruptedError: ``wake_fd`` became readable.
            RuntimeError: the reply cannot be unpickled here (says so).
        """
        reply = open_reply(self.receive_payload(timeout, wake_fd)).reply
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def receive_payload(self, timeout: float | None = None, wake_fd: int | None = None) -> bytes | memoryview:
        """Next authentic reply, still pickled: a caller that must keep replies matched to
        requests decodes it itself, so a reply that fails to unpickle costs only that reply.
        Raises as ``receive_dict``.

        Args:
            timeout: seconds to wait; ``None``: until a reply or the worker's end.
            wake_fd: a descriptor whose readability ends the wait early (``None``: none).
        """
        payload = wait_for_reply(self._transport, self.key, self.process, timeout, wake_fd)
        if self._log_obj_size:
            import logging

            logging.getLogger("hpcfutures").info("received %d bytes", len(payload))
        return payload

    def send_and_receive_dict(self, message: dict):
        """One call: send ``message``, wait for its reply.

        Returns:
            The reply's ``"result"`` (or the whole reply when it has none).

        Raises:
            Exception: the function's own exception, rebuilt (its remote traceback attached).
            WorkerCrashedError: the worker ended first.
        """
        self.send_dict(message)
        reply = self.receive_dict()
        if isinstance(reply, dict) and "error" in reply:
            from hpcfutures.errors import rebuild

            raise rebuild(reply)
        return reply["result"] if isinstance(reply, dict) and "result" in reply else reply

    # -- end -----------------------------------------------------------------------
    def shutdown(self, wait: bool = True, grace: float = 5.0) -> None:
        """Ask the worker to stop; if it does not within ``grace`` seconds (or ``wait`` is
        False), terminate it (its launcher's way: its process group, its job). Closes the
        handle and the socket; the link can not be used afterwards.

        Args:
            wait: give the worker ``grace`` seconds to finish and exit.
            grace: seconds.
        """
        process = self.process
        if process is not None:
            # a worker that never connected has had no task: nothing to finish, stop it now
            told = False
            if wait and not process.ended() and self._transport is not None and self._transport.accept_if_waiting():
                try:
                    self._transport.send(self.key, dumps_by_value({"shutdown": True}))
                    told = True
                except Exception:
                    pass
            if not (told and process.wait_ended(grace)) and not process.ended():
                process.terminate()
            process.close()
            self.process = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __del__(self):
        try:
            if self._transport is not None:
                self._transport.close()
        except Exception:
            pass
