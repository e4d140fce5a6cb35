"""The one wait (``wire.waiting.wait_for_reply``) on its own, over the pipe transport, with
a handle that is no process (its end an eventfd): a reply that came just before the end
wins, an end without a reply is the handle's exit error, a rank's sealed report on stderr
is the reply, a broken link to a live worker has it killed, a wake fd interrupts, the
deadline raises. Then what the handles refactoring promises the layers: ``wire/`` imports
nothing of ``launch/``, and a launcher that cannot carry pipes still runs serial tasks.
"""

from __future__ import annotations

import ast
import os
import pathlib
from concurrent.futures import Future

import pytest

import funcs
import hpcfutures
from hpcfutures.errors import WorkerCrashedError
from hpcfutures.launch.handle import WorkerHandle
from hpcfutures.wire.frames import dumps, loads, new_key, seal, write_frame
from hpcfutures.wire.waiting import PipeTransport, wait_for_reply

SRC = pathlib.Path(hpcfutures.__file__).resolve().parent  # the package under test (the source tree or the wheel)


class EventHandle(WorkerHandle):
    """A worker whose end is an eventfd the test writes."""

    def __init__(self, reports=(), ends_on_kill: bool = True):
        self.ended_fd = os.eventfd(0)
        self.stderr_fd = None
        self.label = "event"
        self.capabilities = frozenset()
        self._reports = list(reports)
        self._ended = False
        self._ends_on_kill = ends_on_kill
        self.killed = False

    def end(self) -> None:
        self._ended = True
        os.eventfd_write(self.ended_fd, 1)

    @property
    def stderr_open(self) -> bool:
        return False

    def pump_stderr(self) -> None:
        pass

    def take_reports(self) -> list:
        reports, self._reports = self._reports, []
        return reports

    def ended(self) -> bool:
        return self._ended

    def wait_ended(self, timeout) -> bool:
        return self._ended

    def describe_exit(self) -> str:
        return "the event worker ended"

    def exit_error(self) -> BaseException:
        return WorkerCrashedError(self.describe_exit())

    def stderr_tail(self) -> str:
        return ""

    def request(self) -> str:
        return "event launcher"

    def terminate(self, grace: float = 1.0) -> None:
        self.kill()

    def kill(self) -> None:
        self.killed = True
        if self._ends_on_kill:
            self.end()

    def close(self) -> None:
        os.close(self.ended_fd)


@pytest.fixture
def pipes():
    """(transport, the worker's task read end, the worker's reply write end)."""
    task_r, task_w = os.pipe()
    reply_r, reply_w = os.pipe()
    transport = PipeTransport(task_w, reply_r)
    yield transport, task_r, reply_w
    transport.close()
    for fd in (task_r, reply_w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.mark.timeout(10)
def test_a_reply_sent_just_before_the_end_wins(pipes):
    transport, _, reply_w = pipes
    key, handle = new_key(), EventHandle()
    write_frame(reply_w, key, dumps({"result": 42}))
    handle.end()
    try:
        assert loads(wait_for_reply(transport, key, handle, timeout=5)) == {"result": 42}
    finally:
        handle.close()


@pytest.mark.timeout(10)
def test_an_end_without_a_reply_is_the_handles_exit_error(pipes):
    transport, _, _ = pipes
    handle = EventHandle()
    handle.end()
    try:
        with pytest.raises(WorkerCrashedError, match="the event worker ended"):
            wait_for_reply(transport, new_key(), handle, timeout=5)
    finally:
        handle.close()


@pytest.mark.timeout(10)
def test_a_ranks_sealed_report_is_the_reply_and_a_forged_one_is_not(pipes):
    transport, _, _ = pipes
    key = new_key()
    forged = seal(new_key(), dumps({"result": "forged"})).hex().encode()
    real = seal(key, dumps({"result": "from rank 1"})).hex().encode()
    handle = EventHandle(reports=[b"not hex", forged, real])
    handle.end()
    try:
        assert loads(wait_for_reply(transport, key, handle, timeout=5)) == {"result": "from rank 1"}
    finally:
        handle.close()


@pytest.mark.timeout(10)
def test_a_link_that_breaks_while_the_worker_lives_has_the_worker_killed(pipes):
    transport, _, reply_w = pipes
    os.close(reply_w)  # the reply pipe ends, the worker does not
    handle = EventHandle(ends_on_kill=False)
    try:
        with pytest.raises(WorkerCrashedError, match="lost while its process still ran.*event launcher"):
            wait_for_reply(transport, new_key(), handle, timeout=5)
        assert handle.killed
    finally:
        handle.close()


@pytest.mark.timeout(10)
def test_a_wake_fd_interrupts_and_a_deadline_raises(pipes):
    transport, _, _ = pipes
    handle = EventHandle()
    wake = os.eventfd(0)
    try:
        with pytest.raises(TimeoutError, match="0.01 s"):
            wait_for_reply(transport, new_key(), handle, timeout=0.01)
        os.eventfd_write(wake, 1)
        with pytest.raises(InterruptedError):
            wait_for_reply(transport, new_key(), handle, wake_fd=wake)
    finally:
        os.close(wake)
        handle.close()


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_wire_imports_nothing_of_launch_and_engines_start_no_processes():
    for path in sorted((SRC / "wire").glob("*.py")):
        assert not {n for n in _imports(path) if n.startswith("hpcfutures.launch")}, path.name
    for name in ("one_process.py", "warm_pool.py"):
        text = (SRC / "engines" / name).read_text()
        for forbidden in ("Popen", "pidfd", "killpg", "subprocess"):
            assert forbidden not in text, f"engines/{name} uses {forbidden}: a launcher's job"


@pytest.mark.timeout(60)
def test_a_launcher_without_one_shot_pipes_runs_serial_tasks_over_a_socket():
    """A launcher whose workers cannot inherit pipes (a Flux job) still runs one-process-
    per-task serial calls: over a socket link, with the same crash handling."""
    from hpcfutures.engines.one_process import OneProcessPerTask
    from hpcfutures.launch.local import LocalLauncher
    from hpcfutures.scheduling.task import Task

    class SocketOnly(LocalLauncher):
        capabilities = frozenset()

        def start_one_shot(self, *args, **kwargs):
            raise AssertionError("a launcher without ONE_SHOT_PIPES was asked for pipes")

    engine = OneProcessPerTask(new_key(), max_cores=None, max_running=2, launcher=SocketOnly())
    try:
        tasks = []
        for fn, args in ((funcs.add, (2, 3)), (funcs.kill_self, ())):
            task = Task(Future(), fn, args, {}, {})
            task.payload = task.pickle()
            engine.enqueue(task)
            tasks.append(task)
        assert tasks[0].future.result(30) == 5
        with pytest.raises(WorkerCrashedError, match="SIGKILL"):
            tasks[1].future.result(30)
    finally:
        engine.stop(wait=True)


def close_reply_pipe_and_live_on():
    """Run in a one-shot worker: close the reply pipe (``argv[2]``), then stay alive."""
    import sys
    import time

    os.close(int(sys.argv[2]))
    time.sleep(120)


@pytest.mark.timeout(60)
def test_a_serial_task_whose_reply_pipe_breaks_while_its_process_lives_ends():
    """Before the one wait, the one-shot path waited for such a process for ever."""
    from hpcfutures import SingleNodeExecutor

    with SingleNodeExecutor(max_workers=1) as exe:
        future = exe.submit(close_reply_pipe_and_live_on)
        with pytest.raises(WorkerCrashedError, match="lost while its process still ran"):
            future.result(50)
