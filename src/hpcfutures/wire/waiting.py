"""The one wait of the driver: for a worker's reply, its end, its stderr, a wake-up and a
deadline, all at once, and the one place that decides "crash, or a reply that came late".

Every engine path waits here: a warm worker's socket, an MPI task's socket, a serial
one-shot task's pipes (also through ``srun``'s stdin/stdout). The worker is seen only
through its handle (``launch.handle.WorkerHandle``, duck-typed: ``ended_fd``, ``stderr_fd``,
``pump_stderr``, ...), so this module imports nothing from ``launch``. Each transport
exposes ``pollable()``, an fd (or a zmq socket) that becomes readable when a reply (or a
connecting worker) arrives.

Rules, the same for all transports:

- a reply that is readable wins over the end of the worker: a worker that sent its reply
  and exited at once still delivers it;
- a worker that ended without a reply gets the report a failing MPI rank left on its stderr
  as the reply, if an authentic one is there; otherwise the handle's ``exit_error()``;
- a link that broke while the worker lives on (a launcher whose worker is gone) has its
  worker killed, and says so.
"""

from __future__ import annotations

import os
import select
import time

from hpcfutures.errors import WorkerCrashedError
from hpcfutures.wire import frames
from hpcfutures.wire.frames import AuthenticationError, unseal

POLLIN = select.POLLIN
_END_WAIT = 5.0  # seconds to wait for a worker whose link broke to end, before it is killed


def deadline_after(seconds: float | None) -> float | None:
    """The ``time.monotonic()`` deadline ``seconds`` from now (None: none)."""
    return None if seconds is None else time.monotonic() + seconds


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative; None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# poll() takes a C int of milliseconds (about 24.8 days): a longer wait is polled in slices
# of this length by the caller's loop, which looks at its deadline after every poll
_LONGEST_POLL_MS = 2**31 - 1


def poll_ms(deadline: float | None) -> int | None:
    """Milliseconds to poll for until ``deadline`` (rounded up; ``None``: no deadline),
    at most what ``poll()`` accepts."""
    left = remaining(deadline)
    return None if left is None else min(int(left * 1000) + 1, _LONGEST_POLL_MS)


class PipeTransport:
    """The one-shot path: the task goes down one pipe, the reply comes up another (inherited
    by a local child, or carried by srun's stdin/stdout). Always "connected".

    Args:
        task_w: the write end of the task pipe (closed after the one send).
        reply_r: the read end of the reply pipe.
    """

    def __init__(self, task_w: int, reply_r: int):
        self._task_w = task_w
        self._reply_r = reply_r

    def poller(self):
        """A ``select.poll`` object for ``wait_for_reply``."""
        return select.poll()

    def pollable(self) -> int:
        """The descriptor that becomes readable when the reply arrives."""
        return self._reply_r

    def connected(self) -> bool:
        """Always ``True``: the pipes exist before the worker starts."""
        return True

    def accept(self) -> None:
        """Nothing to accept: the worker inherited its pipe ends."""
        pass

    def accept_if_waiting(self) -> bool:
        """Always ``True``: there is no connection to wait for."""
        return True

    def send(self, key: bytes, payload: bytes) -> None:
        """Write the one task and close the pipe (the worker reads to its end). A worker
        that died before reading raises ``BrokenPipeError``.

        Args:
            key: the MAC key of the frame.
            payload: the pickled task.
        """
        try:
            frames.write_frame(self._task_w, key, payload)
        finally:
            self._close_task()

    def recv(self, key: bytes) -> bytes:
        """Read the reply frame.

        Raises:
            AuthenticationError: a frame without a valid MAC.
            EOFError: the worker closed its end without a reply.
        """
        return frames.read_frame(self._reply_r, key)

    def _close_task(self) -> None:
        if self._task_w >= 0:
            os.close(self._task_w)
            self._task_w = -1

    def close(self) -> None:
        """Close both pipe ends this side holds (once)."""
        self._close_task()
        if self._reply_r >= 0:
            os.close(self._reply_r)
            self._reply_r = -1


