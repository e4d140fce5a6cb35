"""``SocketInterface``: the driver's end of the link to one worker process.

One zmq PAIR socket per worker. On one machine it is an ``ipc://`` socket inside a fresh
0700 directory, so only this user can even connect; across nodes it is TCP. On both, every
frame carries an HMAC under a per-executor key that reaches the worker through its
environment, and frames that fail the check are dropped unread.

``receive_dict`` never waits on a dead peer: it watches the worker's pidfd beside the
socket and raises ``WorkerCrashedError`` (naming the exit code or signal and the tail of
the launcher's stderr) the moment the process ends without replying.
"""

from __future__ import annotations

import os
import shutil
import socket as _socket
import tempfile
from typing import Any, Sequence

import zmq

from hpcfutures.errors import WorkerCrashedError
from hpcfutures.launch.process import WorkerProcess, deadline_after, remaining
from hpcfutures.wire.frames import AuthenticationError, dumps_by_value, loads, new_key, seal, unseal

_context: zmq.Context | None = None


def _zmq_context() -> zmq.Context:
    global _context
    if _context is None:
        _context = zmq.Context.instance()
    return _context


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
        self._socket = _zmq_context().socket(zmq.PAIR)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._ipc_dir: str | None = None
        self.address: str | None = None
        self.process: WorkerProcess | None = None
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)

    # -- binding -------------------------------------------------------------------
    def bind(self) -> str:
        """Bind and return the address a worker connects to."""
        if self._local:
            self._ipc_dir = tempfile.mkdtemp(prefix="hpcf-")  # mode 0700
            self.address = f"ipc://{self._ipc_dir}/w"
            self._socket.bind(self.address)
        else:
            port = self._socket.bind_to_random_port("tcp://*")
            self.address = f"tcp://{_socket.getfqdn()}:{port}"
        return self.address

    def bind_to_random_port(self) -> int:
        """TCP on loopback (or every interface for multi-node work); returns the port."""
        host = "127.0.0.1" if self._local else "*"
        port = self._socket.bind_to_random_port(f"tcp://{host}")
        self.address = f"tcp://{'127.0.0.1' if self._local else _socket.getfqdn()}:{port}"
        return port

    # -- process -------------------------------------------------------------------
    def bootup(self, command: Sequence[str], env: dict | None = None, cwd: str | None = None) -> WorkerProcess:
        from hpcfutures.launch.process import worker_environment

        env = env if env is not None else worker_environment(self.key, 1)
        self.process = WorkerProcess(command, env, cwd=cwd)
        self._poller.register(self.process.pidfd, zmq.POLLIN)
        self._poller.register(self.process.stderr_fd, zmq.POLLIN)
        return self.process

    # -- messages ------------------------------------------------------------------
    def send_dict(self, message: dict) -> None:
        payload = dumps_by_value(message)
        if self._log_obj_size:
            import logging

            logging.getLogger("hpcfutures").info("send %d bytes", len(payload))
        self.send_payload(payload)

    def send_payload(self, payload: bytes) -> None:
        """Send an already pickled message (pickled where the error belongs: at submit).

        A PAIR socket blocks a send until its peer has connected; a worker whose launcher
        died before connecting would block us forever, so wait on its pidfd as well."""
        frame = seal(self.key, payload)
        while True:
            try:
                self._socket.send(frame, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            process = self.process
            poller = zmq.Poller()
            poller.register(self._socket, zmq.POLLOUT)
            if process is not None:
                poller.register(process.pidfd, zmq.POLLIN)
            events = dict(poller.poll())
            if process is not None and process.pidfd in events and self._socket not in events:
                raise WorkerCrashedError(process.describe_exit())

    def receive_dict(self, timeout: float | None = None, wake_fd: int | None = None) -> Any:
        """Next authentic reply. Raises ``WorkerCrashedError`` if the worker ends first,
        ``TimeoutError`` after ``timeout`` seconds, ``InterruptedError`` if ``wake_fd``
        becomes readable (someone wants this wait to stop)."""
        if wake_fd is None:  # fast path: a reply that is already here needs no poll
            try:
                frame = self._socket.recv(flags=zmq.NOBLOCK, copy=True)
            except zmq.Again:
                pass
            else:
                try:
                    return loads(unseal(self.key, frame))
                except AuthenticationError:
                    pass
        deadline = deadline_after(timeout)
        if wake_fd is not None:
            self._poller.register(wake_fd, zmq.POLLIN)
        try:
            while True:
                left = remaining(deadline)
                events = dict(self._poller.poll(None if left is None else int(left * 1000) + 1))
                if self._socket in events:
                    frame = self._socket.recv(copy=True)
                    try:
                        return loads(unseal(self.key, frame))
                    except AuthenticationError:
                        continue
                process = self.process
                if process is not None:
                    if process.stderr_fd in events:
                        process.pump_stderr()
                        if not process._stderr_open:
                            self._poller.unregister(process.stderr_fd)
                    if process.pidfd in events:
                        if self._socket.poll(50, zmq.POLLIN):  # a reply sent just before exiting
                            continue
                        raise WorkerCrashedError(process.describe_exit())
                if wake_fd is not None and wake_fd in events:
                    raise InterruptedError("wait interrupted")
                if deadline is not None and remaining(deadline) == 0:
                    raise TimeoutError(f"no reply within {timeout} s")
        finally:
            if wake_fd is not None:
                self._poller.unregister(wake_fd)

    def send_and_receive_dict(self, message: dict) -> Any:
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
            if process.popen.poll() is None:
                try:
                    self.send_dict({"shutdown": True})
                except zmq.ZMQError:
                    pass
                if not (wait and process.wait_exit(grace)):
                    process.terminate()
            process.close()
            self.process = None
        self._socket.close(linger=0)
        if self._ipc_dir:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            self._ipc_dir = None

    def __del__(self):
        try:
            if self._ipc_dir:
                shutil.rmtree(self._ipc_dir, ignore_errors=True)
        except Exception:
            pass
