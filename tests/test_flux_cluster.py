"""FluxClusterExecutor on a real Flux: every call one batch job through the cache
directory (``bash scripts/flux.sh run -- python -m pytest -m flux``)."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import funcs
from conftest import wait_until
from test_flux import active_jobs

pytestmark = [pytest.mark.flux, pytest.mark.timeout(180)]


@pytest.fixture
def no_jobs_left():
    assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs of an earlier test still run: {active_jobs()}"
    yield
    assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs left after shutdown: {active_jobs()}"


def cluster(**kwargs):
    from hpcfutures import FluxClusterExecutor

    return FluxClusterExecutor(**kwargs)


def job_attr(job: str, fmt: str) -> str:
    out = subprocess.run(["flux", "jobs", "-n", "-a", "-o", fmt, job], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def test_chain_is_queued_at_once_with_afterok(tmp_path, no_jobs_left):
    calls = str(tmp_path / "calls")
    with cluster(cache_directory=str(tmp_path / "cache")) as exe:
        first = exe.submit(funcs.count_call, calls, 1)
        second = exe.submit(funcs.count_call, calls, first)
        third = exe.submit(funcs.add, second, 100)
        jobs = [exe._engine.pending(f) for f in (first, second, third)]
        assert third.result(timeout=120) == 104
        queries = exe.queue_queries
    assert all(j is not None for j in jobs[1:]), "dependants are submitted at once, bound by afterok"
    spec = subprocess.run(["flux", "job", "info", jobs[2][0], "jobspec"], capture_output=True, text=True, timeout=60)
    assert {"scheme": "afterok", "value": jobs[1][0]} in json.loads(spec.stdout)["attributes"]["system"]["dependencies"]
    assert funcs.runs(calls) == 2
    # one query per interval for all jobs: far fewer than the engine's looks at the entries
    assert 1 <= queries < 200
    with cluster(cache_directory=str(tmp_path / "cache")) as exe:
        first = exe.submit(funcs.count_call, calls, 1)
        second = exe.submit(funcs.count_call, calls, first)
        assert exe.submit(funcs.add, second, 100).result(timeout=30) == 104
        assert exe.queue_queries == 0
    assert funcs.runs(calls) == 2


@pytest.mark.mpi
def test_mpi_call_as_a_batch_job(tmp_path, no_jobs_left):
    with cluster(cache_directory=str(tmp_path)) as exe:
        assert exe.submit(funcs.where_and_size, 7, resource_dict={"cores": 2}).result(timeout=120) == [(7, 2, 0), (7, 2, 1)]


def test_failing_call_and_its_dependants(tmp_path, no_jobs_left):
    with cluster(cache_directory=str(tmp_path)) as exe:
        bad = exe.submit(funcs.boom, "in a flux job")
        after = exe.submit(funcs.add, bad, 1)
        with pytest.raises(ValueError, match="in a flux job"):
            bad.result(timeout=120)
        with pytest.raises(ValueError, match="in a flux job"):
            after.result(timeout=60)


def test_flux_cancel_and_time_limit_end_futures_with_the_job_state(tmp_path, no_jobs_left):
    from hpcfutures import WorkerCrashedError

    with cluster(cache_directory=str(tmp_path)) as exe:
        cancelled = exe.submit(funcs.sleep_then, 300, "never")
        assert wait_until(lambda: exe._engine.pending(cancelled) is not None, 30)
        job = exe._engine.pending(cancelled)[0]
        subprocess.run(["flux", "cancel", job], check=True, timeout=30)
        with pytest.raises(WorkerCrashedError, match=f"job {job} ended in state CANCELLED"):
            cancelled.result(timeout=60)
        over = exe.submit(funcs.sleep_then, 300, "never", resource_dict={"run_time_max": 2})
        with pytest.raises(TimeoutError, match="run_time_max=2 .*TIMEOUT"):  # as FluxJobExecutor (F11)
            over.result(timeout=120)


@pytest.mark.parametrize(
    "request_, words",
    [
        ({"cores": 99}, "cores=99 x threads_per_core=1 = 99 cores asked for one job, but this Flux instance"),
        ({"num_nodes": 99, "cores": 99}, "cores asked for one job"),
        ({"num_nodes": 2, "cores": 2}, "num_nodes=2 asked for one job, but this Flux instance .* has 1 node"),
        ({"gpus_per_core": 99}, "GPUs asked for one job, but this Flux instance"),
        ({"cores": 1, "threads_per_core": 99}, "threads_per_core=99"),
    ],
)
def test_a_request_the_instance_can_never_run_is_refused_at_submit(tmp_path, no_jobs_left, request_, words):
    """F05: refused at submit() with the instance's size, as FluxJobExecutor refuses it (one
    check, launch.flux.check_request) — not a job that fails later as FAILED."""
    from hpcfutures import UnsatisfiableRequestError

    with cluster(cache_directory=str(tmp_path)) as exe:
        with pytest.raises(UnsatisfiableRequestError, match=words):
            exe.submit(funcs.add, 1, 2, resource_dict=request_)
        assert exe.submit(funcs.add, 1, 2).result(timeout=120) == 3
    with pytest.raises(UnsatisfiableRequestError, match=words):  # as a default too
        with cluster(cache_directory=str(tmp_path), resource_dict=request_) as exe:
            exe.submit(funcs.add, 1, 2)


def test_exclusive_without_num_nodes_takes_whole_nodes(tmp_path, no_jobs_left):
    """F09: exclusive=True without num_nodes is honoured as FluxJobExecutor honours it (whole
    nodes, as many as the cores need), not refused by Flux from the future."""
    with cluster(cache_directory=str(tmp_path)) as exe:
        future = exe.submit(funcs.add, 1, 2, resource_dict={"exclusive": True})
        assert wait_until(lambda: exe._engine.pending(future) or future.done(), 30)
        job = (exe._engine.pending(future) or [None])[0]
        assert future.result(timeout=120) == 3
    if job is not None:
        assert job_attr(job, "{nnodes}") == "1"


def test_an_exception_flux_records_on_a_job_is_in_the_error(tmp_path, no_jobs_left):
    """F05: a job Flux ends with an exception fails its future with Flux's own reason."""
    from hpcfutures import WorkerCrashedError

    with cluster(cache_directory=str(tmp_path)) as exe:
        future = exe.submit(funcs.sleep_then, 300, "never")
        assert wait_until(lambda: exe._engine.pending(future) is not None, 30)
        job = exe._engine.pending(future)[0]
        subprocess.run(["flux", "job", "raise", "--type=hpcftest", "--message=the reason Flux gives", job], check=True, timeout=30)
        with pytest.raises(WorkerCrashedError, match="flux recorded on the job: hpcftest: the reason Flux gives"):
            future.result(timeout=60)


