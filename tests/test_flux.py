"""FluxJobExecutor on a real Flux (``bash scripts/flux.sh run -- python -m pytest -m flux``):
each task or warm worker is a Flux job. Runs with both MPI wheels (scripts/test.sh)."""

import os
import subprocess
import sys

import pytest

import funcs
import funcs_flux
from conftest import wait_until

pytestmark = [pytest.mark.flux, pytest.mark.timeout(120)]


def active_jobs() -> list[str]:
    """Ids of the instance's jobs that have not ended (any state but INACTIVE)."""
    out = subprocess.run(["flux", "jobs", "-n", "-o", "{id.f58}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture
def no_jobs_left():
    """Every job a test started has ended once its executor shut down."""
    assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs of an earlier test still run: {active_jobs()}"
    yield
    assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs left after shutdown: {active_jobs()}"


def flux_executor(**kwargs):
    from hpcfutures.executors.flux_job import FluxJobExecutor

    return FluxJobExecutor(**kwargs)


def test_serial_tasks_are_flux_jobs(no_jobs_left):
    with flux_executor(max_workers=2) as exe:
        futures = [exe.submit(funcs.add, i, 1) for i in range(4)]
        env = exe.submit(funcs_flux.job_env).result(timeout=60)
        assert [f.result(timeout=60) for f in futures] == [1, 2, 3, 4]
    assert env["FLUX_JOB_ID"], "the task did not run as a Flux job"
    assert env["FLUX_JOB_SIZE"] == "1"


def test_default_budget_is_the_instance(no_jobs_left):
    from hpcfutures.launch.flux import instance_resources

    with flux_executor() as exe:
        assert exe._engine._budget.max_cores == instance_resources()["cores"]


@pytest.mark.mpi
def test_mpi_task_forms_one_world_with_the_default_pmi(no_jobs_left):
    with flux_executor() as exe:
        result = exe.submit(funcs.mpi_ranks, 7, resource_dict={"cores": 2}).result(timeout=90)
    assert result == [(7, 2, 0), (7, 2, 1)]


@pytest.mark.mpi
def test_wrong_pmi_is_refused_by_the_world_check(no_jobs_left):
    """Ranks started without a PMI their MPI understands are singletons: the world check
    refuses their answers instead of returning one rank's as the result."""
    from hpcfutures.errors import MPIWorldError
    from hpcfutures.launch.mpi import mpi4py_family

    wrong = "simple" if mpi4py_family() == "openmpi" else "off"
    with flux_executor(pmi_mode=wrong) as exe:
        future = exe.submit(funcs.mpi_ranks, 1, resource_dict={"cores": 2})
        with pytest.raises(MPIWorldError, match="Flux job shell") as info:
            future.result(timeout=90)
    remedy = "pmi_mode='pmix'" if mpi4py_family() == "openmpi" else "pmi_mode=None"
    assert remedy in str(info.value)


@pytest.mark.mpi
def test_warm_mpi_workers_with_init_function(no_jobs_left):
    with flux_executor(block_allocation=True, max_workers=1, resource_dict={"cores": 2}, init_function=funcs.init_store) as exe:
        assert exe.submit(funcs.uses_store, 1).result(timeout=90) == [8, 8]
        assert exe.submit(funcs.mpi_ranks, 2).result(timeout=90) == [(2, 2, 0), (2, 2, 1)]


def test_warm_worker_restarts_after_a_crash(no_jobs_left):
    from hpcfutures.errors import WorkerCrashedError

    with flux_executor(block_allocation=True, max_workers=1, restart_limit=1) as exe:
        first = exe.submit(funcs_flux.job_env).result(timeout=60)["FLUX_JOB_ID"]
        crashed = exe.submit(funcs.exit_hard, 3)
        with pytest.raises(WorkerCrashedError, match="exited with code 3"):
            crashed.result(timeout=60)
        second = exe.submit(funcs_flux.job_env).result(timeout=60)["FLUX_JOB_ID"]
    assert first != second, "the restarted worker is a new Flux job"


def test_dependencies_and_cache(tmp_path, no_jobs_left):
    counter = str(tmp_path / "count")
    with flux_executor(cache_directory=str(tmp_path / "cache")) as exe:
        a = exe.submit(funcs.count_call, counter, 1)
        b = exe.submit(funcs.add, a, 10)
        assert b.result(timeout=60) == 12
    with flux_executor(cache_directory=str(tmp_path / "cache")) as exe:
        assert exe.submit(funcs.count_call, counter, 1).result(timeout=60) == a.result()
    assert funcs.runs(counter) == 1


def test_crash_fails_the_future_with_exit_code_and_stderr(no_jobs_left):
    from hpcfutures.errors import WorkerCrashedError

    with flux_executor() as exe:
        future = exe.submit(funcs.exit_hard, 5)
        with pytest.raises(WorkerCrashedError, match=r"Flux job .* exited with code 5"):
            future.result(timeout=60)


def test_flux_cancel_from_outside_fails_the_future(tmp_path, no_jobs_left):
    from hpcfutures.errors import WorkerCrashedError

    marker, gate = str(tmp_path / "id"), str(tmp_path / "gate")
    with flux_executor() as exe:
        future = exe.submit(funcs_flux.job_id_then_wait, marker, gate)
        assert wait_until(lambda: os.path.exists(marker), timeout=60)
        with open(marker) as f:
            jobid = f.read()
        subprocess.run(["flux", "cancel", "--message=cancelled by the test", jobid], check=True, timeout=60)
        with pytest.raises(WorkerCrashedError, match="cancel") as info:
            future.result(timeout=30)
    assert "cancelled by the test" in str(info.value)


@pytest.mark.parametrize("block_allocation", [False, True])
def test_run_time_max_fails_with_a_timeout(block_allocation, no_jobs_left):
    with flux_executor(block_allocation=block_allocation, max_workers=1) as exe:
        future = exe.submit(funcs.sleep_then, 60, resource_dict={"run_time_max": 2})
        with pytest.raises(TimeoutError, match="run_time_max=2"):
            future.result(timeout=60)
        if block_allocation:  # the worker was replaced: the next call runs
            assert exe.submit(funcs.add, 1, 1).result(timeout=60) == 2


def test_cancel_futures_at_shutdown_cancels_the_jobs(tmp_path, no_jobs_left):
    marker, gate = str(tmp_path / "id"), str(tmp_path / "gate")
    exe = flux_executor()
    future = exe.submit(funcs_flux.job_id_then_wait, marker, gate)
    assert wait_until(lambda: os.path.exists(marker), timeout=60)
    exe.shutdown(wait=True, cancel_futures=True)
    assert future.done()
    assert not active_jobs()


def test_requests_larger_than_the_instance_are_refused_at_submit(no_jobs_left):
    from hpcfutures.errors import UnsatisfiableRequestError
    from hpcfutures.launch.flux import instance_resources

    info = instance_resources()
    with flux_executor() as exe:
        with pytest.raises(UnsatisfiableRequestError, match="this Flux instance"):
            exe.submit(funcs.add, 1, resource_dict={"cores": 1, "threads_per_core": info["cores"] + 1})
        with pytest.raises(UnsatisfiableRequestError, match="node"):
            exe.submit(funcs.add, 1, resource_dict={"cores": info["nodes"] + 1, "num_nodes": info["nodes"] + 1})


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="pmi"):
        flux_executor(pmi_mode="pmi7")
    with pytest.raises(TypeError, match="FluxExecutor"):
        flux_executor(flux_executor=object())
    # Flux has no oversubscription: refused however it is given (the honours table, the launcher)
    with pytest.raises(ValueError, match="openmpi_oversubscribe.*core of its own"):
        flux_executor(resource_dict={"openmpi_oversubscribe": True})
    with pytest.raises(ValueError, match="openmpi_oversubscribe=True.*core of its own"):
        flux_executor(openmpi_oversubscribe=True)
    with pytest.raises(ValueError, match="srun"):
        flux_executor(resource_dict={"slurm_cmd_args": ["--exclusive"]})


def test_priority_is_the_urgency_as_in_executorlib(no_jobs_left):
    """F06: executorlib passes priority straight through as Flux's urgency (1 lowest .. 31
    highest; the test's instance is ours, so Flux allows more than 16); 0 (held for ever) and
    values Flux has no urgency for are refused at submit() with the reason."""
    with flux_executor() as exe:
        for bad, reason in ((0, "holds the job for ever"), (-9, "1 \\(lowest\\) to 31"), (32, "use 1..31")):
            with pytest.raises(ValueError, match=reason):
                exe.submit(funcs_flux.job_env, resource_dict={"priority": bad})
        low = exe.submit(funcs_flux.job_env, resource_dict={"priority": 7}).result(timeout=60)["FLUX_JOB_ID"]
        high = exe.submit(funcs_flux.job_env, resource_dict={"priority": 21}).result(timeout=60)["FLUX_JOB_ID"]
    for jobid, urgency in ((low, "7"), (high, "21")):
        out = subprocess.run(["flux", "jobs", "-n", "-a", "-o", "{urgency}", jobid], capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == [urgency], out


def test_log_files_keep_each_jobs_output(tmp_path, no_jobs_left):
    with flux_executor(flux_log_files=True, resource_dict={"cwd": str(tmp_path)}) as exe:
        assert exe.submit(funcs_flux.say_and_return, 4).result(timeout=60) == 4
    outs = sorted(p.name for p in tmp_path.glob("flux-*.out"))
    errs = sorted(p.name for p in tmp_path.glob("flux-*.err"))
    assert len(outs) == 1 and len(errs) == 1, list(tmp_path.iterdir())
    assert "stdout of the task 4" in (tmp_path / outs[0]).read_text()
    assert "stderr of the task 4" in (tmp_path / errs[0]).read_text()


def test_output_reaches_the_drivers_streams(capfd, no_jobs_left):
    with flux_executor() as exe:
        assert exe.submit(funcs_flux.say_and_return, 9).result(timeout=60) == 9
    out, err = capfd.readouterr()
    assert "stdout of the task 9" in out
    assert "stderr of the task 9" in err


def test_callers_flux_executor_is_used_and_left_running(no_jobs_left):
    from flux.job import FluxExecutor

    with FluxExecutor() as fexe:
        with flux_executor(flux_executor=fexe) as exe:
            assert exe.submit(funcs.add, 2, 3).result(timeout=60) == 5
        # still usable: ours did not shut it down
        from flux.job import JobspecV1

        assert fexe.submit(JobspecV1.from_command(["true"])).result(timeout=60) == 0


@pytest.mark.mpi
def test_nesting_runs_each_task_in_its_own_instance(no_jobs_left):
    outer = os.environ["FLUX_URI"]
    with flux_executor(flux_executor_nesting=True) as exe:
        uri, size, parent = exe.submit(funcs_flux.nested_uri).result(timeout=90)
        ranks = exe.submit(funcs.mpi_ranks, 3, resource_dict={"cores": 2}).result(timeout=90)
    assert uri != outer and size == 1 and parent is not None
    assert ranks == [(3, 2, 0), (3, 2, 1)]


@pytest.mark.parametrize("resources", [{}, {"threads_per_core": 2}])
def test_nesting_leaves_the_instance_free_for_the_tasks_own_jobs(resources, no_jobs_left):
    # F04: the worker ran under `flux run -n cores` inside the nested instance and held all its
    # cores: a job of the task's own waited for ever (executorlib runs it)
    with flux_executor(flux_executor_nesting=True) as exe:
        assert exe.submit(funcs_flux.run_own_job, resource_dict=resources).result(timeout=90) == 0


def test_killed_driver_leaves_no_job(tmp_path, no_jobs_left):
    marker, gate = str(tmp_path / "id"), str(tmp_path / "gate")
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import funcs_flux\n"
        "from hpcfutures.executors.flux_job import FluxJobExecutor\n"
        "exe = FluxJobExecutor()\n"
        "exe.submit(funcs_flux.job_id_then_wait, %r, %r, 600)\n"
        "import time; time.sleep(600)\n"
    ) % (os.path.dirname(__file__), marker, gate)
    driver = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert wait_until(lambda: os.path.exists(marker), timeout=60)
        assert active_jobs()
        driver.kill()
        driver.wait(timeout=30)
        assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs outlived their driver: {active_jobs()}"
    finally:
        driver.kill()
        driver.wait(timeout=30)


def test_pympipool_fronts_with_enable_flux_backend(no_jobs_left):
    from hpcfutures import Executor, HPCExecutor, Pool

    with Executor(enable_flux_backend=True) as exe:
        assert exe.submit(funcs_flux.job_env).result(timeout=60)["FLUX_JOB_ID"]
    with HPCExecutor(max_workers=2, enable_flux_backend=True) as exe:
        ids = {exe.submit(funcs_flux.job_env).result(timeout=60)["FLUX_JOB_ID"] for _ in range(4)}
    assert None not in ids and 1 <= len(ids) <= 2
    with Pool(max_workers=2, enable_flux_backend=True) as pool:
        assert pool.map(funcs.add, [1, 2, 3]) == [1, 2, 3]
        assert all(pool.map(funcs.env, ["FLUX_JOB_ID"] * 2))


@pytest.mark.mpi
def test_pympipool_mpi_executor_with_enable_flux_backend(no_jobs_left):
    from hpcfutures import Executor

    with Executor(cores=2, enable_flux_backend=True) as exe:
        assert exe.submit(funcs.mpi_ranks, 5).result(timeout=90) == [(5, 2, 0), (5, 2, 1)]


def test_exclusive_without_a_node_count_takes_whole_nodes(no_jobs_left):
    """Flux wants a node count with exclusive: the count the cores need is given, not a
    jobspec error in a worker thread."""
    with flux_executor(resource_dict={"exclusive": True}) as exe:
        env = exe.submit(funcs_flux.job_env).result(timeout=60)
    out = subprocess.run(["flux", "jobs", "-n", "-a", "-o", "{nnodes} {ncores}", env["FLUX_JOB_ID"]],
                         capture_output=True, text=True, timeout=60)
    from hpcfutures.launch.flux import instance_resources

    assert out.stdout.split() == ["1", str(instance_resources()["cores"] // instance_resources()["nodes"])], out


@pytest.mark.parametrize("block_allocation", [False, True])
def test_ctrl_c_in_the_driver_leaves_no_job(tmp_path, block_allocation, no_jobs_left):
    """SIGINT (Ctrl-C) inside the with block: the running job is cancelled, the driver exits."""
    import signal

    marker, gate = str(tmp_path / "id"), str(tmp_path / "gate")
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import funcs_flux\n"
        "from hpcfutures.executors.flux_job import FluxJobExecutor\n"
        "with FluxJobExecutor(block_allocation=%r, max_workers=1) as exe:\n"
        "    exe.submit(funcs_flux.job_id_then_wait, %r, %r, 600).result()\n"
    ) % (os.path.dirname(__file__), block_allocation, marker, gate)
    driver = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: os.path.exists(marker), timeout=60)
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
        assert driver.returncode != 0 and b"KeyboardInterrupt" in err
        assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs outlived Ctrl-C: {active_jobs()}"
    finally:
        driver.kill()
        driver.wait(timeout=30)


@pytest.mark.mpi
@pytest.mark.parametrize("block_allocation", [False, True])
def test_a_failing_rank_ends_the_call_with_its_error(block_allocation, no_jobs_left):
    """Rank 1 fails while rank 0 waits for it in a barrier: rank 1's report travels in the
    job's stderr file, and the call ends with rank 1's own exception."""
    with flux_executor(block_allocation=block_allocation, max_workers=1, resource_dict={"cores": 2}) as exe:
        with pytest.raises(ValueError, match="rank 1 failed on 5"):
            exe.submit(funcs.mpi_fail_then_others_wait, 1, 5).result(timeout=90)
        with pytest.raises(ValueError, match="rank 0 failed on 6"):
            exe.submit(funcs.mpi_fail_then_others_wait, 0, 6).result(timeout=90)
        assert exe.submit(funcs.mpi_ranks, 1).result(timeout=90) == [(1, 2, 0), (1, 2, 1)]


def test_retries_run_a_crashed_job_again(tmp_path, no_jobs_left):
    path = str(tmp_path / "attempts")
    with flux_executor() as exe:
        future = exe.submit(funcs.die_until_attempt, path, 2, "ok", resource_dict={"retries": 1})
        assert future.result(timeout=90) == "ok"
    with open(path) as f:
        assert f.read() == "xx", "the first job died, the second ran the call"


def test_warm_pool_resizes_with_more_jobs(tmp_path, no_jobs_left):
    """max_workers grows the pool by one job per worker; two calls that wait for each other
    then run at once."""
    with flux_executor(block_allocation=True, max_workers=1) as exe:
        first = exe.submit(funcs_flux.job_env).result(timeout=60)["FLUX_JOB_ID"]
        exe.max_workers = 2
        futures = [exe.submit(funcs_flux.meet_then_broker, str(tmp_path), 2) for _ in range(2)]
        # with one worker the first call would wait for the second until its timeout
        assert all(f.result(timeout=90) for f in futures)
    assert first


def test_a_future_ends_when_its_reply_arrives_not_when_its_job_ends(tmp_path, no_jobs_left):
    """engines/one_process.py settles a linked task's future as the reply arrives; the job's
    end (Flux's end event comes later) is waited for after. The worker here cannot exit
    before the gate opens, and the gate opens only when the future ends: a future that
    waited for the job's end would see it stopped (after the link's grace) instead."""
    gate = str(tmp_path / "gate")
    with flux_executor(max_workers=1) as exe:
        future = exe.submit(funcs_flux.return_then_hold_exit, gate, 42)
        future.add_done_callback(lambda _: open(gate, "w").close())
        assert future.result(timeout=60) == 42
    assert os.path.exists(gate + ".seen"), "the future ended only after its job was stopped"


OPEN_EXECUTORS = {
    "fresh": "from hpcfutures.executors.flux_job import FluxJobExecutor as E; exe = E()",
    "block": "from hpcfutures.executors.flux_job import FluxJobExecutor as E; exe = E(max_workers=2, block_allocation=True)",
    "pool_front": "from hpcfutures import PoolExecutor as E; exe = E(max_workers=2, enable_flux_backend=True)",
}


@pytest.mark.parametrize("kind", sorted(OPEN_EXECUTORS))
def test_executor_left_open_finishes_its_work_at_exit(kind, no_jobs_left):
    # F02: Flux's own exit hook ran first and failed every task with "cannot schedule new futures"
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import funcs\n"
        "%s\n"
        "futures = [exe.submit(funcs.add, i, 10) for i in range(4)]\n"
        "for i, f in enumerate(futures):\n"
        # one write per line: print() writes the text and the newline apart, and callbacks
        # of several threads interleaved them
        "    f.add_done_callback(lambda f, i=i: sys.stdout.write(f'task {i} {f.result()}\\n'))\n"
    ) % (os.path.dirname(__file__), OPEN_EXECUTORS[kind])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == [f"task {i} {i + 10}" for i in range(4)], out.stderr


