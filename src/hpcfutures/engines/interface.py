"""The one interface every engine implements, so a facade (``executors/``) drives any of
them without knowing which it holds.

An engine takes ready tasks (arguments resolved, call pickled) and ends their futures
through ``engines/outcome.py``. Today's engines: one fresh process per task
(``OneProcessPerTask``), a warm pool of workers (``WarmPool``), one batch job per call
(``JobEngine``) and graph-only recording (``GraphRecorder``). A new backend (Flux, say)
brings a launcher, not an engine; a new engine implements ``Engine`` — subclassing
``EngineDefaults`` gives it the neutral answers to the optional questions.

``Engine`` is ``typing.Protocol``-shaped (duck typed; ``tests/test_architecture.py`` checks
that every engine has every member) but written as a plain class, so importing it costs no
``typing`` import.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from concurrent.futures import Future

    from hpcfutures.scheduling.task import Task


class Engine:
    """What a facade may ask of an engine.

    Attributes:
        max_workers: how many tasks may run at once now (``None``: an outside queue decides).
        records_calls: ``True`` for an engine that records calls instead of running them
            (graph-only mode): ``submit()`` hands it every task as submitted — futures still
            among the arguments, nothing pickled, no cache lookup — and it ends the future.
        sends_frames: ``True`` for an engine that sends each call's pickle in an
            authenticated frame to a worker that loads it with ``wire.frames.loads``: the
            call's large buffers may then travel out of band (``Task.pickle``).
        supports_dependencies: ``True`` for an engine that can start a task whose upstream
            tasks have not finished (a scheduler-side ``afterok``): then ``enqueue`` takes
            ``after`` and ``pending``/``abandon`` answer.
    """

    max_workers: int | None
    records_calls: bool
    sends_frames: bool
    supports_dependencies: bool

    def enqueue(self, task: Task) -> None:
        """Take a task to run; its future ends through ``engines/outcome.py``.

        An engine with ``supports_dependencies`` also takes ``after``: the ids of the jobs
        this one must wait for.
        """
        raise NotImplementedError

    def queued(self) -> int:
        """Tasks taken but not started (``len(executor)`` counts them)."""
        raise NotImplementedError

    def resize(self, n: int) -> None:
        """Let ``n`` (>= 1) tasks run at once from now on.

        Raises:
            RuntimeError: the engine was stopped (a warm pool).
        """
        raise NotImplementedError

    def cancel_queued(self) -> None:
        """Cancel every task taken but not started."""
        raise NotImplementedError

    def stop(self, wait: bool) -> None:
        """Take nothing more; ``wait=True`` returns once every taken task has ended."""
        raise NotImplementedError

    def kill_all(self) -> None:
        """Cancel what is queued and kill what runs: every future ends now."""
        raise NotImplementedError

    def still_queued(self, task: Task) -> bool:
        """Whether a task the engine counts as started in fact waits in an outside queue
        (a batch job pending), for the task overview."""
        raise NotImplementedError

    def provide_gpus(self, devices: list) -> None:
        """The GPU ids this machine shows, handed over the first time a task asks for GPUs
        (listing them costs an ``nvidia-smi``); an engine that does not assign GPUs itself
        ignores them."""
        raise NotImplementedError

    def pending(self, future: Future) -> tuple | None:
        """(job id, entry path) of a future whose job has not finished, else ``None``."""
        raise NotImplementedError

    def abandon(self, future: Future, error: BaseException | None) -> bool:
        """An upstream task failed: cancel ``future``'s job and end the future with
        ``error`` (``None``: cancelled). ``False`` when no job of it is known.

        Args:
            future: the downstream task's future.
            error: what it ends with; ``None``: it is cancelled.

        Returns:
            Whether a job of it was known (and is now cancelled).
        """
        raise NotImplementedError


class EngineDefaults:
    """The neutral answers to the optional parts of ``Engine``, for engines to inherit."""

    records_calls = False
    sends_frames = False
    supports_dependencies = False

    def still_queued(self, task: Task) -> bool:
        """No outside queue: a started task runs (see ``Engine.still_queued``)."""
        return False

    def provide_gpus(self, devices: list) -> None:
        """GPUs are not this engine's to assign: ignored (see ``Engine.provide_gpus``)."""
        pass

    def pending(self, future: Future) -> tuple | None:
        """No batch jobs: ``None`` (see ``Engine.pending``)."""
        return None

    def cancel_queued(self) -> None:
        """Cancel every task taken but not started (see ``Engine.cancel_queued``), for an
        engine that holds them in ``self._queue`` (a deque) guarded by ``self._queue_lock``.

        The queue is emptied under the lock and the futures are cancelled after it is
        released: a cancelled future runs its done-callbacks, which may submit again and so
        take the same lock. An engine with no such queue (batch jobs, graph recording)
        overrides this.
        """
        from hpcfutures.engines.outcome import cancel_unstarted  # interface.py stays import-light

        with self._queue_lock:
            queued = list(self._queue)
            self._queue.clear()
        for task in queued:
            cancel_unstarted(task)

    def abandon(self, future: Future, error: BaseException | None) -> bool:
        """No batch jobs to cancel: ``False`` (see ``Engine.abandon``).

        Args:
            future, error: as Engine.abandon.
        """
        return False