def test_a_crashed_job_fails_with_its_log(tmp_path, no_jobs_left):
    from hpcfutures import WorkerCrashedError

    with cluster(cache_directory=str(tmp_path)) as exe:
        with pytest.raises(WorkerCrashedError, match="FAILED"):
            exe.submit(funcs.exit_hard, 4).result(timeout=120)


def test_a_lambda_call_runs(tmp_path, no_jobs_left):
    """Cache paths hold '<lambda>': the job script quotes them."""
    with cluster(cache_directory=str(tmp_path)) as exe:
        assert exe.submit(lambda x: x + 1, 1).result(timeout=120) == 2


def test_priority_is_the_urgency_as_in_executorlib(tmp_path, no_jobs_left):
    with cluster(cache_directory=str(tmp_path)) as exe:
        with pytest.raises(ValueError, match="holds the job for ever"):
            exe.submit(funcs.sleep_then, 0.5, 1, resource_dict={"priority": 0})
        future = exe.submit(funcs.sleep_then, 0.5, 1, resource_dict={"priority": 3})
        assert wait_until(lambda: exe._engine.pending(future) is not None or future.done(), 30)
        job = exe._engine.pending(future)
        assert future.result(timeout=120) == 1
    assert job is not None and job_attr(job[0], "{urgency}") == "3"


def test_terminate_tasks_in_cache(tmp_path, no_jobs_left):
    from hpcfutures import WorkerCrashedError, terminate_tasks_in_cache

    cache = str(tmp_path)
    exe = cluster(cache_directory=cache, wait=False)
    futures = [exe.submit(funcs.sleep_then, 300, i) for i in range(2)]
    assert wait_until(lambda: all(exe._engine.pending(f) for f in futures), 30)
    jobs = sorted(terminate_tasks_in_cache(cache))  # each entry records its queue: flux
    assert jobs == sorted(exe._engine.pending(f)[0] for f in futures)
    for f in futures:
        with pytest.raises(WorkerCrashedError, match="CANCELLED"):
            f.result(timeout=60)
    exe.shutdown()


