"""Engine: one fresh worker process per task.

Each task gets a worker made for its own ``resource_dict`` (cores, threads, cwd), started
by the launcher (``launch.handle.Launcher``), which hands back the worker's handle. Serial
tasks talk to their worker over two pipes where the launcher can carry them (no socket, no
zmq import in the worker); MPI tasks (and serial ones where it cannot) use a
``WorkerLink``. A thread per running task waits in ``wire.waiting.wait_for_reply`` on the
reply, the worker's end and its stderr at once, so a crash or a launcher that dies at
start ends the future immediately.

Admission is event-driven: ``enqueue`` and every task end start whatever fits the core
budget next, first in first out. Nothing polls.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from hpcfutures.errors import UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.engines.interface import EngineDefaults
from hpcfutures.engines.outcome import cancel_unstarted, finish, settle, stopped_by_shutdown
from hpcfutures.launch.gpus import GpuPool, gpu_environment
from hpcfutures.launch.handle import ONE_SHOT_PIPES, WorkerHandle
from hpcfutures.launch.local import LocalLauncher, interactive_worker
from hpcfutures.launch.process import worker_environment
from hpcfutures.logs import get_logger
from hpcfutures.scheduling.budget import CoreBudget
from hpcfutures.scheduling.task import Task
from hpcfutures.wire.waiting import PipeTransport, wait_for_reply
from hpcfutures.worker.directory import CWD_ENV, make_working_directory


_log = get_logger("process")
_SETTLED = object()  # what _execute returns when it has ended the future itself


class OneProcessPerTask(EngineDefaults):
    """One fresh worker process per task, admitted first in first out while it fits the
    core budget (``scheduling.budget.CoreBudget``).

    Args:
        key: the HMAC key of the frames (``wire.frames``).
        max_cores: cores (ranks x threads per rank) all running tasks may use together;
            ``None``: no limit on cores.
        max_running: tasks that may run at once (``resize`` changes it).
        hostname_localhost: see ``WorkerLink`` (MPI tasks' socket link).
        log_obj_size: log the size in bytes of every call sent and reply received.
        launcher: starts each worker and returns its handle (``launch.handle.Launcher``);
            None: a ``LocalLauncher()`` this engine closes at ``stop(wait=True)``.
    """

    def __init__(
        self,
        key: bytes,
        max_cores: int | None,
        max_running: int,
        hostname_localhost=None,
        log_obj_size=False,
        launcher=None,
    ):
        self._key = key
        # a launcher made here is ours to close (its fork server) once every task ended
        self._own_launcher = LocalLauncher() if launcher is None else None
        self._launcher = launcher or self._own_launcher
        self._hostname_localhost = hostname_localhost
        self._log_obj_size = log_obj_size
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._queue: deque[Task] = deque()
        self._queue_lock = self._lock  # EngineDefaults.cancel_queued empties _queue under it
        self._budget = CoreBudget(max_cores, max_running)
        # None: GPUs are not this engine's to count (srun binds them, SLURM keeps the books);
        # a pool once provide_gpus gives the devices this machine shows
        self._gpus: GpuPool | None = None
        self._processes: dict[Task, WorkerHandle] = {}
        self._threads: set[threading.Thread] = set()
        self._killing = False
        self._starting = 0

    @property
    def max_workers(self) -> int:
        """Tasks that may run at once (see ``Engine.max_workers``)."""
        return self._budget.max_running

    def resize(self, n: int) -> None:
        """Let ``n`` (>= 1) tasks run at once from now on; queued tasks that now fit start."""
        with self._lock:
            self._budget.max_running = n
            started = self._admit()
        self._start(started)

    def provide_gpus(self, devices: list) -> None:
        """Count GPUs from now on: each task is given ``Task.gpus`` of ``devices`` (its
        ``CUDA_VISIBLE_DEVICES``) and waits while too few are free (see
        ``Engine.provide_gpus``)."""
        with self._lock:
            self._gpus = GpuPool(devices)

    def queued(self) -> int:
        """Tasks taken but not started (waiting for cores, GPUs or a running slot)."""
        return len(self._queue)

    def enqueue(self, task: Task) -> None:
        """Queue ``task`` and start whatever fits now; after ``kill_all`` it is cancelled."""
        with self._lock:
            killing = self._killing
            if not killing:
                self._queue.append(task)
                started = self._admit()
        if killing:
            cancel_unstarted(task)
            return
        self._start(started)

    # -- admission ----------------------------------------------------------------
    def _admit(self) -> list[Task]:
        started = []
        while self._queue and not self._killing:
            task = self._queue[0]
            if task.future.cancelled():  # cancelled while queued: it must not hold up the line
                self._queue.popleft()
                continue
            if not self._fits(task):
                break
            self._queue.popleft()
            if task.start():
                self._budget.take(task.slots)
                task.devices = self._gpus.take(task.gpus) if self._gpus is not None else []
                started.append(task)
        self._starting += len(started)
        return started

    def _fits(self, task: Task) -> bool:
        if not self._budget.fits(task.slots):
            return False
        # a task that needs more devices than exist is admitted at once and refused by
        # _execute: waiting for them would hold up the line for ever
        return self._gpus is None or self._gpus.fits(task.gpus) or task.gpus > self._gpus.total

    def _start(self, tasks: list[Task]) -> None:
        tasks = list(tasks)
        admitted = len(tasks)
        while tasks:
            task = tasks.pop(0)
            thread = threading.Thread(target=self._run, args=(task,), name=f"hpcfutures-task-{task.name}", daemon=True)
            with self._lock:
                self._threads.add(thread)
            try:
                thread.start()
            except BaseException as exc:  # no thread for it (RuntimeError: can't start new thread)
                # the task ends here, with the reason, and gives its slots to the next one
                settle(task, RuntimeError(f"could not start a thread to run {task.name}(): {exc}"))
                more = self._done(task, task.devices, thread)
                admitted += len(more)
                tasks += more
        # _admit took these tasks off the queue; until their threads are registered above,
        # stop() must not think everything is drained
        if admitted:
            with self._lock:
                self._starting -= admitted
                self._drained.notify_all()

    def _done(self, task: Task, devices: list, thread: threading.Thread) -> list[Task]:
        """A task's run is over: give back what it held; the tasks that fit now (admitted,
        for the caller to start)."""
        with self._lock:
            self._budget.give(task.slots)
            if self._gpus is not None:
                self._gpus.give(devices)
            self._threads.discard(thread)
            started = self._admit()
            self._drained.notify_all()
        return started

    def _run(self, task: Task) -> None:
        devices = task.devices  # this run's; a retry may be admitted with others before we end
        try:
            reply = self._execute(task)
            if reply is not _SETTLED:
                finish(task, reply, self._retry)
        except BaseException as exc:  # nothing may leave a future pending
            settle(task, exc)
        finally:
            self._start(self._done(task, devices, threading.current_thread()))

    # -- running one task ---------------------------------------------------------
    def _execute(self, task: Task):
        res = task.resources
        counted = self._gpus is not None  # else the launcher binds the task's GPUs itself
        if counted and len(task.devices) < task.gpus:
            raise ValueError(
                f"{task.name}(): cores x gpus_per_core = {task.gpus} GPU(s) asked for, but only "
                f"{self._gpus.total} are visible here; ask for fewer"
            )
        cwd = res.get("cwd")
        if cwd is not None:
            cwd = make_working_directory(cwd)  # an error names cwd
        env = worker_environment(self._key, res.get("threads_per_core", 1), gpu_environment(task.devices, task.gpus if counted else 0))
        if cwd is not None:
            env[CWD_ENV] = cwd  # the worker enters it itself: srun -D falls back to /tmp
        timeout = res.get("run_time_max")
        if task.cores > 1 or ONE_SHOT_PIPES not in self._launcher.capabilities:
            return self._execute_linked(task, env, cwd, timeout)
        return self._execute_serial(task, env, cwd, timeout)

    def _execute_serial(self, task: Task, env: dict, cwd, timeout):
        """A serial task over two pipes: one frame down, one frame up."""
        task_r, task_w = os.pipe()
        reply_r, reply_w = os.pipe()
        transport = PipeTransport(task_w, reply_r)
        try:
            try:
                process = self._launcher.start_one_shot(task_r, reply_w, task.resources, env, cwd)
            finally:
                os.close(task_r)
                os.close(reply_w)
        except BaseException:
            transport.close()
            raise
        if not self._track(task, process):  # (it was terminated there)
            transport.close()
            process.close()  # a job it queued meanwhile is cancelled, the guardian released
            return stopped_by_shutdown()
        try:
            if self._log_obj_size:  # serial tasks use pipes, not the socket link that logs for MPI tasks
                _log_size("sending", len(task.payload))
            try:
                transport.send(self._key, task.payload)
            except BrokenPipeError:
                pass  # it died before reading: the wait below reports how
            task.sent()

            def receive():
                reply = wait_for_reply(transport, self._key, process, timeout)
                if self._log_obj_size:
                    _log_size("received", len(reply))
                return reply

            return self._reply(process, receive, timeout)
        finally:
            transport.close()
            self._untrack(task)
            if not process.wait_ended(5.0):
                process.terminate()
            process.close()

    def _reply(self, process: WorkerHandle, receive, timeout):
        """``receive()``'s reply, or the error that stands for it (a crash, a timeout)."""
        try:
            return receive()
        except (WorkerCrashedError, UnsatisfiableRequestError) as exc:
            return self._died(exc)
        except TimeoutError:
            process.terminate()
            return TimeoutError(f"the task ran longer than run_time_max={timeout} s and was stopped")

    def _execute_linked(self, task: Task, env: dict, cwd, timeout):
        """An MPI task (or any task, for a launcher that cannot carry pipes): its rank 0
        talks over a socket."""
        from hpcfutures.wire.socket_interface import WorkerLink

        link = WorkerLink(key=self._key, hostname_localhost=self._hostname_localhost, log_obj_size=self._log_obj_size)
        try:
            address = link.bind()
            process = link.attach(self._launcher.start(interactive_worker(address, task.cores), task.resources, env, cwd))
            if not self._track(task, process):
                return stopped_by_shutdown()
            try:
                link.send_payload(task.payload)
            except (WorkerCrashedError, UnsatisfiableRequestError) as exc:
                return self._died(exc)
            task.sent()
            reply = self._reply(process, lambda: link.receive_payload(timeout=timeout), timeout)
            # the future ends as the reply arrives; the worker's exit (a Flux job's end event
            # comes ~25 ms later) is waited for after, still holding the task's slots
            finish(task, reply, self._retry)
            return _SETTLED
        finally:
            self._untrack(task)
            link.shutdown(wait=True)

    def _died(self, exc: BaseException) -> BaseException:
        """What a task whose worker ended gets: ``exc``, or "stopped by shutdown" when the
        executor killed it."""
        if self._killing:
            return stopped_by_shutdown()
        _log.warning("%s", exc)
        return exc

    # -- bookkeeping of live processes, for kill_all -------------------------------
    def _track(self, task: Task, process: WorkerHandle) -> bool:
        with self._lock:
            if self._killing:
                process.terminate()
                return False
            self._processes[task] = process
        task.worker = process.label
        if _log.isEnabledFor(10):  # DEBUG; guarded: this runs once per task
            _log.debug("worker %s started for %s() (cores=%d)", process.label, task.name, task.cores)
        return True

    def _untrack(self, task: Task) -> None:
        with self._lock:
            self._processes.pop(task, None)

    def _retry(self, task: Task) -> None:
        """Run it again, first in line (its slots are given back as its thread ends)."""
        with self._lock:
            if not self._killing:
                self._queue.appendleft(task)
                return
        settle(task, stopped_by_shutdown())

    def stop(self, wait: bool) -> None:
        """With ``wait``: return once every queued task has run and every thread ended,
        then close the launcher this engine made (its fork server). Without: nothing (the
        tasks run on, each on its own thread)."""
        if not wait:
            return
        with self._lock:
            while self._queue or self._threads or self._starting:
                self._drained.wait()
            own, self._own_launcher = self._own_launcher, None
        if own is not None:
            own.close()

    def kill_all(self) -> None:
        """Stop everything now: queued tasks are cancelled, running processes killed."""
        with self._lock:
            self._killing = True
            processes = list(self._processes.values())
        self.cancel_queued()
        for process in processes:
            process.kill()
        self.stop(wait=True)



def _log_size(what: str, size: int) -> None:
    import logging

    logging.getLogger("hpcfutures").info("%s %d bytes", what, size)
