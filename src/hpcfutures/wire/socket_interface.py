"""``SocketInterface``: the driver's end of the link to one worker process.

Two transports, one framing (``frames``: HMAC-SHA256 over each pickled message, checked
before anything is unpickled; the key reaches the worker as ``WorkerProcess`` passes it: an
inherited pipe, a 0600 file for a local ``mpiexec``, the environment through ``srun``):

- on one machine, a Unix-domain stream socket inside a fresh 0700 directory: only this
  user can even connect, and a round trip costs ~40 us, a quarter of zmq's (whose I/O
  threads add a hop on each side), so warm calls beat ``ProcessPoolExecutor``;
- across nodes (``hostname_localhost=False``), zmq over TCP, bound to the address this
  host's name resolves to where that is a real interface; a connecting peer is sent
  nothing before it has answered a challenge with the key (see ``_ZmqTransport``).

Every wait watches the worker's pidfd beside the socket: if the process ends before it
connects or replies, ``WorkerCrashedError`` (exit code or signal, and the tail of the
launcher's stderr) is raised at once instead of waiting forever.
"""

from __future__ import annotations

import os
import select
import shutil
import socket as _socket
import tempfile

from hpcfutures.errors import WorkerCrashedError
from hpcfutures.launch.process import WorkerProcess, deadline_after, poll_ms, remaining, worker_environment
from hpcfutures.wire import frames
from hpcfutures.wire.frames import AuthenticationError, dumps_by_value, new_key, unseal
from hpcfutures.wire.replies import open_reply

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

    def send(self, key: bytes, payload: bytes, pidfd: int | None = None, timeout: float | None = None) -> None:
        # a dead peer makes the write fail (EPIPE): no need to watch the pidfd here
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

    def send(self, key: bytes, payload: bytes, pidfd: int | None = None, timeout: float | None = None) -> None:
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