def test_rerun_after_cancelled_jobs_resubmits_the_dependent_after_the_new_upstream_job(tmp_path, no_jobs_left):
    """F03: after run 1's jobs were cancelled, run 2 resubmits a under a new id; b (submitted again too) depends on that new id
    — Flux refused the old, cancelled one, so b's future failed although a succeeded."""
    from hpcfutures import terminate_tasks_in_cache

    cache, release = str(tmp_path / "cache"), str(tmp_path / "release")
    script = tmp_path / "run1.py"  # run 1 in its own process: it leaves (wait=False) and is gone
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            import funcs
            from conftest import wait_until
            from hpcfutures import FluxClusterExecutor
            with FluxClusterExecutor(cache_directory={cache!r}, wait=False) as exe:
                a = exe.submit(funcs.wait_for_file, {release!r}, 8)
                b = exe.submit(funcs.add, a, 100)
                assert wait_until(lambda: exe._engine.pending(a) and exe._engine.pending(b), 60)
                print(exe._engine.pending(a)[0], exe._engine.pending(b)[0])
            """
        )
    )
    run1 = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run1.returncode == 0, run1.stderr
    old = set(run1.stdout.split())
    assert len(old) == 2
    # cancelled from outside (not by terminate_tasks_in_cache, which marks the entries): run 2
    # follows the recorded jobs, finds them ended without a result and submits them again
    subprocess.run(["flux", "cancel", *sorted(old)], check=True, timeout=30)
    assert wait_until(lambda: all(job_attr(j, "{state}") == "INACTIVE" for j in old), 60)  # over before run 2 looks
    with cluster(cache_directory=cache) as second:
        a = second.submit(funcs.wait_for_file, release, 8)
        b = second.submit(funcs.add, a, 100)
        renewed = lambda f: (second._engine.pending(f) or [None])[0] not in old | {None}  # noqa: E731
        assert wait_until(lambda: renewed(a) and renewed(b), 60)
        open(release, "w").close()
        assert b.result(timeout=120) == 108 and a.result(timeout=60) == 8


def test_reconnect_after_the_driver_exits(tmp_path, no_jobs_left):
    cache, calls = str(tmp_path / "cache"), str(tmp_path / "calls")
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            import funcs
            from hpcfutures import FluxClusterExecutor
            with FluxClusterExecutor(cache_directory={cache!r}, wait=False) as exe:
                slow = exe.submit(funcs.sleep_then, float(sys.argv[1]), "slow")
                counted = exe.submit(funcs.count_call, {calls!r}, slow)
                if sys.argv[2] == "wait":
                    print(counted.result(timeout=120))
            print("left", time.time())
            """
        )
    )
    t0 = time.time()
    first = subprocess.run([sys.executable, str(script), "3", "leave"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "left" in first.stdout and time.time() - t0 < 3  # did not wait for the 3 s job
    second = subprocess.run([sys.executable, str(script), "3", "wait"], capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] == "slowslow"
    assert funcs.runs(calls) == 1  # followed the first run's jobs, submitted nothing twice


def test_a_killed_driver_with_wait_true_leaves_no_job(tmp_path, no_jobs_left):
    """SIGKILL of a FluxClusterExecutor(wait=True) driver: its jobs were its own, and its
    guardian (launch.guardian) cancels them with flux cancel."""
    import signal

    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            import funcs
            from hpcfutures import FluxClusterExecutor
            exe = FluxClusterExecutor(cache_directory={str(tmp_path / "cache")!r}, wait=True)
            futures = [exe.submit(funcs.sleep_then, 300, i) for i in range(2)]
            while not all(exe.job_id(f) for f in futures):
                time.sleep(0.05)
            print(" ".join(exe.job_id(f) for f in futures), flush=True)
            time.sleep(600)
            """
        )
    )
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        jobs = driver.stdout.readline().split()
        assert len(jobs) == 2, "the driver did not submit its jobs"
        assert all(job_attr(job, "{state}") != "INACTIVE" for job in jobs)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        assert wait_until(lambda: all(job_attr(job, "{state}") == "INACTIVE" for job in jobs), timeout=60), (
            f"jobs outlived their killed driver: {active_jobs()}"
        )
        assert all(job_attr(job, "{result}") == "CANCELED" for job in jobs)
    finally:
        driver.kill()
        driver.wait(timeout=30)


def test_cancel_futures_at_shutdown_cancels_the_jobs(tmp_path, no_jobs_left):
    exe = cluster(cache_directory=str(tmp_path))
    futures = [exe.submit(funcs.sleep_then, 300, i) for i in range(2)]
    assert wait_until(lambda: all(exe._engine.pending(f) for f in futures), 30)
    exe.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in futures)


def test_refused_parameters_and_graph_only_mode(tmp_path):
    from hpcfutures import FluxClusterExecutor

    with pytest.raises(ValueError, match="block_allocation"):
        FluxClusterExecutor(block_allocation=True)
    with pytest.raises(ValueError, match="max_workers"):
        FluxClusterExecutor(max_workers=2)
    with pytest.raises(ValueError, match="pmi"):
        FluxClusterExecutor(pmi_mode="pmi7")
    picture = tmp_path / "graph.dot"
    with FluxClusterExecutor(cache_directory=str(tmp_path), plot_dependency_graph_filename=str(picture)) as exe:
        a = exe.submit(funcs.add, 1, 2)
        exe.submit(funcs.add, a, 3)
    assert picture.exists() and "add" in picture.read_text()


def test_through_a_pysqa_flux_queue(tmp_path, no_jobs_left):
    pytest.importorskip("pysqa")
    config = os.path.join(os.path.dirname(__file__), "pysqa_flux")
    calls = str(tmp_path / "calls")
    with cluster(cache_directory=str(tmp_path / "cache"), pysqa_config_directory=config) as exe:
        first = exe.submit(funcs.count_call, calls, 1)
        second = exe.submit(funcs.add, first, 10)
        assert second.result(timeout=120) == 12
    assert funcs.runs(calls) == 1
