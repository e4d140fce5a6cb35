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
        assert task.handle.wait_ended(10) and task.handle.describe_exit().endswith("(forked) exited with code 0")
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
    assert dead.handle.describe_exit().endswith("(forked) exited with code 3")
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
    assert hung.handle.describe_exit().endswith("(forked) killed by signal SIGKILL")
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


# -- the default mode uses it (issue 15 item 2) ------------------------------------------


def _parent_and_modules(module_to_import=None):
    import importlib
    import sys

    before = module_to_import in sys.modules
    if module_to_import:
        importlib.import_module(module_to_import)
    return os.getppid(), before


def _import_path_view(module):
    import importlib
    import sys

    return sys.path[0], os.getcwd(), sys.argv[0].endswith("one_shot.py"), importlib.import_module(module).VALUE


def test_the_default_mode_forks_serial_tasks_and_leaves_nothing_over():
    """SingleNodeExecutor's fresh tasks are forks of a server (their parent is not the
    driver), and a module one task imported is not in the next one's process."""
    from hpcfutures import SingleNodeExecutor

    with SingleNodeExecutor(max_workers=1) as exe:
        parent1, had1 = exe.submit(_parent_and_modules, "colorsys").result(timeout=60)
        parent2, had2 = exe.submit(_parent_and_modules, "colorsys").result(timeout=60)
    assert parent1 == parent2 != os.getpid()  # one fork server per executor
    assert had1 is False and had2 is False  # the server never runs user code
    assert not pid_alive(parent1) or wait_until(lambda: not pid_alive(parent1))  # gone with the executor


def test_the_fork_server_can_be_turned_off(monkeypatch):
    """HPCFUTURES_FORK_SERVER=0: each serial task is a fresh interpreter, the driver's child."""
    from hpcfutures import SingleNodeExecutor

    monkeypatch.setenv("HPCFUTURES_FORK_SERVER", "0")
    with SingleNodeExecutor(max_workers=1) as exe:
        assert exe.submit(_parent_and_modules).result(timeout=60)[0] == os.getpid()


@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_a_forked_task_imports_as_a_fresh_interpreter_would(fork_server, monkeypatch, tmp_path):
    """cwd first on sys.path, a PYTHONPATH set after the executor started honoured: the
    same answers with and without the fork server."""
    from hpcfutures import SingleNodeExecutor

    monkeypatch.setenv("HPCFUTURES_FORK_SERVER", fork_server)
    here, later = tmp_path / "here", tmp_path / "later"
    here.mkdir()
    later.mkdir()
    (here / "beside_cwd_mod.py").write_text("VALUE = 'cwd'\n")
    (later / "on_pythonpath_mod.py").write_text("VALUE = 'pythonpath'\n")
    with SingleNodeExecutor(max_workers=1) as exe:
        first = exe.submit(_import_path_view, "beside_cwd_mod", resource_dict={"cwd": str(here)}).result(timeout=60)
        assert first == (str(here), str(here), True, "cwd")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(later), os.environ.get("PYTHONPATH", "")]))
        second = exe.submit(_import_path_view, "on_pythonpath_mod").result(timeout=60)
        assert second[1:] == (os.getcwd(), True, "pythonpath")


def test_forked_tasks_keep_the_liveness_promises(tmp_path):
    """run_time_max stops a forked task; a process a task left running dies at its end; a
    task that kills itself is reported as a crash."""
    from hpcfutures import SingleNodeExecutor
    from hpcfutures.errors import WorkerCrashedError as Crashed

    with SingleNodeExecutor(max_workers=2) as exe:
        slow = exe.submit(funcs.sleep_then, 60, resource_dict={"run_time_max": 1})
        with pytest.raises(TimeoutError, match="run_time_max"):
            slow.result(timeout=60)
        left = exe.submit(funcs.start_child, "popen", 120).result(timeout=60)
        assert wait_until(lambda: not pid_alive(left), timeout=20)
        with pytest.raises(Crashed, match="SIGKILL"):
            exe.submit(funcs.kill_self).result(timeout=60)


