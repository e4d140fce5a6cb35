"""The unit of work as the scheduler sees it."""

from __future__ import annotations

import time

from hpcfutures.scheduling.futures import claim

SMALL_CALL = 64 * 1024
"""Bytes of a pickled call up to which a queued task keeps only the pickle (``Task.compact``):
the arguments are dropped. Above it the arguments stay and the pickle goes once sent, so a
large argument's pickle and its reply's buffer are never alive at once."""

_NO_DEVICES: tuple = ()  # shared: a task that never held a GPU needs no list of its own


class Task:
    """One call: its future, the call itself, its merged resources and, once known, the
    pickled call (made at submit, so pickling errors surface there).

    ``attempt`` counts runs (1 for the first); a task that is retried goes back to a queue
    with its future already RUNNING, which ``start`` accounts for.

    Args:
        future: the ``TaskFuture`` the caller holds; the engine ends it.
        fn: the function to call.
        args: its positional arguments, futures already replaced by their results.
        kwargs: its keyword arguments, likewise resolved.
        resources: the merged ``resource_dict`` (``cores``: MPI ranks, ``threads_per_core``:
            CPUs per rank, ``gpus_per_core``, ``cwd``, ``run_time_max`` in seconds, ...).
        payload: the pickled call when it is made already (``pickle()``); None: not yet.
    """

    __slots__ = (
        "future", "fn", "args", "kwargs", "resources", "payload", "attempt", "running", "started_at", "cache",
        "devices", "worker", "number", "submitted_at", "queued_at",
    )

    def __init__(self, future, fn, args: tuple, kwargs: dict, resources: dict, payload: bytes | None = None):
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.resources = resources
        self.payload = payload
        self.attempt = 1
        self.running = False
        self.started_at = 0.0
        self.cache = None  # (CacheStore, key) when the result is to be stored
        self.devices = _NO_DEVICES  # GPUs assigned while it runs (one-process-per-task mode)
        # for the task overview: where it runs (warm worker id, process id, "job 123"), and its
        # number in its executor's book (0 when the executor keeps none)
        self.worker = None
        self.number = 0
        self.submitted_at = 0.0  # wall-clock times (time.time()) for the overview
        self.queued_at = 0.0  # when its dependencies were met (submitted_at when it had none)

    def start(self) -> bool:
        """Mark the future RUNNING (once; a retry is already running). False when the
        user cancelled it while it was queued: then it must not run."""
        if not self.running:
            # claim(): False, quietly, when it was cancelled (waiters told) or already finished
            self.running = claim(self.future)
            if not self.running:
                return False
            self.started_at = time.monotonic()
        return self.running

    def pickle(self, out_of_band: bool = False) -> bytes:
        """The call pickled for a worker (functions of ``__main__`` and of unimportable
        modules by value).

        Args:
            out_of_band: large contiguous buffers (numpy arrays' data, 1 MiB or more) go
                beside the pickle (``wire.frames.dumps_by_value_with_buffers``), for a worker
                reached by frames; False: one plain pickle, as a cache entry's input must be.

        Returns:
            The bytes to send (or store).

        Raises:
            TypeError: the function or an argument cannot be pickled (names the call).
        """
        from hpcfutures.wire.frames import dumps_by_value, dumps_by_value_with_buffers  # loaded by the executor already

        if self.args is None:  # compacted: the pickle is all that is left of the call
            return self.payload
        dump = dumps_by_value_with_buffers if out_of_band else dumps_by_value
        try:
            return dump({"fn": self.fn, "args": self.args, "kwargs": self.kwargs})
        except Exception as exc:
            raise TypeError(
                f"the call {self.name}(...) cannot be pickled to send it to a worker: {type(exc).__name__}: {exc}"
            ) from exc

    def compact(self) -> None:
        """Queued with its pickle: drop the arguments when the pickle is small
        (``SMALL_CALL``) and nothing reads them again (an ``error_log_file`` writes them):
        100,000 pending calls then hold one bytes object each, not their arguments, their
        ``kwargs`` dict and the pickle (issue 15, memory per pending task)."""
        payload = self.payload
        if payload is not None and len(payload) <= SMALL_CALL and not self.resources.get("error_log_file"):
            self.args = self.kwargs = None

    def sent(self) -> None:
        """The worker has the call and runs it now: its pickle is dropped unless it may have
        to be sent again (retries, a failed worker start), stored (cache), or is all that is
        left of the call (``compact``), so that a large argument's pickle and the reply's
        buffer are never alive at once."""
        if self.args is not None and not self.resources.get("retries") and self.cache is None:
            self.payload = None

    def release(self) -> None:
        """Drop the call (its arguments and their pickle) once the future has its outcome:
        a finished task may stay referenced a while (a worker thread's last task), and a
        large argument must not stay alive with it."""
        self.args, self.kwargs, self.payload = (), {}, None

    @property
    def cores(self) -> int:
        """MPI ranks the call runs on (``resources["cores"]``, 1 by default)."""
        return self.resources.get("cores", 1)

    @property
    def slots(self) -> int:
        """Cores this task occupies: ranks x threads per rank."""
        return self.cores * self.resources.get("threads_per_core", 1)

    @property
    def gpus(self) -> int:
        """GPUs the call needs in all: ranks x ``gpus_per_core`` (a fraction rounds down)."""
        return int(self.cores * (self.resources.get("gpus_per_core", 0) or 0))

    @property
    def name(self) -> str:
        """The function's qualified name (its ``repr`` when it has none), for messages and
        the task overview."""
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)
