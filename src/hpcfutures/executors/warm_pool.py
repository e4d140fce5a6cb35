"""Engine: a pool of warm workers (``block_allocation=True``).

Each worker is a long-lived process (``mpiexec -n cores`` for MPI workers) with its own
thread in the driver. Idle threads wait on one condition variable for the shared FIFO
queue, so a submit wakes exactly one of them: load balancing without a broker thread and
without polling. A thread sends its task, then waits on the reply socket and the worker's
pidfd together; a worker that dies fails only the task it was running, and is restarted up
to ``restart_limit`` times. When every worker is gone, queued and new tasks fail with the
reason instead of waiting forever.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from hpcfutures.errors import WorkerCrashedError, rebuild
from hpcfutures.executors.outcome import fail_unstarted, settle, stopped_by_shutdown
from hpcfutures.launch.local import interactive_command
from hpcfutures.launch.process import worker_environment
from hpcfutures.scheduling.task import Task
from hpcfutures.wire.socket_interface import SocketInterface


class PoolBrokenError(WorkerCrashedError):
    """No worker of a warm pool is left to run tasks."""


class WarmPool:
    def __init__(
        self,
        key: bytes,
        n_workers: int,
        resources: dict,
        init_function=None,
        restart_limit: int = 0,
        hostname_localhost=None,
        log_obj_size: bool = False,
    ):
        self._key = key
        self._resources = resources
        self._init_function = init_function
        self._restart_limit = restart_limit
        self._hostname_localhost = hostname_localhost
        self._log_obj_size = log_obj_size
        self._cond = threading.Condition()
        self._queue: deque[Task] = deque()
        self._threads: dict[int, threading.Thread] = {}
        self._links: dict[int, SocketInterface] = {}
        self._target = 0
        self._retire = 0
        self._stopping = False
        self._killing = False
        self._broken: BaseException | None = None
        self.resize(n_workers)

    # -- size ---------------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        return self._target

    def resize(self, n: int) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("cannot resize an executor after shutdown")
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
                    thread.start()
            elif n < alive:
                self._retire += alive - n
                self._cond.notify_all()
            self._target = n

    # -- queue --------------------------------------------------------------------
    def queued(self) -> int:
        return len(self._queue)

    def enqueue(self, task: Task) -> None:
        with self._cond:
            broken = self._broken if not self._threads else None
            if broken is None:
                self._queue.append(task)
                self._cond.notify()
                return
        fail_unstarted(task, PoolBrokenError(f"no worker is left to run this task: {broken}"))

    def _next_task(self) -> Task | None:
        with self._cond:
            while True:
                if self._retire > 0:
                    self._retire -= 1
                    return None
                while self._queue:
                    item = self._queue.popleft()
                    if isinstance(item, _Started):
                        return item.task
                    if item.future.set_running_or_notify_cancel():
                        return item
                if self._stopping:
                    return None
                self._cond.wait()

    # -- one worker's life --------------------------------------------------------
    def _start_worker(self, worker_id: int) -> SocketInterface:
        res = self._resources
        cwd = res.get("cwd")
        if cwd is not None:
            cwd = os.fspath(cwd)
            os.makedirs(cwd, exist_ok=True)
        link = SocketInterface(key=self._key, hostname_localhost=self._hostname_localhost, log_obj_size=self._log_obj_size)
        try:
            address = link.bind()
            command = interactive_command(address, res.get("cores", 1), res.get("openmpi_oversubscribe", False))
            link.bootup(command, worker_environment(self._key, res.get("threads_per_core", 1)), cwd)
            with self._cond:
                self._links[worker_id] = link
                killing = self._killing
            if killing:
                raise WorkerCrashedError("the executor is shutting down")
            if self._init_function is not None:
                link.send_dict({"init": self._init_function, "worker_id": worker_id})
                reply = link.receive_dict()
                if "error" in reply:
                    raise RuntimeError(f"init_function failed in worker {worker_id}") from rebuild(reply)
            return link
        except BaseException:
            self._drop_link(worker_id, link)
            raise

    def _drop_link(self, worker_id: int, link: SocketInterface) -> None:
        with self._cond:
            if self._links.get(worker_id) is link:
                del self._links[worker_id]
        link.shutdown(wait=False)

    def _serve(self, worker_id: int) -> None:
        restarts = 0
        link = None
        try:
            while True:
                if link is None:
                    try:
                        link = self._start_worker(worker_id)
                    except BaseException as exc:
                        self._lose_worker(worker_id, exc)
                        return
                task = self._next_task()
                if task is None:
                    return
                if link.process is not None and link.process.exited():  # died while idle: nothing was lost
                    died = WorkerCrashedError(f"worker {worker_id} ended between tasks: {link.process.describe_exit()}")
                    self._drop_link(worker_id, link)
                    link = None
                    restarts += 1
                    self._requeue_front(task)
                    if restarts > self._restart_limit:
                        self._lose_worker(worker_id, died)
                        return
                    continue
                try:
                    link.send_payload(task.payload)
                    settle(task, link.receive_dict(timeout=task.resources.get("run_time_max")))
                except TimeoutError:
                    limit = task.resources.get("run_time_max")
                    settle(task, TimeoutError(f"the task ran longer than run_time_max={limit} s; its worker was replaced"))
                    self._drop_link(worker_id, link)
                    link = None
                except WorkerCrashedError as exc:
                    settle(task, stopped_by_shutdown() if self._killing else exc)
                    self._drop_link(worker_id, link)
                    link = None
                    restarts += 1
                    if restarts > self._restart_limit:
                        self._lose_worker(worker_id, exc)
                        return
                except BaseException as exc:
                    settle(task, exc)
        finally:
            if link is not None:
                self._drop_link_gracefully(worker_id, link)
            with self._cond:
                self._threads.pop(worker_id, None)

    def _drop_link_gracefully(self, worker_id: int, link: SocketInterface) -> None:
        with self._cond:
            self._links.pop(worker_id, None)
        link.shutdown(wait=not self._killing)

    def _requeue_front(self, task: Task) -> None:
        # the future is already RUNNING; run it on the next worker without a second state change
        with self._cond:
            self._queue.appendleft(_Started(task))
            self._cond.notify()

    def _lose_worker(self, worker_id: int, exc: BaseException) -> None:
        """A worker is gone for good. If it was the last one, end every queued task."""
        with self._cond:
            self._threads.pop(worker_id, None)
            self._broken = exc
            if self._threads:
                return
            queued, self._queue = list(self._queue), deque()
        for task in queued:
            if isinstance(task, _Started):
                settle(task.task, PoolBrokenError(f"no worker is left to run this task: {exc}"))
            else:
                fail_unstarted(task, PoolBrokenError(f"no worker is left to run this task: {exc}"))

    # -- shutdown -----------------------------------------------------------------
    def cancel_queued(self) -> None:
        with self._cond:
            queued, self._queue = list(self._queue), deque()
        for task in queued:
            if isinstance(task, _Started):
                settle(task.task, stopped_by_shutdown())
            else:
                task.future.cancel()

    def stop(self, wait: bool) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads.values())
        if wait:
            for thread in threads:
                thread.join()

    def kill_all(self) -> None:
        with self._cond:
            self._killing = True
            links = list(self._links.values())
        self.cancel_queued()
        for link in links:
            process = link.process
            if process is not None:
                try:
                    os.killpg(process.pid, 9)
                except (ProcessLookupError, PermissionError):
                    pass
        self.stop(wait=True)


class _Started:
    """A queued task whose future is already running (requeued after its worker was
    found dead before the task was sent)."""

    __slots__ = ("task",)

    def __init__(self, task: Task):
        self.task = task