class SocketInterface:
    """Link to one worker: bind, start the worker, exchange dicts, shut it down.

    Usable on its own::

        link = SocketInterface()
        address = link.bind()
        link.bootup(python_command("hpcfutures.worker.interactive", address))
        link.send_and_receive_dict({"fn": sum, "args": ([1, 2],), "kwargs": {}})  # -> 3
        link.shutdown()
    """

    def __init__(self, key: bytes | None = None, hostname_localhost: bool | None = None, log_obj_size: bool = False):
        self.key = key or new_key()
        self._local = hostname_localhost is not False
        self._log_obj_size = log_obj_size
        self._transport: _UnixTransport | _ZmqTransport | None = None
        self.address: str | None = None
        self.process: WorkerProcess | None = None
        self._peer_seen = False  # the worker has connected (zmq: took a first send)

    # -- binding -------------------------------------------------------------------
    def bind(self) -> str:
        """Bind and return the address a worker connects to (``unix:PATH`` on one
        machine, ``tcp://HOST:PORT`` across nodes)."""
        self._transport = _UnixTransport() if self._local else _ZmqTransport(local=False, key=self.key)
        self.address = self._transport.address
        return self.address

    def bind_to_random_port(self) -> int:
        """TCP through zmq (loopback unless ``hostname_localhost=False``); returns the port."""
        self._transport = _ZmqTransport(local=self._local, key=self.key)
        self.address = self._transport.address
        return self._transport.port

    # -- process -------------------------------------------------------------------
    def bootup(self, command, env: dict | None = None, cwd: str | None = None, start=None) -> WorkerProcess:
        """Start the worker: ``start(command, env, cwd)`` when a launcher starts its workers
        itself (a Flux job), a local process otherwise."""
        env = env if env is not None else worker_environment(self.key, 1)
        self.process = start(command, env, cwd) if start is not None else WorkerProcess(command, env, cwd=cwd)
        return self.process

    def wait_connected(self, wake_fd: int | None = None, timeout: float | None = None) -> None:
        """Return once the worker has connected. Raises ``WorkerCrashedError`` (or
        ``UnsatisfiableRequestError`` for a request SLURM will never start) if its process
        ends first, ``InterruptedError`` if ``wake_fd`` becomes readable, ``TimeoutError``
        after ``timeout`` seconds (None: no limit)."""
        if isinstance(self._transport, _ZmqTransport) or not self._transport.connected():
            self._wait(timeout, wake_fd, until_connected=True)
        self._peer_seen = True

    # -- messages ------------------------------------------------------------------
    def send_dict(self, message: dict) -> None:
        self.send_payload(dumps_by_value(message))

    def send_payload(self, payload: bytes) -> None:
        """Send an already pickled message (pickled where errors belong: at submit)."""
        if self._log_obj_size:
            import logging

            logging.getLogger("hpcfutures").info("sending %d bytes", len(payload))
        transport = self._transport
        if not self._peer_seen:
            self.wait_connected()  # pumps the launcher's stderr meanwhile (srun reports a queued job there)
        try:
            transport.send(self.key, payload, self.process.pidfd if self.process else None)
        except (BrokenPipeError, ConnectionError):
            if transport.connected() and _readable(transport.pollable()):
                return  # it sent something and left (an MPI worker that could not start): read that
            raise self._crashed()

    def receive_dict(self, timeout: float | None = None, wake_fd: int | None = None):
        """Next authentic reply, unpickled. Raises ``WorkerCrashedError`` if the worker ends
        first, ``TimeoutError`` after ``timeout`` seconds, ``InterruptedError`` if ``wake_fd``
        becomes readable (someone wants this wait to stop). The replies of an MPI worker's
        ranks arrive combined (``wire.replies.open_reply``); a reply that cannot be
        unpickled here raises the ``RuntimeError`` that says so."""
        reply = open_reply(self.receive_payload(timeout, wake_fd)).reply
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def receive_payload(self, timeout: float | None = None, wake_fd: int | None = None) -> bytes | memoryview:
        """Next authentic reply, still pickled: a caller that must keep replies matched to
        requests decodes it itself, so a reply that fails to unpickle costs only that reply."""
        payload = self._wait(timeout, wake_fd)
        if self._log_obj_size:
            import logging

            logging.getLogger("hpcfutures").info("received %d bytes", len(payload))
        return payload

    def _wait(self, timeout, wake_fd, until_connected: bool = False):
        transport = self._transport
        process = self.process
        deadline = deadline_after(timeout)
        poller = transport.poller()
        target = transport.pollable()
        # a worker has connected once it proved it holds the key (both transports: the Unix
        # socket accepts, the zmq ROUTER answers the challenge); never "the socket is writable",
        # which a ROUTER always is
        poller.register(target, POLLIN)
        watched_stderr = process is not None and process.stderr_open
        if process is not None:
            poller.register(process.pidfd, POLLIN)
            if watched_stderr:
                poller.register(process.stderr_fd, POLLIN)
        if wake_fd is not None:
            poller.register(wake_fd, POLLIN)
        while True:
            events = dict(poller.poll(poll_ms(deadline)))
            if target in events:
                if not transport.connected():
                    transport.accept()
                    if not transport.connected():  # a peer that has not (yet) proved it is ours
                        continue
                    if until_connected:
                        return None
                    poller.unregister(target)
                    target = transport.pollable()
                    poller.register(target, POLLIN)
                    continue
                try:
                    return transport.recv(self.key)
                except AuthenticationError:
                    continue
                except (EOFError, ConnectionError, OSError):
                    return self._ended()
            if process is not None:
                if watched_stderr and process.stderr_fd in events:
                    process.pump_stderr()
                    if not process.stderr_open:
                        poller.unregister(process.stderr_fd)
                        watched_stderr = False
                if process.pidfd in events:
                    if _readable(target):  # something sent just before it ended: read it first
                        continue
                    return self._ended()
            if wake_fd is not None and wake_fd in events:
                raise InterruptedError("wait interrupted")
            if deadline is not None and remaining(deadline) == 0:
                raise TimeoutError(f"no reply within {timeout} s")

    def _ended(self):
        """The worker is gone without a reply on the link: the report a failing MPI rank
        left on stderr before it aborted the job is the reply, if there is an authentic one
        (``wire.replies``); otherwise raise ``WorkerCrashedError``."""
        process = self.process
        if process is not None:
            process.wait_exit(5.0)
            process.pump_stderr()
            while process.reports:
                line = process.reports.pop(0)
                try:
                    return unseal(self.key, bytes.fromhex(line.decode("ascii")))
                except (ValueError, AuthenticationError, UnicodeDecodeError):
                    continue  # not ours, or damaged: ignored, never unpickled
        raise self._crashed()

    def _crashed(self) -> BaseException:
        if self.process is None:
            return WorkerCrashedError("the worker closed the connection")
        if not self.process.wait_exit(5.0):
            # the link broke but the process lives on (a launcher whose worker is gone): it
            # cannot serve this link any more, and describing its end must not wait for ever
            self.process.kill_group()
            self.process.wait_exit(5.0)
            return WorkerCrashedError(
                f"the connection to the worker was lost while its process still ran; the process was killed "
                f"({self.process.request()})"
            )
        return self.process.exit_error()  # WorkerCrashedError, or why the scheduler refused it

    def send_and_receive_dict(self, message: dict):
        self.send_dict(message)
        reply = self.receive_dict()
        if isinstance(reply, dict) and "error" in reply:
            from hpcfutures.errors import rebuild

            raise rebuild(reply)
        return reply["result"] if isinstance(reply, dict) and "result" in reply else reply

    # -- end -----------------------------------------------------------------------
    def shutdown(self, wait: bool = True, grace: float = 5.0) -> None:
        """Ask the worker to stop; if it does not within ``grace`` s (or ``wait`` is
        False), terminate its process group."""
        process = self.process
        if process is not None:
            # a worker that never connected has had no task: nothing to finish, stop it now
            told = False
            if wait and not process.exited() and self._transport is not None and self._transport.accept_if_waiting():
                try:
                    self._transport.send(self.key, dumps_by_value({"shutdown": True}), process.pidfd, timeout=grace)
                    told = True
                except Exception:
                    pass
            if not (told and process.wait_exit(grace)) and not process.exited():
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


def _readable(target) -> bool:
    if isinstance(target, int):
        return bool(select.select([target], [], [], 0.05)[0])
    import zmq

    return bool(target.poll(50, zmq.POLLIN))
