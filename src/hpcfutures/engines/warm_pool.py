"""Engine: a pool of warm workers (``block_allocation=True``).

Each worker is a long-lived process (``mpiexec -n cores`` for MPI workers), started by the
pool's launcher (``launch.handle.Launcher``) and reached through a link (``link_factory``,
by default ``wire.socket_interface.WorkerLink``), with its own thread in the driver. Both
are constructor arguments, so the pool's policies can be driven by a fake launcher and link
without processes (``tests/test_engine_policies.py``). Idle threads wait on one condition
variable for the shared FIFO queue, so a submit wakes exactly one of them: load balancing
without a broker thread and without polling. A thread sends its task, then waits on the
reply socket and the worker's end together; a worker that dies fails only the task it was running, and is restarted up
to ``restart_limit`` times. When every worker is gone, queued and new tasks fail with the
reason instead of waiting forever.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from hpcfutures.errors import PoolBrokenError, UnsatisfiableRequestError, WorkerCrashedError, rebuild
from hpcfutures.engines.interface import EngineDefaults
from hpcfutures.engines.outcome import cancel_unstarted, fail_unstarted, finish, settle, stopped_by_shutdown
from hpcfutures.launch.gpus import check_enough, gpu_environment
from hpcfutures.launch.handle import MAY_QUEUE
from hpcfutures.launch.local import LocalLauncher, interactive_worker
from hpcfutures.launch.process import worker_environment
from hpcfutures.logs import get_logger
from hpcfutures.scheduling.task import Task
from hpcfutures.wire.frames import nbytes
from hpcfutures.wire.replies import open_reply
from hpcfutures.wire.socket_interface import WorkerLink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable
from hpcfutures.worker.directory import CWD_ENV, make_working_directory


_log = get_logger("pool")

_SEND_AHEAD = 2  # calls a worker may hold: the running one and the next, while a backlog lasts
_AHEAD_BYTES = 64 * 1024  # largest call sent ahead (see _next_task)


_START_GRACE = 5.0  # seconds a graceful shutdown lets a local worker finish starting


class WarmPool(EngineDefaults):
    """A pool of warm workers sharing one FIFO queue of tasks.

    Args:
        key: the HMAC key of the links.
        n_workers: workers to start now (``resize`` changes it).
        resources: every worker's merged ``resource_dict`` (``cores``: MPI ranks per worker,
            ``threads_per_core``: CPUs per rank, ``cwd``).
        init_function: run once in each worker as it starts (its return value is the
            worker's initial data).
        restart_limit: how often each worker may be restarted after a crash or a failed
            start (0: never).
        hostname_localhost: see ``WorkerLink``.
        log_obj_size: see ``WorkerLink``.
        gpus: GPU ids this pool may hand out; ``gpus_per_worker`` of them to each worker.
        gpus_per_worker: GPUs per worker (0: none are assigned).
        launcher: starts each worker and returns its handle (``launch.handle.Launcher``);
            None: ``LocalLauncher()``.
        link_factory: ``link_factory(key)`` returns a fresh, unbound link to one worker
            (``bind``, ``attach``, ``handle``, ``wait_connected``, ``send_payload``,
            ``send_dict``, ``receive_payload``, ``shutdown``: as ``WorkerLink``); None: a
            ``WorkerLink`` with ``hostname_localhost`` and ``log_obj_size``.

    Raises:
        ValueError: more GPUs asked for than ``gpus`` holds.
    """

    sends_frames = True  # workers load calls with wire.frames.loads: large arguments out of band

    def __init__(
        self,
        key: bytes,
        n_workers: int,
        resources: dict,
        init_function=None,
        restart_limit: int = 0,
        hostname_localhost=None,
        log_obj_size: bool = False,
        gpus: list | None = None,
        gpus_per_worker: int = 0,
        launcher=None,
        link_factory: Callable | None = None,
    ):
        self._key = key
        self._launcher = launcher or LocalLauncher()
        if link_factory is None:
            def link_factory(key: bytes) -> WorkerLink:
                return WorkerLink(key=key, hostname_localhost=hostname_localhost, log_obj_size=log_obj_size)
        self._link_factory = link_factory
        self._gpus = gpus or []
        self._gpus_per_worker = gpus_per_worker
        self._resources = resources
        self._init_function = init_function
        self._restart_limit = restart_limit
        self._cond = threading.Condition()
        self._queue: deque[Task] = deque()
        self._queue_lock = self._cond  # EngineDefaults.cancel_queued empties _queue under it
        self._threads: dict[int, threading.Thread] = {}
        self._inflight: dict[int, deque] = {}  # worker id -> tasks sent to it
        self._links: dict[int, WorkerLink] = {}
        self._target = 0
        self._retire = 0
        self._stopping = False
        self._killing = False
        self._broken: BaseException | None = None
        self._idle = 0  # threads waiting for a task
        self._starting = 0  # threads starting their worker: about to be free too
        # written once at stop: wakes threads whose worker has not connected yet (its srun
        # may wait in the queue for long), so a shutdown does not wait for the scheduler
        self._wake_r, self._wake_w = os.pipe()
        self.resize(n_workers)

    # -- size ---------------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        """Workers the pool is sized to (starting, serving or about to retire included)."""
        return self._target

    def resize(self, n: int) -> None:
        """Grow the pool to ``n`` workers (new threads start their workers) or shrink it
        (idle workers retire first, busy ones after their task).

        Raises:
            RuntimeError: the pool was stopped (``stop`` or ``kill_all``).
            ValueError: ``n`` workers x ``gpus_per_worker`` is more GPUs than ``gpus`` holds.
        """
        with self._cond:
            if self._stopping:
                raise RuntimeError("cannot resize an executor after shutdown")
            if self._gpus_per_worker:
                check_enough(n * self._gpus_per_worker, self._gpus, f"{n} workers x {self._gpus_per_worker} GPU(s)")
            alive = len(self._threads) - self._retire
            if n > alive:
                cancel = min(self._retire, n - alive)
                self._retire -= cancel
                alive += cancel
                for _ in range(n - alive):
                    worker_id = min(set(range(len(self._threads) + 1)) - set(self._threads))
                    thread = threading.Thread(
                        target=self._serve, args=(worker_id,), name=f"hpcfutures-worker-{worker_id}", daemon=True
                    )
                    self._threads[worker_id] = thread
                    # counted as starting from now, not from when the thread first runs: a
                    # busy worker must not take a call ahead that this one is about to serve
                    self._starting += 1
                    try:
                        thread.start()
                    except BaseException:  # no thread: no worker either, and nothing to join at stop
                        del self._threads[worker_id]
                        self._starting -= 1
                        raise
            elif n < alive:
                self._retire += alive - n
                self._cond.notify_all()
            self._target = n

    # -- queue --------------------------------------------------------------------
    def queued(self) -> int:
        """Tasks not started: in the queue, or sent ahead to a busy worker."""
        return len(self._queue) + sum(max(0, len(sent) - 1) for sent in list(self._inflight.values()))

    def enqueue(self, task: Task) -> None:
        """Put ``task`` on the shared queue and wake one idle worker thread. After
        ``kill_all`` it is cancelled; when every worker is gone for good it fails with
        ``PoolBrokenError`` naming why."""
        with self._cond:
            killing = self._killing
            broken = self._broken if not self._threads else None
            if broken is None and not killing:
                self._queue.append(task)
                self._cond.notify()
                return
        if killing:
            cancel_unstarted(task)
        else:
            fail_unstarted(task, _pool_broken(broken))

    def _next_task(self, wait: bool = True) -> Task | None:
        """The next task for a worker thread; ``None`` tells it to retire or stop.

        ``wait=False`` asks for a task to send *ahead* (the worker is busy): granted only
        while the backlog is larger than the idle and starting workers can take, so a queued
        task does not sit behind a long one while another worker is free; and only for a
        call of at most ``_AHEAD_BYTES``. A call sent ahead is written while the worker runs
        the one before, and the worker reads it only once its reply is written: a larger
        call could fill the socket's buffer, and with a large reply filling the other
        direction, worker and driver would each wait for the other for ever."""
        with self._cond:
            while True:
                if self._retire > 0:
                    if not wait:
                        return None
                    self._retire -= 1
                    return None
                if not wait and len(self._queue) <= self._idle + self._starting:
                    return None
                while self._queue:
                    # each candidate, also the one behind a cancelled call (review G3)
                    if not wait and nbytes(self._queue[0].payload or b"") > _AHEAD_BYTES:
                        return None
                    task = self._queue.popleft()
                    if task.start():
                        return task
                if self._stopping or not wait:
                    return None
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1

    # -- one worker's life --------------------------------------------------------
    def _start_worker(self, worker_id: int) -> WorkerLink:
        res = self._resources
        cwd = res.get("cwd")
        if cwd is not None:
            cwd = make_working_directory(cwd)  # an error names cwd
        link = self._link_factory(self._key)
        try:
            address = link.bind()
            command = interactive_worker(address, res.get("cores", 1))
            g = self._gpus_per_worker
            devices = self._gpus[worker_id * g : (worker_id + 1) * g]
            env = worker_environment(self._key, res.get("threads_per_core", 1), gpu_environment(devices, g))
            if cwd is not None:
                env[CWD_ENV] = cwd  # the worker enters it itself: srun -D falls back to /tmp
            # run_time_max limits each call, not the worker's life: it is no job duration or
            # srun --time of the worker (the warm-pool engine enforces it per call)
            worker_res = {k: v for k, v in res.items() if k != "run_time_max"}
            link.attach(self._launcher.start(command, worker_res, env, cwd))
            with self._cond:
                self._links[worker_id] = link
                killing = self._killing
            if killing:
                raise WorkerCrashedError("the executor is shutting down")
            # a worker counts as started once it connected: a launch that ends first (an
            # srun whose job SLURM will never start, an mpiexec that fails) is a failed start
            self._wait_connected(link)
            if self._init_function is not None:
                link.send_dict({"init": self._init_function, "worker_id": worker_id})
                opened = open_reply(link.receive_payload())
                reply = opened.reply
                if isinstance(reply, BaseException):
                    raise reply
                if opened.startup:  # the worker never became one (e.g. a wrong MPI world)
                    raise rebuild(reply)
                if "error" in reply:
                    raise RuntimeError(f"init_function failed in worker {worker_id}") from rebuild(reply)
                if opened.ends_worker:
                    raise WorkerCrashedError(f"worker {worker_id} aborted while it ran init_function")
            return link
        except BaseException:
            self._drop_link(worker_id, link)
            raise

    def _wait_connected(self, link: WorkerLink) -> None:
        wake = self._wake_r
        while True:
            try:
                link.wait_connected(wake)
                return
            except InterruptedError:
                with self._cond:
                    killing, idle = self._killing, not self._queue
                if killing or idle:
                    if not killing and MAY_QUEUE not in link.handle.capabilities:
                        # a graceful shutdown meets a local launch mid-start (mpiexec: ~0.2 s):
                        # let it connect and stop it cleanly; stopped mid-start, MPICH's mpiexec
                        # prints a "BAD TERMINATION" banner on the user's stdout. Not an srun,
                        # whose job may wait in the queue for long.
                        try:
                            link.wait_connected(timeout=_START_GRACE)
                            link.shutdown(wait=True)
                        except Exception:
                            pass  # ended or never connected: stopped by the caller
                    raise WorkerCrashedError("the executor shut down before this worker started") from None
                wake = None  # tasks still wait for a worker: keep waiting for this one

    def _drop_link(self, worker_id: int, link: WorkerLink) -> None:
        with self._cond:
            if self._links.get(worker_id) is link:
                del self._links[worker_id]
        link.shutdown(wait=False)

    def _serve(self, worker_id: int) -> None:
        restarts = 0
        link = None
        inflight: deque[Task] = deque()  # sent, in order; the head is the one running
        self._inflight[worker_id] = inflight
        counted = True  # resize counted this thread's first start in _starting
        try:
            while True:
                if link is None:
                    if self._killing:
                        return
                    if not counted:
                        with self._cond:
                            self._starting += 1
                    counted = False
                    try:
                        link = self._start_worker(worker_id)
                    except BaseException as exc:  # a start that fails uses up a restart, too
                        restarts += 1
                        hopeless = isinstance(exc, UnsatisfiableRequestError)  # it would wait forever again
                        if not self._killing:
                            _log.warning("worker %d could not start: %s", worker_id, exc)
                        if hopeless or self._killing or self._stopping and not self._queue or restarts > self._restart_limit:
                            self._lose_worker(worker_id, exc)
                            return
                        continue
                    finally:
                        with self._cond:
                            self._starting -= 1
                    _log.info(
                        "worker %d %s (%s)", worker_id, f"restarted ({restarts} of restart_limit={self._restart_limit})"
                        if restarts else "started", link.handle.label if link.handle is not None else "?",
                    )
                if not inflight:
                    task = self._next_task()
                    if task is None:
                        return
                    if link.handle is not None and link.handle.ended():  # died while idle: nothing lost
                        died = WorkerCrashedError(f"worker {worker_id} ended between tasks: {link.handle.describe_exit()}")
                        _log.warning("%s", died)
                        self._drop_link(worker_id, link)
                        link = None
                        restarts += 1
                        self._requeue_front([task])
                        if restarts > self._restart_limit:
                            self._lose_worker(worker_id, died)
                            return
                        continue
                    inflight.append(task)
                    task.worker = f"worker {worker_id}"
                    pending_send = [task]
                else:
                    pending_send = []
                if len(inflight) < _SEND_AHEAD and len(self._queue) > self._idle + self._starting:  # unlocked peek
                    ahead = self._next_task(wait=False)
                    if ahead is not None:
                        inflight.append(ahead)
                        ahead.worker = f"worker {worker_id}"
                        pending_send.append(ahead)
                head = inflight[0]
                try:
                    for task in pending_send:
                        link.send_payload(task.payload)
                    head.sent()  # only the head: tasks sent ahead may have to go to another worker
                    payload = link.receive_payload(timeout=head.resources.get("run_time_max"))
                    inflight.popleft()
                    opened = open_reply(payload)
                    if opened.startup:  # the worker could not start: a failed start, its call waits
                        if head.payload is None:  # dropped once sent (Task.sent); needed again
                            head.payload = head.pickle()
                        inflight.appendleft(head)
                        self._requeue_front(inflight)
                        inflight.clear()
                        self._drop_link(worker_id, link)
                        link = None
                        restarts += 1
                        if restarts > self._restart_limit:
                            self._lose_worker(worker_id, rebuild(opened.reply) if isinstance(opened.reply, dict) else opened.reply)
                            return
                        continue
                    finish(head, opened.reply, self._requeue_one, raw=payload if opened.plain else None)
                    if opened.ends_worker:
                        # one rank failed while the others could not finish: the worker aborted
                        # itself. Not a crash: replace it without using up restart_limit, and
                        # run what was sent ahead elsewhere
                        self._requeue_front(inflight)
                        inflight.clear()
                        self._drop_link(worker_id, link)
                        link = None
                except TimeoutError:
                    limit = head.resources.get("run_time_max")
                    inflight.popleft()
                    stopped = TimeoutError(f"the task ran longer than run_time_max={limit} s; its worker was replaced")
                    _log.warning("worker %d stopped: %s() ran longer than run_time_max=%s s", worker_id, head.name, limit)
                    finish(head, stopped, inflight.appendleft)
                    self._requeue_front(inflight)
                    inflight.clear()
                    self._drop_link(worker_id, link)
                    link = None
                except WorkerCrashedError as exc:
                    inflight.popleft()
                    if not self._killing:
                        _log.warning("worker %d died running %s(): %s", worker_id, head.name, exc)
                    attempt = head.attempt
                    finish(head, stopped_by_shutdown() if self._killing else exc, inflight.appendleft)
                    self._requeue_front(inflight)  # sent ahead, never started: run them elsewhere
                    inflight.clear()
                    self._drop_link(worker_id, link)
                    link = None
                    # a restart for a task's own retry is the task's budget, not restart_limit's
                    restarts += head.attempt == attempt
                    if restarts > self._restart_limit:
                        self._lose_worker(worker_id, exc)
                        return
                except BaseException as exc:  # unexpected: fail what was sent, and start afresh so
                    for task in inflight:  # no later reply can be matched to the wrong call
                        settle(task, exc)
                    inflight.clear()
                    self._drop_link(worker_id, link)
                    link = None
                # nothing of a finished call may stay alive while this thread waits for the
                # next one: a large reply's buffer would otherwise outlive its future
                payload = opened = head = task = pending_send = None
        finally:
            for task in inflight:
                settle(task, stopped_by_shutdown())
            if link is not None:
                self._drop_link_gracefully(worker_id, link)
            with self._cond:
                if counted:  # it never got to start its worker
                    self._starting -= 1
                self._threads.pop(worker_id, None)
                if self._inflight.get(worker_id) is inflight:
                    del self._inflight[worker_id]

    def _drop_link_gracefully(self, worker_id: int, link: WorkerLink) -> None:
        with self._cond:
            self._links.pop(worker_id, None)
        link.shutdown(wait=not self._killing)

    def _requeue_front(self, tasks) -> None:
        """Put tasks back at the head of the queue, in order: sent ahead to a worker that
        died before running them, or due for a retry. Their futures stay RUNNING."""
        if not tasks:
            return
        with self._cond:
            killing = self._killing
            if not killing:
                self._queue.extendleft(reversed(list(tasks)))
                self._cond.notify_all()
        if killing:
            for task in tasks:
                settle(task, stopped_by_shutdown())

    def _requeue_one(self, task: Task) -> None:
        self._requeue_front([task])

    def _lose_worker(self, worker_id: int, exc: BaseException) -> None:
        """A worker is gone for good. If it was the last one, end every queued task."""
        if not self._killing:
            _log.warning("worker %d given up (restart_limit=%d): %s", worker_id, self._restart_limit, exc)
        with self._cond:
            self._threads.pop(worker_id, None)
            self._broken = exc
            if self._threads:
                return
            queued, self._queue = list(self._queue), deque()
        for task in queued:
            fail_unstarted(task, _pool_broken(exc))

    # -- shutdown -----------------------------------------------------------------
    def stop(self, wait: bool) -> None:
        """Take no more tasks; workers finish the queue and end. With ``wait``: return once
        every worker thread ended (a task somehow left then is cancelled, never pending)."""
        with self._cond:
            first = not self._stopping
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads.values())
        if first:
            os.write(self._wake_w, b"x")
        if wait:
            for thread in threads:
                thread.join()
            self.cancel_queued()  # nothing is left normally; if a task is, it must still end

    def kill_all(self) -> None:
        """Cancel what is queued, kill every worker (its process and what it started), and
        wait for the threads: every future ends now."""
        with self._cond:
            self._killing = True
            links = list(self._links.values())
        self.cancel_queued()
        for link in links:
            handle = link.handle
            if handle is not None:
                handle.kill()
        self.stop(wait=True)


    def __del__(self):
        for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _pool_broken(cause: BaseException) -> PoolBrokenError:
    """The error of a task no worker is left to run, caused by the last worker's end (the
    same for a task queued then and one submitted later)."""
    broken = PoolBrokenError(f"no worker is left to run this task: {cause}")
    broken.__cause__ = cause
    return broken