_FORK_WHILE_STARTING = textwrap.dedent(
    """
    import os, signal, threading, time
    from hpcfutures import SingleNodeExecutor
    exe = SingleNodeExecutor(max_workers=4, block_allocation=True)
    kids = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # the user forks while the warm workers start
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
        time.sleep(0.005)
    ok = exe.submit(sum, [1, 2]).result(timeout=30) == 3
    t = threading.Thread(target=exe.shutdown, daemon=True)
    t.start()
    t.join(20)
    print("RESULT", ok, "SHUTDOWN", "hangs" if t.is_alive() else "ok", flush=True)
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    t.join(20)
    os._exit(0)
    """
)


@pytest.mark.timeout(120)
def test_a_user_fork_while_workers_start_inherits_no_popen_pipe():
    """A fork of the driver while a warm pool starts (threads inside Popen) used to copy
    Popen's exec-error pipe into the forked child: shutdown then hung as long as that
    child lived (issue 15). The fork now waits until no Popen runs."""
    out = subprocess.run([sys.executable, "-c", _FORK_WHILE_STARTING], capture_output=True, text=True, timeout=100)
    assert "RESULT True SHUTDOWN ok" in out.stdout, out.stdout + out.stderr[-2000:]


def test_a_killed_fork_server_is_replaced_and_no_task_is_lost():
    """The server SIGKILLed between tasks: the next serial task gets a new server."""
    from hpcfutures import SingleNodeExecutor

    with SingleNodeExecutor(max_workers=1) as exe:
        server = exe.submit(_parent_and_modules).result(timeout=60)[0]
        os.kill(server, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(server), timeout=20)
        again = exe.submit(_parent_and_modules).result(timeout=60)[0]
        assert again not in (server, os.getpid())
        assert exe.submit(funcs.add, 1, 2).result(timeout=60) == 3


def test_a_task_too_large_for_the_fork_server_starts_as_a_fresh_interpreter(monkeypatch):
    """An environment larger than one message of the server's socket: that task starts as a
    fresh interpreter (the driver's child) with the whole environment, the next task forks."""
    from hpcfutures import SingleNodeExecutor

    with SingleNodeExecutor(max_workers=1) as exe:
        server = exe.submit(_parent_and_modules).result(timeout=60)[0]
        monkeypatch.setenv("HPCF_BIG_TEST_VARIABLE", "x" * 100_000)
        monkeypatch.setenv("HPCF_BIG_TEST_VARIABLE2", "y" * 100_000)  # a lone variable is capped at 128 KiB
        for i in range(12):
            monkeypatch.setenv(f"HPCF_BIG_TEST_VARIABLE_{i}", "z" * 100_000)
        big = exe.submit(_parent_and_big, "HPCF_BIG_TEST_VARIABLE_11").result(timeout=60)
        assert big == (os.getpid(), 100_000)
        for i in range(12):
            monkeypatch.delenv(f"HPCF_BIG_TEST_VARIABLE_{i}")
        assert exe.submit(_parent_and_modules).result(timeout=60)[0] == server


def _parent_and_big(name):
    return os.getppid(), len(os.environ[name])


def test_a_command_run_while_the_driver_forks_ends_with_the_command():
    """run_command (squeue, scancel, srun --test-only, mpiexec --version) while another
    thread forks: no forked process holds its output pipe, so each run ends when its command
    does, not when the forked processes end; a Popen with preexec_fn does not deadlock."""
    import threading

    from hpcfutures.launch.spawn import run_command, spawn

    stop, runs, problems = threading.Event(), [], []

    def keep_running():
        while not stop.is_set():
            try:
                runs.append(run_command(["true"], capture_output=True, timeout=30).returncode)
            except BaseException as exc:  # a hang shows as TimeoutExpired
                problems.append(exc)
                return

    runner = threading.Thread(target=keep_running)
    runner.start()
    kids = []
    try:
        while len(kids) < 40 and runner.is_alive():
            pid = os.fork()
            if pid == 0:
                import time

                time.sleep(60)  # lives longer than any run's timeout: a held pipe would show
                os._exit(0)
            kids.append(pid)
            os.sched_yield()
    finally:
        stop.set()
        runner.join(45)
        alive = runner.is_alive()
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        runner.join(45)
    assert not alive and not problems, problems
    assert runs and set(runs) == {0}
    with spawn(["true"], preexec_fn=lambda: None) as process:
        assert process.wait(30) == 0


