"""Chaos around launches (issue 18) on the real local SLURM: a request SLURM will never
start fails with the reason instead of waiting forever, and a driver killed with SIGKILL
leaves no srun, mpiexec or queued job behind.

Every job made here carries a name or working directory unique to the test, so the
assertions see only this test's jobs on a SLURM shared with other users."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import wait_until
from hpcfutures.errors import PoolBrokenError, UnsatisfiableRequestError
from hpcfutures.launch.slurm_reasons import never_starts

TEN_NODES = {"num_nodes": 10, "cores": 10}  # the local partition has one node


def _jobs(name: str | None = None, workdir: str | None = None) -> list[str]:
    """Job ids in the queue (any state squeue still shows but ended ones) with this name
    or under this working directory."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%Z|%T"], capture_output=True, text=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        job, job_name, cwd, state = (line.split("|") + ["", "", "", ""])[:4]
        if state in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"):
            continue
        if (name is not None and job_name == name) or (workdir is not None and cwd.startswith(workdir)):
            found.append(job)
    return found


def _processes_with(token: str) -> list[int]:
    """Live processes whose command line contains ``token``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _cancel_leftovers(name=None, workdir=None):
    jobs = _jobs(name, workdir)
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=30)


def _clean_up(driver, token: str, name=None, workdir=None) -> None:
    """End a test's driver, the processes it left (command line holds ``token``) and its jobs."""
    if driver.poll() is None:
        driver.kill()
        driver.wait()
    for pid in _processes_with(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _cancel_leftovers(name, workdir)


# -- unit: the classification --------------------------------------------------------------
def test_pending_reasons_never_and_later():
    for reason in (
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "ReqNodeNotAvail, UnavailableNodes:n[1-4]",
        "AssocMaxNodesPerJobLimit",
        "QOSMaxWallDurationPerJobLimit",
        "InvalidAccount",
    ):
        assert never_starts(reason), reason
    for reason in ("Resources", "Priority", "Dependency", "BeginTime", "JobHeldUser", "AssocGrpCpuLimit", "AssocMaxJobsLimit", "None", "", None, "SomethingNew"):
        assert not never_starts(reason), reason


# -- a request SLURM will never start --------------------------------------------------------
@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.mpi  # several ranks per task: refused without mpi4py before SLURM is asked
@pytest.mark.timeout(90)
def test_ten_node_warm_pool_is_refused_at_construction(tmp_path):
    """Outside an allocation each srun asks for a job of its own: a pool of 10-node
    workers on the one-node partition is refused at once, naming SLURM's verdict and the
    request, and leaves no job in the queue."""
    from hpcfutures import SlurmJobExecutor

    name = f"hpcf-never-{os.getpid()}-{tmp_path.name}"
    try:
        with pytest.raises(UnsatisfiableRequestError, match="--nodes=10") as info:
            SlurmJobExecutor(max_workers=2, block_allocation=True, resource_dict=dict(TEN_NODES, slurm_cmd_args=[f"--job-name={name}"]))
        assert "not available" in str(info.value)
        assert not _jobs(name)
    finally:
        _cancel_leftovers(name)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.mpi  # several ranks per task: refused without mpi4py before SLURM is asked
@pytest.mark.timeout(90)
def test_ten_node_task_is_refused_at_submit(tmp_path):
    from hpcfutures import SlurmJobExecutor

    name = f"hpcf-never-{os.getpid()}-{tmp_path.name}"
    try:
        with SlurmJobExecutor(max_workers=2, resource_dict={"slurm_cmd_args": [f"--job-name={name}"]}) as exe:
            with pytest.raises(UnsatisfiableRequestError, match="--nodes=10"):
                exe.submit(sum, [1, 2], resource_dict=TEN_NODES)
            assert exe.submit(sum, [1, 2]).result(timeout=60) == 3  # the executor goes on
        # the one job made, the task's own, ends (it may show COMPLETING a moment)
        assert wait_until(lambda: not _jobs(name), timeout=10), _jobs(name)
    finally:
        _cancel_leftovers(name)


@pytest.fixture
def failed_job():
    """A batch job that has failed: a job depending on it with afterok can never start,
    though ``srun --test-only`` (which ignores dependencies) accepts the request."""
    job = subprocess.run(
        ["sbatch", "--parsable", "-o", "/dev/null", "-J", "hpcf-test-fails", "--wrap", "false"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip().split(";")[0]
    state = lambda: subprocess.run(  # noqa: E731
        ["squeue", "-h", "--states=all", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert wait_until(lambda: state() == "FAILED", timeout=60), state()
    return job


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "block_allocation, cores",
    [
        pytest.param(False, 1, id="fresh-serial"),
        pytest.param(False, 2, id="fresh-mpi", marks=pytest.mark.mpi),
        pytest.param(True, 2, id="warm", marks=pytest.mark.mpi),
    ],
)
def test_srun_job_pending_for_ever_fails_with_the_reason(tmp_path, failed_job, block_allocation, cores):
    """The srun's job is queued and its pending reason (DependencyNeverSatisfied) says it
    will never start: the future fails within seconds with the reason and the request,
    the job is cancelled, and no srun of ours is left."""
    from hpcfutures import SlurmJobExecutor

    name = f"hpcf-never-{os.getpid()}-{tmp_path.name}"
    resources = {"cores": cores, "slurm_cmd_args": [f"--dependency=afterok:{failed_job}", f"--job-name={name}"]}
    try:
        with SlurmJobExecutor(max_workers=2, block_allocation=block_allocation, resource_dict=resources) as exe:
            futures = [exe.submit(sum, [1, i]) for i in range(3)]
            for future in futures:
                with pytest.raises((UnsatisfiableRequestError, PoolBrokenError)) as info:
                    future.result(timeout=45)
                assert "DependencyNeverSatisfied" in str(info.value) and f"afterok:{failed_job}" in str(info.value)
            if block_allocation:  # the pool is broken for good: new work fails at once
                with pytest.raises(PoolBrokenError, match="DependencyNeverSatisfied"):
                    exe.submit(sum, [1, 1]).result(timeout=10)
        assert wait_until(lambda: not _jobs(name) and not _processes_with(name), timeout=10), _jobs(name)
    finally:
        _cancel_leftovers(name)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(90)
def test_shutdown_does_not_wait_for_warm_workers_still_queued(tmp_path):
    """A warm worker whose job waits for a *later* reason (BeginTime) keeps waiting — but a
    shutdown with no task left does not wait for the scheduler, and cancels the job."""
    from hpcfutures import SlurmJobExecutor

    name = f"hpcf-later-{os.getpid()}-{tmp_path.name}"
    try:
        exe = SlurmJobExecutor(max_workers=2, block_allocation=True, resource_dict={"slurm_cmd_args": ["--begin=now+600", f"--job-name={name}"]})
        assert wait_until(lambda: len(_jobs(name)) == 2, timeout=30), _jobs(name)
        exe.shutdown(wait=True)  # the test's timeout catches a hang
        assert wait_until(lambda: not _jobs(name) and not _processes_with(name), timeout=10), _jobs(name)
    finally:
        _cancel_leftovers(name)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.mpi  # several ranks per task: refused without mpi4py before SLURM is asked
@pytest.mark.timeout(90)
def test_pympipool_front_with_slurm_backend_is_refused(tmp_path):
    from hpcfutures import HPCExecutor

    with pytest.raises(UnsatisfiableRequestError, match="--ntasks=100"):
        HPCExecutor(max_workers=1, cores_per_worker=100, enable_slurm_backend=True)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(90)
def test_cluster_task_asking_ten_nodes_fails_and_others_run(tmp_path):
    from hpcfutures import SlurmClusterExecutor

    cache = str(tmp_path / "cache")
    try:
        with SlurmClusterExecutor(cache_directory=cache) as exe:
            never = exe.submit(sum, [1, 2], resource_dict=TEN_NODES)
            fine = exe.submit(sum, [1, 3])
            with pytest.raises(UnsatisfiableRequestError, match="PartitionConfig") as info:
                never.result(timeout=45)
            assert "'num_nodes': 10" in str(info.value)
            assert fine.result(timeout=60) == 4
        assert wait_until(lambda: not _jobs(workdir=cache), timeout=10), _jobs(workdir=cache)
    finally:
        _cancel_leftovers(workdir=cache)


def _cluster_has_gpus() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=30).stdout
    return any("gpu" in line for line in out.splitlines())


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(90)
def test_gpu_request_on_a_cluster_without_gpus_is_refused_at_submit(tmp_path):
    """A fresh-process call asking for a GPU (srun --gpus-per-task) on a SLURM without GPUs:
    refused at submit() with srun's own words, where it used to wait in the engine's queue
    for a GPU the engine does not hand out (srun does), so its future never ended and
    shutdown() blocked for ever."""
    from hpcfutures import SlurmJobExecutor

    if _cluster_has_gpus():
        pytest.skip("this SLURM has GPUs: the request would be granted")
    exe = SlurmJobExecutor(max_workers=1)
    try:
        with pytest.raises(UnsatisfiableRequestError, match=r"Invalid generic resource \(gres\)") as info:
            exe.submit(abs, -1, resource_dict={"gpus_per_core": 1})
        assert "--gpus-per-task=1" in str(info.value)
        assert exe.submit(abs, -2).result(timeout=60) == 2  # the executor goes on
    finally:
        exe.shutdown(wait=True)  # the test's timeout catches a hang


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(90)
def test_gpu_warm_pool_refusal_carries_srun_s_reason():
    """srun --test-only answers "Invalid generic resource (gres) specification" and then
    "allocation failure: No error": the refusal quotes the first, not only the last line."""
    from hpcfutures import SlurmJobExecutor

    if _cluster_has_gpus():
        pytest.skip("this SLURM has GPUs: the request would be granted")
    with pytest.raises(UnsatisfiableRequestError, match="gres") as info:
        SlurmJobExecutor(max_workers=1, block_allocation=True, resource_dict={"gpus_per_core": 1})
    assert "No error" not in str(info.value)


def test_srun_refusal_lines():
    from hpcfutures.launch.slurm_reasons import srun_refusal

    gres = "srun: error: Invalid generic resource (gres) specification\nallocation failure: No error\n"
    assert srun_refusal(gres, verdict=True) == "srun: error: Invalid generic resource (gres) specification"
    assert srun_refusal("allocation failure: Requested node configuration is not available", verdict=True) == (
        "allocation failure: Requested node configuration is not available"
    )
    step = "hello\nsrun: error: Unable to create step for job 12: More processors requested than permitted\n"
    assert "More processors requested than permitted" in srun_refusal(step)
    # a task that failed, or a step that waits for room, is no refusal
    assert srun_refusal("srun: error: vm: task 0: Exited with exit code 1\n") is None
    assert srun_refusal("srun: Job step creation temporarily disabled, retrying\n") is None
    assert srun_refusal("srun: Warning: can't run 1 processes on 10 nodes, setting nnodes to 1\n", verdict=True) is None


@pytest.mark.slurm
@pytest.mark.timeout(90)
@pytest.mark.parametrize("block_allocation", [False, True], ids=["fresh", "warm"])
def test_num_nodes_above_cores_is_refused(tmp_path, block_allocation):
    """SLURM cannot spread one rank over ten nodes: srun and sbatch lower -N with a warning
    nobody sees, and the call ran on one node. Refused before anything is queued."""
    from hpcfutures import SlurmClusterExecutor, SlurmJobExecutor

    name = f"hpcf-nodes-{os.getpid()}-{tmp_path.name}"
    try:
        if block_allocation:
            with pytest.raises(ValueError, match="num_nodes=10 with cores=1"):
                SlurmJobExecutor(max_workers=1, block_allocation=True, resource_dict={"num_nodes": 10, "slurm_cmd_args": [f"--job-name={name}"]})
            with pytest.raises(ValueError, match="num_nodes=2 with cores=1"):
                SlurmClusterExecutor(cache_directory=str(tmp_path / "cache"), resource_dict={"num_nodes": 2})
        else:
            with SlurmJobExecutor(max_workers=1, resource_dict={"slurm_cmd_args": [f"--job-name={name}"]}) as exe:
                with pytest.raises(ValueError, match="num_nodes=10 with cores=1"):
                    exe.submit(abs, -1, resource_dict={"num_nodes": 10})
                with pytest.raises(ValueError, match="num_nodes=3 with cores=2"):
                    exe.submit(abs, -1, resource_dict={"num_nodes": 3, "cores": 2})
            with SlurmClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
                with pytest.raises(ValueError, match="num_nodes=10 with cores=1"):
                    exe.submit(abs, -1, resource_dict={"num_nodes": 10})
        assert not _jobs(name)
    finally:
        _cancel_leftovers(name)


@pytest.mark.slurm
@pytest.mark.timeout(90)
def test_warm_task_cannot_change_its_worker_s_srun_flags(tmp_path):
    """num_nodes, exclusive and slurm_cmd_args shape a warm worker's srun step: a task's own
    value cannot be honoured, so it is refused (the same value as the executor's is fine)."""
    from hpcfutures import SlurmJobExecutor

    name = f"hpcf-warmflags-{os.getpid()}-{tmp_path.name}"
    args = [f"--job-name={name}"]
    try:
        with SlurmJobExecutor(max_workers=1, block_allocation=True, resource_dict={"slurm_cmd_args": args}) as exe:
            for change in ({"num_nodes": 1}, {"exclusive": True}, {"slurm_cmd_args": ["--mem=1G"]}):
                with pytest.raises(ValueError, match="cannot change"):
                    exe.submit(abs, -1, resource_dict=change)
            assert exe.submit(abs, -3, resource_dict={"slurm_cmd_args": list(args), "exclusive": False}).result(timeout=60) == 3
    finally:
        _cancel_leftovers(name)


# -- a driver killed while its launches wait ---------------------------------------------------
DRIVER = """
import sys, time
from hpcfutures import {executor}
exe = {executor}({arguments})
futures = [exe.submit(sum, [1, i]{per_call}) for i in range(2)]
print("submitted", flush=True)
time.sleep(600)
"""


def _kill_driver_and_check(tmp_path, script: str, token: str, name=None, workdir=None, expect_jobs=2):
    path = tmp_path / "driver.py"
    path.write_text(textwrap.dedent(script))
    driver = subprocess.Popen([sys.executable, str(path), token], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert driver.stdout.readline().strip() == "submitted"
        # the launches wait in the queue (a later reason: BeginTime), as a pending srun does
        assert wait_until(lambda: len(_jobs(name, workdir)) >= expect_jobs, timeout=30), _jobs(name, workdir)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        left = lambda: _processes_with(token) or _jobs(name, workdir)  # noqa: E731
        assert wait_until(lambda: not left(), timeout=10), f"left behind 10 s after SIGKILL: {left()}"
    finally:
        _clean_up(driver, token, name, workdir)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(120)
@pytest.mark.parametrize("block_allocation", [False, True], ids=["fresh", "warm"])
def test_sigkilled_driver_leaves_no_pending_srun(tmp_path, block_allocation):
    token = f"hpcf-orphan-{os.getpid()}-{int(block_allocation)}-{time.time_ns()}"
    arguments = (
        f"max_workers=2, block_allocation={block_allocation}, "
        f"resource_dict={{'slurm_cmd_args': ['--begin=now+600', '--job-name={token}', '--comment={token}']}}"
    )
    script = DRIVER.format(executor="SlurmJobExecutor", arguments=arguments, per_call="")
    _kill_driver_and_check(tmp_path, script, token, name=token)


STOPPED_DRIVER = """
import sys, time
from hpcfutures import SlurmJobExecutor
exe = SlurmJobExecutor(max_workers=2, block_allocation={block_allocation}, resource_dict={{
    "slurm_cmd_args": ["--begin=now+600", "--job-name={token}", "--comment={token}"]}})
futures = [exe.submit(sum, [1, i]) for i in range(3)]
print("submitted", flush=True)
if sys.stdin.readline().strip() == "shutdown":
    exe.shutdown(wait=False, cancel_futures=True)
    sys.exit(0)  # a normal exit right after: the shutdown runs on in the background
time.sleep(600)
"""


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["ctrl-c", "shutdown-cancel-then-exit"])
@pytest.mark.parametrize("block_allocation", [False, True], ids=["fresh", "warm"])
def test_a_stopped_driver_leaves_no_queued_job(tmp_path, block_allocation, how):
    """A driver stopped by Ctrl-C (SIGINT), or by shutdown(wait=False, cancel_futures=True)
    and a normal exit, while its srun jobs wait in the queue: the sruns used to be SIGKILLed
    and their jobs forgotten, so the jobs stayed PENDING and ran later with no driver."""
    token = f"hpcf-stopped-{os.getpid()}-{int(block_allocation)}-{time.time_ns()}"
    path = tmp_path / "driver.py"
    path.write_text(STOPPED_DRIVER.format(block_allocation=block_allocation, token=token))
    driver = subprocess.Popen(
        [sys.executable, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert driver.stdout.readline().strip() == "submitted"
        assert wait_until(lambda: len(_jobs(token)) >= 2, timeout=30), _jobs(token)
        if how == "ctrl-c":
            os.kill(driver.pid, signal.SIGINT)
        else:
            driver.stdin.write("shutdown\n")
            driver.stdin.flush()
        driver.wait(timeout=30)  # the driver ends: it does not wait for the queued jobs
        left = lambda: _processes_with(token) or _jobs(token)  # noqa: E731
        assert wait_until(lambda: not left(), timeout=10), f"left behind 10 s after the driver ended: {left()}"
    finally:
        _clean_up(driver, token, token)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(90)
def test_shutdown_cancel_futures_cancels_queued_srun_jobs(tmp_path):
    """In the driver itself: once shutdown(cancel_futures=True) returns, the jobs its srun
    steps waited for are out of the queue (not only their srun processes)."""
    from hpcfutures import SlurmJobExecutor

    name = f"hpcf-cancelled-{os.getpid()}-{tmp_path.name}"
    try:
        exe = SlurmJobExecutor(max_workers=2, resource_dict={"slurm_cmd_args": ["--begin=now+600", f"--job-name={name}"]})
        futures = [exe.submit(sum, [1, i]) for i in range(2)]
        assert wait_until(lambda: len(_jobs(name)) == 2, timeout=30), _jobs(name)
        exe.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() or isinstance(f.exception(timeout=0), Exception) for f in futures)
        assert not _jobs(name) and not _processes_with(name)
    finally:
        _cancel_leftovers(name)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_sigkilled_driver_cancels_its_queued_cluster_jobs(tmp_path):
    """SlurmClusterExecutor(wait=True): the driver's jobs end with it; the cache entries
    stay, and a later run resubmits them."""
    cache = str(tmp_path / "cache")
    template = "#!/bin/bash\n#SBATCH --begin=now+600\n#SBATCH --chdir={{ working_directory }}\n{{ command }}\n"
    arguments = f"cache_directory={cache!r}, resource_dict={{'submission_template': {template!r}}}"
    script = DRIVER.format(executor="SlurmClusterExecutor", arguments=arguments, per_call="")
    _kill_driver_and_check(tmp_path, script, f"hpcf-orphan-cluster-{time.time_ns()}", workdir=cache)


@pytest.mark.chaos
@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_wait_false_cluster_jobs_outlive_a_killed_driver(tmp_path):
    from hpcfutures.batch.queues import SlurmQueue  # noqa: F401  (same path as the executor)

    cache = str(tmp_path / "cache")
    template = "#!/bin/bash\n#SBATCH --begin=now+600\n#SBATCH --chdir={{ working_directory }}\n{{ command }}\n"
    script = f"""
import time
from hpcfutures import SlurmClusterExecutor
exe = SlurmClusterExecutor(cache_directory={cache!r}, wait=False, resource_dict={{'submission_template': {template!r}}})
exe.submit(sum, [1, 2])
print("submitted", flush=True)
time.sleep(600)
"""
    path = tmp_path / "driver.py"
    path.write_text(script)
    driver = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert driver.stdout.readline().strip() == "submitted"
        assert wait_until(lambda: len(_jobs(workdir=cache)) == 1, timeout=30)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        time.sleep(3)  # what would cancel it (the guardian) acts within a second of the kill
        assert len(_jobs(workdir=cache)) == 1, "a wait=False job must outlive its driver"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _cancel_leftovers(workdir=cache)


def _processes_in(directory: str) -> list[int]:
    """Live processes whose working directory is ``directory``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == directory:
                    with open(f"/proc/{entry}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                            pids.append(int(entry))
            except OSError:
                continue
    return pids


@pytest.mark.chaos
@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_sigkilled_driver_leaves_no_mpiexec(tmp_path):
    """mpiexec and its ranks, running a task, end within seconds of their driver's SIGKILL."""
    work = tmp_path / "work"
    work.mkdir()
    script = f"""
import time
from hpcfutures import SingleNodeExecutor
exe = SingleNodeExecutor(max_cores=2, resource_dict={{"cores": 2, "cwd": {str(work)!r}, "openmpi_oversubscribe": True}})
future = exe.submit(time.sleep, 600)
print("submitted", flush=True)
time.sleep(600)
"""
    path = tmp_path / "driver.py"
    path.write_text(script)
    driver = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert driver.stdout.readline().strip() == "submitted"
        assert wait_until(lambda: len(_processes_in(str(work))) >= 3, timeout=60), _processes_in(str(work))  # mpiexec + 2 ranks
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        assert wait_until(lambda: not _processes_in(str(work)), timeout=10), _processes_in(str(work))
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in _processes_in(str(work)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- the queue queries themselves --------------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.timeout(60)
def test_pending_watch_asks_about_all_jobs_in_one_query():
    from hpcfutures.launch.pending import PendingJobs

    watch = PendingJobs(interval=0.2)
    called = []
    with watch._cond:  # (re-entrant) all three are registered before the thread's first query
        for job in ("999999991", "999999992", "999999993"):  # unknown to the queue: gone
            watch.watch(job, called.append)
    assert wait_until(lambda: not watch.watched(), timeout=30)
    assert watch.queries == 1 and called == []  # gone is not "never": nothing to fail


@pytest.mark.slurm
@pytest.mark.timeout(60)
def test_slurm_queue_states_of_purged_jobs_are_gone():
    from hpcfutures.batch.queues import SlurmQueue
    from hpcfutures.scheduling.job_states import JobState

    # a job squeue no longer lists: the queue cannot tell, and the engine treats it as ended
    assert SlurmQueue().states(["999999994"]) == {"999999994": JobState.UNKNOWN}