def wait_for_reply(transport, key: bytes, handle=None, timeout: float | None = None, wake_fd: int | None = None,
                   until_connected: bool = False):
    """Wait for the next authentic reply on ``transport`` (or, with ``until_connected``,
    for the worker to connect and prove it holds the key), watching the worker's end and
    stderr meanwhile.

    Args:
        transport: ``PipeTransport``, or a socket transport of ``wire.socket_interface``.
        key: the executor's HMAC key.
        handle: the worker's ``WorkerHandle`` (None: no process to watch, e.g. a link to a
            worker someone else started).
        timeout: seconds to wait at most (None: no limit).
        wake_fd: a descriptor that, once readable, interrupts the wait.
        until_connected: return None as soon as the worker connected.

    Returns:
        The payload (bytes or memoryview), still pickled; None with ``until_connected``.

    Raises:
        WorkerCrashedError: the worker ended without a reply (or the scheduler's
            ``UnsatisfiableRequestError``: ``handle.exit_error()``).
        TimeoutError: ``timeout`` seconds passed.
        InterruptedError: ``wake_fd`` became readable.
    """
    deadline = deadline_after(timeout)
    poller = transport.poller()
    target = transport.pollable()
    # a worker has connected once it proved it holds the key (the Unix socket accepts, the
    # zmq ROUTER answers the challenge); never "the socket is writable", which a ROUTER always is
    poller.register(target, POLLIN)
    stderr_fd = None  # a handle whose stderr goes to a file (a Flux job) has none to pump
    if handle is not None and handle.stderr_fd is not None and handle.stderr_open:
        stderr_fd = handle.stderr_fd
    ended_fd = handle.ended_fd if handle is not None else None
    if ended_fd is not None:
        poller.register(ended_fd, POLLIN)
    if stderr_fd is not None:
        poller.register(stderr_fd, POLLIN)
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
                return transport.recv(key)
            except AuthenticationError:
                continue
            except (EOFError, ConnectionError, OSError):
                return worker_gone(key, handle)
        if stderr_fd is not None and stderr_fd in events:
            handle.pump_stderr()
            if not handle.stderr_open:
                poller.unregister(stderr_fd)
                stderr_fd = None
        if ended_fd is not None and ended_fd in events:
            if readable(target):  # something sent just before it ended: read it first
                continue
            return worker_gone(key, handle)
        if wake_fd is not None and wake_fd in events:
            raise InterruptedError("wait interrupted")
        if deadline is not None and remaining(deadline) == 0:
            raise TimeoutError(f"no reply within {timeout} s")


def worker_gone(key: bytes, handle):
    """The worker is gone without a reply on its link: the report a failing MPI rank left
    on stderr before it aborted the job is the reply, if there is an authentic one
    (``wire.replies``).

    Args:
        key: the link's MAC key (a rank's report is signed with it).
        handle: the worker's handle; ``None``: none to ask.

    Returns:
        That report's payload.

    Raises:
        WorkerCrashedError (or ``handle.exit_error()``): there is none.
    """
    if handle is not None:
        handle.wait_ended(_END_WAIT)
        handle.pump_stderr()
        for line in handle.take_reports():
            try:
                return unseal(key, bytes.fromhex(line.decode("ascii")))
            except (ValueError, AuthenticationError, UnicodeDecodeError):
                continue  # not ours, or damaged: ignored, never unpickled
    raise lost(handle, wait=0)  # waited above already


def lost(handle, wait: float = _END_WAIT) -> BaseException:
    """The error for a link that broke: the worker's exit error once it has ended; a worker
    still running after ``wait`` seconds (a launcher whose worker is gone) cannot serve the
    link any more and is killed, so describing its end never waits for ever.

    Args:
        handle: the worker's handle; ``None``: a link without one.
        wait: seconds to wait for the worker's end before it is killed.

    Returns:
        The exception to raise (a ``WorkerCrashedError`` or the handle's exit error).
    """
    if handle is None:
        return WorkerCrashedError("the worker closed the connection")
    if not handle.wait_ended(wait):
        handle.kill()
        handle.wait_ended(_END_WAIT)
        return WorkerCrashedError(
            f"the connection to the worker was lost while its process still ran; the process was killed "
            f"({handle.request()})"
        )
    return handle.exit_error()


def readable(target) -> bool:
    """Whether ``target`` (an fd or a zmq socket) has input within 50 ms."""
    if isinstance(target, int):
        return bool(select.select([target], [], [], 0.05)[0])
    import zmq

    return bool(target.poll(50, zmq.POLLIN))