# -- a forked task sees what a fresh interpreter started now sees (F01, F08, F11) ---------

_STATE_DRIVER = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    sys.path.insert(0, {tests!r})
    from hpcfutures import SingleNodeExecutor

    def state():
        import datetime, locale, os, resource, signal, sys, time
        print("TASK-PRINTED", flush=True)
        import __main__
        return dict(
            umask=os.umask(0o022), nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0], nice=os.nice(0),
            tz=time.strftime("%Z"), hour=datetime.datetime.now().hour, ctype=locale.setlocale(locale.LC_CTYPE, None),
            utf8=sys.flags.utf8_mode, usr1_ignored=signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN,
            main_is_server=hasattr(__main__, "serve"),
        )

    with SingleNodeExecutor(max_workers=1) as exe:
        exe.submit(state).result(timeout=60)  # the fork server (if on) starts here
        os.umask(0o077)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        os.nice(1)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        os.environ.update(TZ="Asia/Tokyo", LC_ALL="C", LANG="C")
        saved = os.dup(1)
        fd = os.open({out!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)  # as a log redirect (capfd, wurlitzer) does, after the server started
        result = exe.submit(state).result(timeout=60)
        os.dup2(saved, 1)
    print("STATE", json.dumps(result), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_a_forked_task_sees_the_drivers_process_state_of_now(tmp_path):
    """F01/F08: umask, rlimits, nice value, ignored signals, where stdout points, TZ and the
    locale, changed by the driver after the fork server started, reach the next task as
    they reach a fresh interpreter (HPCFUTURES_FORK_SERVER=0): the same answers both ways."""
    answers = {}
    for mode in ("1", "0"):
        out = tmp_path / f"stdout{mode}.txt"
        script = _STATE_DRIVER.format(tests=os.path.dirname(__file__), out=str(out))
        env = dict(os.environ, HPCFUTURES_FORK_SERVER=mode)
        env.pop("TZ", None)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100, env=env)
        line = [x for x in proc.stdout.splitlines() if x.startswith("STATE ")]
        assert line, proc.stdout + proc.stderr[-3000:]
        import json

        answers[mode] = json.loads(line[0][6:])
        assert "TASK-PRINTED" in out.read_text()  # the task's print followed the redirect
    forked, fresh = answers["1"], answers["0"]
    assert forked == fresh
    assert forked["umask"] == 0o077 and forked["nofile"] == 256 and forked["tz"] == "JST"
    assert forked["ctype"] == "C" and forked["usr1_ignored"] is True and forked["main_is_server"] is False


def _exit_when_released(started, release, code):
    import os
    import time

    open(started, "w").close()
    while not os.path.exists(release):
        time.sleep(0.02)
    os._exit(code)


def test_a_new_fork_server_leaves_the_old_ones_tasks_their_exit_status(monkeypatch, tmp_path):
    """F11: a start variable changed while a forked task runs gives later tasks a new
    server; the running task's crash still reads "exited with code 7" (the old server
    reports its children's statuses before it ends), not "its exit status was lost"."""
    from hpcfutures import SingleNodeExecutor
    from hpcfutures.errors import WorkerCrashedError as Crashed

    started, release = tmp_path / "started", tmp_path / "release"
    with SingleNodeExecutor(max_workers=2) as exe:
        crash = exe.submit(_exit_when_released, str(started), str(release), 7)
        assert wait_until(started.exists, timeout=30)
        monkeypatch.setenv("PYTHONWARNINGS", "ignore")
        assert exe.submit(funcs.env, "PYTHONWARNINGS").result(timeout=60) == "ignore"
        release.touch()
        with pytest.raises(Crashed, match="exited with code 7"):
            crash.result(timeout=60)
