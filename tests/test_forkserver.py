"""The fork server launcher (issue 15): a fresh process per task, forked from a warm
server — each with its own environment, cwd and session, nothing left from the task
before, and every liveness promise (end seen by pidfd, kill ends the session, the driver's
death ends server and tasks)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import funcs
from conftest import pid_alive, wait_until
from hpcfutures.errors import WorkerCrashedError
from hpcfutures.launch.forkserver import ForkServerLauncher
from hpcfutures.launch.process import worker_environment
from hpcfutures.wire.frames import dumps_by_value, loads, new_key, read_frame, write_frame

pytestmark = pytest.mark.timeout(60)

_STATE = []  # module state a task changes: the next task must not see it


def remember_and_count(x):
    _STATE.append(x)
    return len(_STATE), os.getpid(), os.getsid(0)


class Running:
    """One task started through the launcher: its handle and its pipes."""

    def __init__(self, launcher, key, fn, args=(), threads=1, extra=None, cwd=None):
        task_r, self.task_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        env = worker_environment(key, threads, extra)
        try:
            self.handle = launcher.start_one_shot(task_r, reply_w, {"cores": 1}, env, cwd)
        finally:
            os.close(task_r)
            os.close(reply_w)
        self.key = key
        write_frame(self.task_w, key, dumps_by_value({"fn": fn, "args": tuple(args), "kwargs": {}}))
        os.close(self.task_w)

    def reply(self):
        try:
            return loads(read_frame(self.reply_r, self.key))
        finally:
            os.close(self.reply_r)


@pytest.fixture
def launcher():
    launcher = ForkServerLauncher()
    yield launcher
    launcher.close()


def test_each_task_is_a_fresh_process_with_its_own_env_and_cwd(launcher, tmp_path):
    key = new_key()
    first = Running(launcher, key, remember_and_count, (1,))
    second = Running(launcher, key, remember_and_count, (2,))
    (count1, pid1, sid1), (count2, pid2, sid2) = first.reply()["result"], second.reply()["result"]
    assert count1 == count2 == 1  # nothing left over from the task before
    assert pid1 != pid2 and sid1 == pid1 and sid2 == pid2  # each its own process and session
    assert launcher.server_pid() not in (pid1, pid2)
    for task in (first, second):
        assert task.handle.wait_ended(10) and task.handle.describe_exit() == "exit code 0"
        task.handle.close()
    threads = Running(launcher, key, funcs.env, ("OMP_NUM_THREADS",), threads=3, extra={"CUDA_VISIBLE_DEVICES": "1"})
    assert threads.reply()["result"] == "3"
    gpus = Running(launcher, key, funcs.env, ("CUDA_VISIBLE_DEVICES",), extra={"CUDA_VISIBLE_DEVICES": "1"})
    assert gpus.reply()["result"] == "1"
    where = Running(launcher, key, funcs.cwd, cwd=str(tmp_path))
    assert where.reply()["result"] == str(tmp_path)
    secret = Running(launcher, key, funcs.start_environment_has, (key.hex(),))
    assert secret.reply()["result"] is False  # the key is in no process's environ file or argv
    for task in (threads, gpus, where, secret):
        task.handle.wait_ended(10)
        task.handle.close()


def test_exit_code_and_kill(launcher, tmp_path):
    key = new_key()
    dead = Running(launcher, key, funcs.exit_hard, (3,))
    assert dead.handle.wait_ended(10)
    assert dead.handle.describe_exit() == "exit code 3"
    assert isinstance(dead.handle.exit_error(), WorkerCrashedError)
    os.close(dead.reply_r)
    dead.handle.close()
    pid_file = tmp_path / "pid"
    hung = Running(launcher, key, funcs.write_pid_then_sleep, (str(pid_file), 60))
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 20)
    assert int(pid_file.read_text()) == hung.handle.pid
    assert not hung.handle.ended()
    hung.handle.kill()
    assert hung.handle.wait_ended(10)
    assert hung.handle.describe_exit() == "killed by SIGKILL"
    assert wait_until(lambda: not pid_alive(hung.handle.pid), 10)
    os.close(hung.reply_r)
    hung.handle.close()
    hung.handle.close()  # idempotent


def test_a_task_child_goes_with_a_kill(launcher):
    key = new_key()
    task = Running(launcher, key, _start_child_then_sleep)
    from hpcfutures.worker.execute import session_members

    assert wait_until(lambda: len(session_members(task.handle.pid)) >= 2, 20)
    members = session_members(task.handle.pid)
    task.handle.kill()
    assert task.handle.wait_ended(10)
    assert wait_until(lambda: not any(pid_alive(p) for p in members), 10)
    os.close(task.reply_r)
    task.handle.close()


def _start_child_then_sleep():
    import time

    funcs.start_child("popen", 60)
    time.sleep(60)


def test_mpi_tasks_are_refused(launcher):
    launcher.check({"cores": 1})
    with pytest.raises(ValueError, match="mpiexec"):
        launcher.check({"cores": 2})


def test_driver_killed_ends_server_and_tasks(tmp_path):
    pid_file = tmp_path / "pids"
    driver = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import funcs
        from test_forkserver import Running
        from hpcfutures.launch.forkserver import ForkServerLauncher
        from hpcfutures.wire.frames import new_key
        launcher = ForkServerLauncher()
        task = Running(launcher, new_key(), funcs.sleep_then, (60,))
        with open({str(pid_file)!r}, "w") as f:
            f.write(f"{{launcher.server_pid()}} {{task.handle.pid}}")
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", driver])
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
        server, task = map(int, pid_file.read_text().split())
        assert pid_alive(server) and pid_alive(task)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: not pid_alive(server) and not pid_alive(task), 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