@pytest.mark.parametrize("kind", sorted(OPEN_EXECUTORS))
def test_ctrl_c_on_a_driver_with_an_open_executor_cancels_its_jobs(kind, tmp_path, no_jobs_left):
    # F01: the driver waited for every running job (hours for a long one) before it ended
    import signal

    marker, gate = str(tmp_path / "id"), str(tmp_path / "gate")
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import funcs_flux\n"
        "%s\n"
        "futures = [exe.submit(funcs_flux.job_id_then_wait, %r + str(i), %r, 600) for i in range(3)]\n"
        "import time; time.sleep(600)\n"
    ) % (os.path.dirname(__file__), OPEN_EXECUTORS[kind], marker, gate)
    driver = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: os.path.exists(marker + "0") or os.path.exists(marker + "1"), timeout=60)
        assert active_jobs()
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=30)  # before: the driver waited for the tasks (600 s)
        assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs outlived the Ctrl-C: {active_jobs()}"
    finally:
        driver.kill()
        driver.wait(timeout=30)


def test_resize_beyond_the_instance_is_refused(no_jobs_left):
    # F07: the constructor refused a pool larger than the instance, the setter started a
    # worker job that could never run
    from hpcfutures.launch.flux import instance_resources

    too_many = instance_resources()["cores"] + 1
    with flux_executor(block_allocation=True, max_workers=1) as exe:
        with pytest.raises(ValueError, match="warm workers .* need .* cores, but this Flux instance has"):
            exe.max_workers = too_many
        assert exe.max_workers == 1
        assert exe.submit(funcs.add, 1, 2).result(timeout=60) == 3


def test_executor_front_names_its_own_parameter(no_jobs_left):
    # F08: Executor(cores=...) was told to "lower max_workers", a parameter it does not have
    from hpcfutures import Executor
    from hpcfutures.launch.flux import instance_resources

    with pytest.raises(ValueError, match="lower cores") as info:
        Executor(cores=instance_resources()["cores"] + 1, enable_flux_backend=True)
    assert "max_workers" not in str(info.value)
