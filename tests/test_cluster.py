"""The queued-job executors: SlurmClusterExecutor against the real local SLURM, and
TestClusterExecutor (local processes) everywhere."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import funcs
from conftest import pid_alive, wait_until
from hpcfutures import SlurmClusterExecutor, WorkerCrashedError, get_cache_data, terminate_tasks_in_cache
from hpcfutures.api import TestClusterExecutor
from hpcfutures.batch.queues import QueueError


def _squeue_states():
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


@pytest.mark.slurm
def test_chain_is_queued_at_once_with_afterok(tmp_path):
    calls, release = str(tmp_path / "calls"), str(tmp_path / "release")
    with SlurmClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        first = exe.submit(funcs.count_call, calls, exe.submit(funcs.wait_for_file, release, 1))
        second = exe.submit(funcs.count_call, calls, first)
        third = exe.submit(funcs.add, second, 100)
        # all three jobs exist before the first has finished: dependencies live in SLURM
        # (the first call waits for a file only this test writes once it has looked)
        assert wait_until(lambda: all(exe.job_id(f) for f in (first, second, third)), 60)
        assert not first.done()
        open(release, "w").close()
        assert third.result(timeout=120) == 104
        assert exe.queue_queries >= 1
    assert funcs.runs(calls) == 2
    # a second run is answered from the cache: no new job
    with SlurmClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        first = exe.submit(funcs.count_call, calls, exe.submit(funcs.wait_for_file, release, 1))
        second = exe.submit(funcs.count_call, calls, first)
        assert exe.submit(funcs.add, second, 100).result(timeout=30) == 104
        assert exe.queue_queries == 0
    assert funcs.runs(calls) == 2


@pytest.mark.slurm
@pytest.mark.mpi
def test_mpi_task_as_a_batch_job(tmp_path):
    # no pmi_mode: the job's srun gets --mpi for this environment's MPI (run under both)
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        assert exe.submit(funcs.where_and_size, 7, resource_dict={"cores": 2}).result(timeout=120) == [(7, 2, 0), (7, 2, 1)]


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_batch_job_whose_ranks_are_not_one_world_gives_no_answer(tmp_path):
    from hpcfutures.errors import MPIWorldError

    with SlurmClusterExecutor(cache_directory=str(tmp_path), pmi_mode="none") as exe:
        with pytest.raises(MPIWorldError, match="asked for 2 MPI ranks, but this rank's MPI_COMM_WORLD has 1") as info:
            exe.submit(funcs.where_and_size, 7, resource_dict={"cores": 2}).result(timeout=120)
        assert "srun --mpi=none" in str(info.value) and "pmi_mode=" in str(info.value)
    # not stored as the function's outcome: with the right PMI the same call runs
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        assert exe.submit(funcs.where_and_size, 7, resource_dict={"cores": 2}).result(timeout=120) == [(7, 2, 0), (7, 2, 1)]


@pytest.mark.mpi
@pytest.mark.parametrize("where", [pytest.param("slurm", marks=pytest.mark.slurm), "local"])
def test_a_failing_rank_ends_a_batch_job(tmp_path, where):
    make = SlurmClusterExecutor if where == "slurm" else TestClusterExecutor
    with make(cache_directory=str(tmp_path)) as exe:
        rank0 = exe.submit(funcs.mpi_fail_then_others_wait, 0, 1, resource_dict={"cores": 2})
        rank1 = exe.submit(funcs.mpi_fail_then_others_wait, 1, 2, resource_dict={"cores": 2})
        two_args = exe.submit(funcs.mpi_raise_two_arg_error, 3, resource_dict={"cores": 2})
        unpicklable = exe.submit(funcs.mpi_unpicklable_on_rank, 1, resource_dict={"cores": 2})
        with pytest.raises(ValueError, match="rank 0 failed on 1"):
            rank0.result(timeout=120)
        with pytest.raises(ValueError, match="rank 1 failed on 2"):
            rank1.result(timeout=120)
        with pytest.raises(RuntimeError, match="TwoArgError: failed on 3"):
            two_args.result(timeout=120)
        with pytest.raises(TypeError, match="could not be pickled"):
            unpicklable.result(timeout=120)


@pytest.mark.slurm
def test_failing_task_and_its_dependants(tmp_path):
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        bad = exe.submit(funcs.boom, "in a job")
        after = exe.submit(funcs.add, bad, 1)
        with pytest.raises(ValueError, match="in a job"):
            bad.result(timeout=120)
        with pytest.raises(ValueError, match="in a job"):
            after.result(timeout=60)
    assert [d["status"] for d in get_cache_data(str(tmp_path)) if d["cache_key"].startswith("boom")] == ["error"]


@pytest.mark.slurm
def test_sbatch_refusing_a_job_fails_its_future_with_sbatch_s_words(tmp_path):
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        fut = exe.submit(funcs.add, 1, resource_dict={"partition": "no_such_partition"})  # a queue key: no warning (F10)
        with pytest.raises(QueueError, match="(?i)partition"):
            fut.result(timeout=60)


@pytest.mark.slurm
@pytest.mark.timeout(300)  # SLURM's time limits come in minutes
def test_scancel_and_time_limit_end_futures_with_the_job_state(tmp_path):
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        cancelled = exe.submit(funcs.sleep_then, 300, "never")
        assert wait_until(lambda: exe.job_id(cancelled) is not None, 30)
        job = exe.job_id(cancelled)
        subprocess.run(["scancel", job], check=True, timeout=30)
        with pytest.raises(WorkerCrashedError, match=f"job {job} ended in state CANCELLED"):
            cancelled.result(timeout=60)
        over = exe.submit(funcs.sleep_then, 300, "never", resource_dict={"run_time_max": 1})
        # SLURM's limit is whole minutes, plus its own grace: this takes a minute or two
        with pytest.raises(TimeoutError, match="run_time_max=1 .*TIMEOUT"):  # the type FluxJobExecutor raises (F11)
            over.result(timeout=240)


@pytest.mark.slurm
@pytest.mark.timeout(300)  # SLURM's time limits come in minutes
def test_reconnect_after_the_driver_exits(tmp_path):
    cache, calls, release = str(tmp_path / "cache"), str(tmp_path / "calls"), str(tmp_path / "release")
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import funcs
            from hpcfutures import SlurmClusterExecutor
            with SlurmClusterExecutor(cache_directory={cache!r}, wait=False) as exe:
                slow = exe.submit(funcs.wait_for_file, {release!r}, "slow", 240)
                counted = exe.submit(funcs.count_call, {calls!r}, slow)
                if sys.argv[1] == "wait":
                    print(counted.result(timeout=120))
            print("left")
            """
        )
    )
    first = subprocess.run([sys.executable, str(script), "leave"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    # it left while its jobs could not have ended (the first waits for a file not yet written)
    assert "left" in first.stdout
    assert sorted(d["status"] for d in get_cache_data(cache)) == ["queued", "queued"]
    open(release, "w").close()
    second = subprocess.run([sys.executable, str(script), "wait"], capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] == "slowslow"
    assert funcs.runs(calls) == 1  # followed the first run's jobs, submitted nothing twice


@pytest.mark.slurm
def test_terminate_tasks_in_cache(tmp_path):
    cache = str(tmp_path)
    exe = SlurmClusterExecutor(cache_directory=cache, wait=False)
    futures = [exe.submit(funcs.sleep_then, 300, i) for i in range(2)]
    assert wait_until(lambda: all(exe.job_id(f) for f in futures), 30)
    jobs = sorted(terminate_tasks_in_cache(cache))
    assert jobs == sorted(exe.job_id(f) for f in futures)
    for f in futures:
        with pytest.raises(WorkerCrashedError, match="CANCELLED"):
            f.result(timeout=60)
    exe.shutdown()


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_rerun_after_cancelled_jobs_makes_the_dependent_wait_for_the_new_upstream_job(tmp_path):
    """F03: after run 1's jobs were cancelled, run 2 resubmits a (new job id) and b; b's afterok must name a's NEW job, not the
    cancelled one of run 1 (which sbatch accepts, so b would not wait for the new a)."""
    cache, release = str(tmp_path / "cache"), str(tmp_path / "release")
    script = tmp_path / "run1.py"  # run 1 in its own process: it leaves (wait=False) and is gone
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            import funcs
            from conftest import wait_until
            from hpcfutures import SlurmClusterExecutor
            with SlurmClusterExecutor(cache_directory={cache!r}, wait=False) as exe:
                a = exe.submit(funcs.wait_for_file, {release!r}, 8)
                b = exe.submit(funcs.add, a, 100)
                assert wait_until(lambda: exe.job_id(a) and exe.job_id(b), 60)
                print(exe.job_id(a), exe.job_id(b))
            """
        )
    )
    run1 = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run1.returncode == 0, run1.stderr
    old = set(run1.stdout.split())
    assert len(old) == 2
    # cancelled from outside (not by terminate_tasks_in_cache, which marks the entries): run 2
    # follows the recorded jobs, finds them ended without a result and submits them again
    subprocess.run(["scancel", *sorted(old)], check=True, timeout=30)
    assert wait_until(lambda: all(_squeue_states().get(j) in ("CANCELLED", None) for j in old), 60)
    with SlurmClusterExecutor(cache_directory=cache) as second:
        a = second.submit(funcs.wait_for_file, release, 8)
        b = second.submit(funcs.add, a, 100)
        assert wait_until(lambda: second.job_id(a) not in old | {None} and second.job_id(b) not in old | {None}, 60)
        dependency = subprocess.run(
            ["squeue", "-h", "-j", second.job_id(b), "-o", "%E"], capture_output=True, text=True, timeout=30
        ).stdout
        assert second.job_id(a) in dependency and not any(j in dependency for j in old), dependency
        open(release, "w").close()
        assert b.result(timeout=120) == 108


def test_test_cluster_executor_runs_the_file_path_locally(tmp_path):
    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    with TestClusterExecutor(cache_directory=cache) as exe:
        a = exe.submit(funcs.count_call, calls, 2)
        b = exe.submit(funcs.count_call, calls, a)
        assert b.result(timeout=60) == 8
        with pytest.raises(ValueError, match="local job"):
            exe.submit(funcs.boom, "local job").result(timeout=60)
    with TestClusterExecutor(cache_directory=cache) as exe:
        a = exe.submit(funcs.count_call, calls, 2)
        assert exe.submit(funcs.count_call, calls, a).result(timeout=60) == 8
    assert funcs.runs(calls) == 2
    statuses = sorted(d["status"] for d in get_cache_data(cache))
    assert statuses == ["error", "ok", "ok"]


def test_test_cluster_executor_reports_a_killed_job(tmp_path):
    with TestClusterExecutor(cache_directory=str(tmp_path)) as exe:
        with pytest.raises(WorkerCrashedError, match="ended in state FAILED"):
            exe.submit(funcs.kill_self).result(timeout=60)


# -- cwd: the call runs there, or fails naming cwd; never in another directory ---------
def _check_cwd_is_honoured(exe, tmp_path):
    missing = tmp_path / "not" / "made" / "yet"
    assert exe.submit(funcs.cwd, resource_dict={"cwd": str(missing)}).result(timeout=120) == str(missing)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for cwd in (a_file, a_file / "below"):
        with pytest.raises(ValueError, match=r"submit\(\): resource_dict\['cwd'\]=.*a-file.*not a directory"):
            exe.submit(funcs.cwd, resource_dict={"cwd": str(cwd)})


def test_test_cluster_executor_honours_cwd(tmp_path):
    with pytest.raises(ValueError, match=r"TestClusterExecutor\(resource_dict=\.\.\.\): resource_dict\['cwd'\]=.*not a directory"):
        TestClusterExecutor(cache_directory=str(tmp_path / "cache"), resource_dict={"cwd": "/etc/passwd"})
    with TestClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        _check_cwd_is_honoured(exe, tmp_path)


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_slurm_cluster_executor_honours_cwd(tmp_path):
    with pytest.raises(ValueError, match=r"SlurmClusterExecutor\(resource_dict=\.\.\.\): resource_dict\['cwd'\]=.*not a directory"):
        SlurmClusterExecutor(cache_directory=str(tmp_path / "cache"), resource_dict={"cwd": "/etc/passwd"})
    with SlurmClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        _check_cwd_is_honoured(exe, tmp_path)
        # the directory is gone when the job starts (its upstream removed it): sbatch's --chdir
        # fails and SLURM starts the job in /tmp; the job's worker makes and enters it itself
        work = tmp_path / "work"
        removed = exe.submit(shutil.rmtree, str(work), resource_dict={"cwd": str(tmp_path)})
        assert exe.submit(funcs.cwd_after, removed, resource_dict={"cwd": str(work)}).result(timeout=120) == str(work)


def test_a_job_whose_cwd_cannot_be_entered_fails_naming_it(tmp_path):
    """The job's own check (the driver's may be passed by, e.g. a file put there later)."""
    from hpcfutures.cache.entry import EntryReader, write_entry
    from hpcfutures.wire.frames import dumps_by_value

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    entry = str(tmp_path / "entry")
    write_entry(entry, {"status": "queued", "cwd": str(blocker / "sub")}, dumps_by_value({"fn": os.getcwd}), b"")
    subprocess.run([sys.executable, "-m", "hpcfutures.worker.file_task", entry], check=True, timeout=60, cwd=tmp_path)
    with EntryReader(entry) as reader:
        assert reader.header["status"] == "error"
        error = reader.output()["error"]
    assert isinstance(error, NotADirectoryError)
    assert "resource_dict['cwd']" in str(error) and "blocker" in str(error)


@pytest.mark.slurm
def test_through_a_pysqa_queue_adapter(tmp_path):
    pytest.importorskip("pysqa")
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pysqa_slurm")
    with SlurmClusterExecutor(cache_directory=str(tmp_path), pysqa_config_directory=config) as exe:
        first = exe.submit(funcs.add, 1, 2)
        assert exe.submit(funcs.add, first, 10).result(timeout=120) == 13


@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_every_rank_finishes_its_exit_in_batch_jobs_and_warm_workers(tmp_path):
    """Rank 1 does work as it exits (atexit): rank 0's end must not kill it, neither in a
    batch job (one per call) nor in a warm srun worker (block_allocation)."""

    out = str(tmp_path / "out")
    os.makedirs(out)
    with SlurmClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        assert exe.submit(funcs.mpi_late_exit, out, "batch", resource_dict={"cores": 2}).result(timeout=120) == [0, 1]
    with SlurmClusterExecutor(block_allocation=True, max_workers=1, resource_dict={"cores": 2}) as exe:
        assert exe.submit(funcs.mpi_late_exit, out, "warm").result(timeout=120) == [0, 1]
    expected = ["atexit_batch_0", "atexit_batch_1", "atexit_warm_0", "atexit_warm_1"]
    wait_until(lambda: sorted(os.listdir(out)) == expected, 20)
    assert sorted(os.listdir(out)) == expected


@pytest.mark.slurm
def test_block_allocation_makes_each_warm_worker_a_job(tmp_path):
    with SlurmClusterExecutor(block_allocation=True, max_workers=2) as exe:
        jobs = {exe.submit(funcs.env, "SLURM_JOB_ID").result(timeout=120) for _ in range(6)}
    assert 1 <= len(jobs) <= 2 and None not in jobs


def _fake_sbatch(tmp_path, monkeypatch):
    script = tmp_path / "sbatch"
    script.write_text(f"#!/bin/sh\ncat > {tmp_path}/script.sh\necho '4242;cluster'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "script.sh"


def test_built_in_job_script(tmp_path, monkeypatch):
    from hpcfutures.batch.queues import JobSpec, SlurmQueue

    written = _fake_sbatch(tmp_path, monkeypatch)
    resources = {"cores": 2, "threads_per_core": 3, "run_time_max": 61, "exclusive": True}
    spec = JobSpec(["python", "-m", "x"], "hpcf-a", "/w", resources, ["7", "8"], {"partition": "gpu", "frobnicate": 1}, "/w/a.log")
    with pytest.warns(UserWarning, match="frobnicate"):
        job = SlurmQueue("pmix").submit(spec)
    assert job == "4242"
    text = written.read_text()
    for line in ("--ntasks=2", "--cpus-per-task=3", "--time=2", "--exclusive", "--dependency=afterok:7:8", '--partition="gpu"', '--output="/w/a.log"', '--chdir="/w"'):
        assert line in text
    # the job step repeats the rank shape (srun no longer inherits --cpus-per-task), and the
    # threading runtimes get threads_per_core, as SingleNodeExecutor's workers do
    assert "srun --ntasks=2 --cpus-per-task=3 --mpi=pmix --kill-on-bad-exit=1 python -m x" in text
    assert "env OMP_NUM_THREADS=3 " in text
    assert "--partition=\n" not in text and "frobnicate" not in text


@pytest.mark.parametrize("memory, line", [(4, "--mem=4G"), (2.0, "--mem=2G"), (1.5, "--mem=1536M"), (0.001, "--mem=2M")])
def test_memory_max_is_rendered_as_sbatch_takes_it(tmp_path, monkeypatch, memory, line):
    from hpcfutures.batch.queues import JobSpec, SlurmQueue

    written = _fake_sbatch(tmp_path, monkeypatch)
    SlurmQueue().submit(JobSpec(["python", "x.py"], "hpcf-m", "/w", {"gpus_per_core": 2.0}, [], {"memory_max": memory}, "/w/m.log"))
    text = written.read_text()
    assert f"#SBATCH {line}\n" in text and "#SBATCH --gpus-per-task=2\n" in text  # never "1.5G" or "2.0"


@pytest.mark.parametrize("cls", [SlurmClusterExecutor, TestClusterExecutor])
def test_numbers_no_job_script_renders_are_refused(tmp_path, cls):
    cache = str(tmp_path)
    for value in (float("nan"), float("inf"), 1e300):
        with pytest.raises(ValueError, match=r"resource_dict\['run_time_max'\] must be a finite number of seconds"):
            cls(cache_directory=cache, resource_dict={"run_time_max": value})
        with pytest.raises(ValueError, match=r"refresh_rate=\.\.\.\) must be a finite number of seconds >= 0"):
            cls(cache_directory=cache, refresh_rate=value)
        with pytest.raises(ValueError, match=r"resource_dict\['memory_max'\] must be a finite number of GB"):
            cls(cache_directory=cache, resource_dict={"memory_max": value})
    # a SLURM job counts whole GPUs per rank; a local "job" gets no GPUs of its own at all
    reason = "whole GPUs per rank" if cls is SlurmClusterExecutor else "get no GPUs of their own"
    with pytest.raises(ValueError, match=rf"resource_dict\['gpus_per_core'\]=0.5 is not supported: .*{reason}"):
        cls(cache_directory=cache, resource_dict={"gpus_per_core": 0.5})
    with cls(cache_directory=cache) as exe:
        with pytest.raises(ValueError, match=r"submit\(\): resource_dict\['run_time_max'\] must be a finite number"):
            exe.submit(funcs.add, 1, resource_dict={"run_time_max": float("nan")})
        with pytest.raises(ValueError, match=r"submit\(\): resource_dict\['gpus_per_core'\]=1.5 is not supported"):
            exe.submit(funcs.add, 1, resource_dict={"gpus_per_core": 1.5})


def test_submission_template_is_rendered(tmp_path, monkeypatch):
    from hpcfutures.batch.queues import JobSpec, SlurmQueue

    written = _fake_sbatch(tmp_path, monkeypatch)
    template = "#!/bin/bash\n#SBATCH --job-name={{job_name}}\n#SBATCH -n {{cores}}\n{%- if dependency_list %}\n#SBATCH -d afterok:{{ dependency_list|join(':') }}\n{%- endif %}\n{{command}}\n"
    SlurmQueue().submit(JobSpec(["python", "x.py"], "hpcf-b", "/w", {"submission_template": template, "cores": 1}, ["5"], {}, "/w/b.log"))
    lines = written.read_text().splitlines()
    assert lines[:4] == ["#!/bin/bash", "#SBATCH --job-name=hpcf-b", "#SBATCH -n 1", "#SBATCH -d afterok:5"]
    assert lines[4].startswith("env OMP_NUM_THREADS=1 ") and lines[4].endswith(" python x.py") and len(lines) == 5


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_reconnect_resubmits_a_job_that_ended_without_a_result(tmp_path):
    cache, counter = str(tmp_path / "cache"), str(tmp_path / "count")
    first = SlurmClusterExecutor(cache_directory=cache, wait=False)
    fut = first.submit(funcs.hang_until_attempt, counter, 2, "second")
    assert wait_until(lambda: first.job_id(fut) is not None and os.path.exists(counter), 60)
    job = first.job_id(fut)
    first.__exit__(None, None, None)  # leave without waiting, as `with ...(wait=False)` does
    subprocess.run(["scancel", job], check=True, timeout=30)
    assert wait_until(lambda: _squeue_states().get(job) in ("CANCELLED", None), 60)
    with SlurmClusterExecutor(cache_directory=cache) as second:
        assert second.submit(funcs.hang_until_attempt, counter, 2, "second").result(timeout=120) == "second"
        assert second.queue_queries >= 1


def test_names_a_job_script_cannot_carry_are_refused_at_submit(tmp_path):
    """A line break in cwd (or a queue string) would end an #SBATCH directive and start a
    command: refused where it is given, by every executor (the same code must move to a
    cluster unchanged); a space is fine (job-script paths are quoted)."""
    from hpcfutures import SingleNodeExecutor, SlurmClusterExecutor
    from hpcfutures.api import TestClusterExecutor

    bad = str(tmp_path / "x\ntouch INJECTED")
    with pytest.raises(ValueError, match="line break"):
        SlurmClusterExecutor(cache_directory=str(tmp_path / "c\nd"))
    with pytest.raises(ValueError, match="line break"):
        SlurmClusterExecutor(cache_directory=str(tmp_path / "c"), resource_dict={"partition": "debug\ntouch x"})
    for make in (SingleNodeExecutor, lambda: TestClusterExecutor(cache_directory=str(tmp_path / "c"))):
        with make() as exe:
            with pytest.raises(ValueError, match="line break"):
                exe.submit(sum, [1], resource_dict={"cwd": bad})
    assert not os.path.exists(bad)


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_batch_job_runs_in_a_cwd_with_a_space(tmp_path):
    from hpcfutures import SlurmClusterExecutor

    where = tmp_path / "a b"
    with SlurmClusterExecutor(cache_directory=str(tmp_path / "cache dir")) as exe:
        assert exe.submit(os.getcwd, resource_dict={"cwd": str(where)}).result(timeout=100) == str(where)


def test_every_queue_answers_in_neutral_job_states():
    from hpcfutures.batch.queues import local_state
    from hpcfutures.scheduling.job_states import ENDED, FLUX_STATES, PYSQA_STATES, SLURM_STATES, JobState, translate

    # SLURM: squeue's words, sacct's longer forms and suffixes, and words it may add later
    assert translate(SLURM_STATES, "PENDING") is JobState.PENDING
    assert translate(SLURM_STATES, "COMPLETING") is JobState.RUNNING
    assert translate(SLURM_STATES, "CANCELLED by 0") is JobState.CANCELLED
    assert translate(SLURM_STATES, " CANCELLED+ ") is JobState.CANCELLED
    assert translate(SLURM_STATES, "OUT_OF_MEMORY") is JobState.FAILED
    assert translate(SLURM_STATES, "DEADLINE") is JobState.TIMEOUT
    assert translate(SLURM_STATES, "PREEMPTED") is JobState.CANCELLED
    assert translate(SLURM_STATES, "SOMETHING_NEW") is JobState.UNKNOWN
    assert translate(SLURM_STATES, "") is JobState.UNKNOWN
    # pysqa: None and "finished" mean the job left the queue
    assert [translate(PYSQA_STATES, s) for s in ("pending", "running", "error", "finished", None)] == [
        JobState.PENDING,
        JobState.RUNNING,
        JobState.FAILED,
        JobState.UNKNOWN,
        JobState.UNKNOWN,
    ]
    # Flux (batch.flux_queue): an active job's state, an ended one's result
    flux_words = ("DEPEND", "PRIORITY", "SCHED", "RUN", "CLEANUP", "COMPLETED", "FAILED", "CANCELED", "TIMEOUT", "NEW_WORD")
    assert [translate(FLUX_STATES, s) for s in flux_words] == [
        *[JobState.PENDING] * 3, *[JobState.RUNNING] * 2,
        JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.UNKNOWN,
    ]  # fmt: skip
    # local processes: by exit code, and whether this queue killed it
    assert (local_state(0), local_state(1), local_state(-9), local_state(-9, cancelled=True)) == (
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.FAILED,
        JobState.CANCELLED,
    )
    assert ENDED == {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.UNKNOWN}
    assert f"{JobState.TIMEOUT}" == "TIMEOUT"  # messages read the word, on every Python version


@pytest.mark.timeout(120)
def test_terminate_tasks_in_cache_asks_the_queue_the_entries_were_written_by(tmp_path, helpers):
    """Not SLURM-only: a TestClusterExecutor's jobs (local processes) are cancelled the same
    way, by the queue each entry records, from outside the driver that started them."""
    cache, release = str(tmp_path / "cache"), str(tmp_path / "release")
    exe = TestClusterExecutor(cache_directory=cache, wait=False)
    held = exe.submit(funcs.wait_for_file, release, "never", 100)
    assert wait_until(lambda: [d["queue_id"] for d in get_cache_data(cache)] != [None], 30)
    (entry,) = get_cache_data(cache)
    assert entry["status"] == "queued" and entry["queue_id"] == exe.job_id(held)
    exe.__exit__(None, None, None)  # leave without waiting, as `with ...(wait=False)` does
    assert terminate_tasks_in_cache(cache) == [entry["queue_id"]]
    assert wait_until(lambda: not helpers.alive(int(entry["queue_id"])), 30)
    with pytest.raises(WorkerCrashedError, match=f"job {entry['queue_id']} ended in state FAILED"):
        held.result(timeout=30)
    # the entry waits for a later run to submit it again; its job, over, is not cancelled again
    assert terminate_tasks_in_cache(cache) == [] and get_cache_data(cache)[0]["status"] == "cancelled"


@pytest.mark.timeout(120)
def test_a_queued_or_cancelled_entry_says_so_and_is_computed_again(tmp_path):
    """F05/F06: get_future_from_cache on an entry whose job runs names the job (not "cannot be
    unpickled"); after terminate_tasks_in_cache the entry reads ``cancelled`` and a later run
    with the same cache directory computes it, never serving it."""
    from hpcfutures import CacheEntryNotFinishedError, get_future_from_cache

    cache, release = str(tmp_path / "cache"), str(tmp_path / "release")
    exe = TestClusterExecutor(cache_directory=cache, wait=False)
    held = exe.submit(funcs.wait_for_file, release, "done", 100, resource_dict={"cache_key": "k"})
    assert wait_until(lambda: exe.job_id(held) is not None and get_cache_data(cache)[0]["queue_id"], 30)
    job = exe.job_id(held)
    with pytest.raises(CacheEntryNotFinishedError, match=f"'k' .* no result yet \\(status queued\\): its job {job} \\(local\\) .*same cache_directory"):
        get_future_from_cache(cache, "k")
    exe.__exit__(None, None, None)
    assert terminate_tasks_in_cache(cache) == [job]
    with pytest.raises(WorkerCrashedError):
        held.result(timeout=30)
    (entry,) = get_cache_data(cache)
    assert (entry["status"], entry["queue_id"]) == ("cancelled", job)
    with pytest.raises(CacheEntryNotFinishedError, match=f"job {job} \\(local\\) ended without writing one \\(cancelled by terminate_tasks_in_cache\\); submit the call again"):
        get_future_from_cache(cache, "k")
    open(release, "w").close()
    with TestClusterExecutor(cache_directory=cache) as again:
        fut = again.submit(funcs.wait_for_file, release, "done", 100, resource_dict={"cache_key": "k"})
        assert fut.result(timeout=60) == "done"
    assert get_future_from_cache(cache, "k").result() == "done" and get_cache_data(cache)[0]["status"] == "ok"


@pytest.mark.timeout(120)
def test_an_entry_whose_job_ended_without_a_result_reads_cancelled(tmp_path):
    """The class of F06: not only terminate_tasks_in_cache — a job cancelled from outside
    while the driver follows it leaves a ``cancelled`` entry, not one that claims a job will write it."""
    cache, release = str(tmp_path / "cache"), str(tmp_path / "release")
    with TestClusterExecutor(cache_directory=cache) as exe:
        held = exe.submit(funcs.wait_for_file, release, "done", 100)
        assert wait_until(lambda: exe.job_id(held) is not None, 30)
        job = exe.job_id(held)
        os.kill(int(job), 9)
        with pytest.raises(WorkerCrashedError):
            held.result(timeout=30)
    (entry,) = get_cache_data(cache)
    assert entry["status"] == "cancelled" and entry["queue_id"] == job


def test_terminate_tasks_in_cache_refuses_what_it_cannot_honour(tmp_path):
    from hpcfutures.cache.entry import Status, make_header, write_entry, write_job_record
    from hpcfutures.cache.store import CacheStore

    cache = str(tmp_path)
    with pytest.raises(ValueError, match="backend='nope' is not a queue hpcfutures knows; use one of: flux, local, pysqa, slurm"):
        terminate_tasks_in_cache(cache, backend="nope")
    path = CacheStore(cache).path("k")
    write_entry(path, make_header("k", Status.QUEUED), b"", b"")
    write_job_record(path, "12", "pysqa")
    with pytest.raises(ValueError, match="pass the pysqa_config_directory"):
        terminate_tasks_in_cache(cache)


@pytest.mark.timeout(60)
def test_a_job_that_ends_before_its_id_is_recorded_keeps_its_result(tmp_path, monkeypatch):
    """A fast job can write its result before the driver learns its id: recording the id
    must not overwrite the entry (it did, and the future failed "COMPLETED without writing
    a result")."""
    from hpcfutures.batch.queues import LocalQueue

    real_submit = LocalQueue.submit

    def answer_late(self, spec):
        job = real_submit(self, spec)
        assert wait_until(lambda: not pid_alive(int(job)), 30)  # the job is over before submit() returns its id
        return job

    monkeypatch.setattr(LocalQueue, "submit", answer_late)
    with TestClusterExecutor(cache_directory=str(tmp_path)) as exe:
        assert exe.submit(funcs.add, 20, 22).result(timeout=30) == 42
    (entry,) = get_cache_data(str(tmp_path))
    assert entry["status"] == "ok" and entry["output"] == 42 and entry["queue_id"] is None


@pytest.mark.timeout(30)
def test_cancel_of_a_foreign_local_job_needs_the_leader_of_its_own_session():
    """terminate_tasks_in_cache kills a local job's process group only when its pid still
    leads a session running file_task (as LocalQueue starts it): a process that only leads a
    group — srun's rank 0, whose group holds the node's other ranks — is no such job."""
    from hpcfutures.batch.queues import _foreign_file_task

    argv = [sys.executable, "-c", "import time; time.sleep(60)", "hpcfutures.worker.file_task"]
    group_only = subprocess.Popen(argv, process_group=0)
    own_session = subprocess.Popen(argv, start_new_session=True)
    try:
        assert not _foreign_file_task(str(group_only.pid))
        assert _foreign_file_task(str(own_session.pid))
    finally:
        for p in (group_only, own_session):
            p.kill()
            p.wait(timeout=10)


def test_sbatch_refusing_a_raised_priority_names_the_remedy(tmp_path, monkeypatch):
    """F09: priority > 0 is --nice=-priority; sbatch refuses a negative nice to a user who is
    not an operator ("Invalid --nice value"), and that reaches the user at submit, saying why."""
    from hpcfutures.batch.queues import JobSpec, SlurmQueue

    script = tmp_path / "sbatch"
    script.write_text("#!/bin/sh\ncat > /dev/null\necho 'sbatch: error: Batch job submission failed: Invalid --nice value' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    spec = JobSpec(["python", "x.py"], "hpcf-p", "/w", {"priority": 5}, [], {}, "/w/p.log")
    with pytest.raises(QueueError, match=r"(?s)Invalid --nice value.*priority=5 asks for --nice=-5.*only a SLURM operator.*use priority <= 0"):
        SlurmQueue().submit(spec)


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_a_positive_priority_reaches_slurm_as_a_negative_nice(tmp_path):
    """F09, on the real queue (the tests run as root, an operator): priority=5 is nice -5."""
    with SlurmClusterExecutor(cache_directory=str(tmp_path), wait=False) as exe:
        fut = exe.submit(funcs.sleep_then, 300, 1, resource_dict={"priority": 5})
        assert wait_until(lambda: exe.job_id(fut) is not None, 30)
        job = exe.job_id(fut)
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%y"], capture_output=True, text=True, timeout=30).stdout.strip()
        subprocess.run(["scancel", job], timeout=30)
    assert out == "-5"


def test_documented_queue_keys_pass_quietly_and_a_typo_still_warns(tmp_path, monkeypatch):
    """F10: memory_max, partition, account, qos are SlurmClusterExecutor's documented, honoured
    keys: no "not hpcfutures keys" warning; an unknown key (a typo) still warns."""
    import warnings

    from hpcfutures.batch.queues import JobSpec, SlurmQueue
    from hpcfutures.scheduling.resources import validate

    written = _fake_sbatch(tmp_path, monkeypatch)
    keys = {"memory_max": 1, "partition": "debug", "account": "a", "qos": "q"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked = validate(keys, "submit()", pass_unknown=True)
        SlurmQueue().submit(JobSpec(["python", "x.py"], "hpcf-k", "/w", {}, [], checked, "/w/k.log"))
    text = written.read_text()
    assert all(line in text for line in ("--mem=1G", '--partition="debug"', '--account="a"', '--qos="q"'))
    with pytest.warns(UserWarning, match=r"\['parition'\] are not hpcfutures keys.*'partition'"):
        checked = validate({"parition": "debug"}, "submit()", pass_unknown=True)
    with pytest.warns(UserWarning, match="'parition'.* is not a job-script option .*; ignored"):
        SlurmQueue().submit(JobSpec(["python", "x.py"], "hpcf-k", "/w", {}, [], checked, "/w/k.log"))


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_slurm_cluster_executor_does_not_warn_for_its_documented_keys(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
            fut = exe.submit(funcs.add, 1, 2, resource_dict={"memory_max": 1, "partition": _default_partition()})
            assert fut.result(timeout=90) == 3


def _default_partition():
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30).stdout.split()
    return next(p.rstrip("*") for p in out if p.endswith("*"))
