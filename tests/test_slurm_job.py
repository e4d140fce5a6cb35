"""SlurmJobExecutor against a real SLURM (scripts/slurm.sh starts one on localhost):
each script runs inside `salloc`, as a user's driver would, and reports what the tasks saw."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hpcfutures.launch.srun import SrunLauncher, allocation_cores, srun_command

HEADER = """
import json, os, sys
from hpcfutures import SlurmJobExecutor

def seen(*names):
    return {n: os.environ.get(n) for n in names}, os.getcwd()

def ranks(i):
    from mpi4py import MPI
    return i, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()
"""


def _in_allocation(tmp_path, body: str, ntasks: int = 4, timeout: int = 120):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    out = subprocess.run(
        ["salloc", f"-n{ntasks}", "--time=5", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slurm
def test_serial_task_is_an_srun_step_with_its_resources(tmp_path):
    report = _in_allocation(
        tmp_path,
        f"""
        with SlurmJobExecutor() as exe:
            env, cwd = exe.submit(
                seen, "SLURM_NTASKS", "SLURM_CPUS_PER_TASK", "SLURM_STEP_ID", "OMP_NUM_THREADS",
                resource_dict={{"threads_per_core": 2, "cwd": {str(tmp_path / "work")!r}}},
            ).result(timeout=60)
            a = exe.submit(sum, [1, 2])
            chained = exe.submit(sum, [a, 10]).result(timeout=60)
            import funcs
            chatty = exe.submit(funcs.chatty, 5).result(timeout=60)
        print(json.dumps({{"env": env, "cwd": cwd, "chained": chained, "chatty": chatty}}))
        """,
    )
    env = report["env"]
    assert env["SLURM_NTASKS"] == "1" and env["SLURM_CPUS_PER_TASK"] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert env["SLURM_STEP_ID"] is not None  # it ran as a job step
    assert report["cwd"] == str(tmp_path / "work")
    assert report["chained"] == 13
    assert report["chatty"] == 15  # the function's print went to stderr, not into the reply


@pytest.mark.slurm
@pytest.mark.mpi
def test_mpi_task_under_srun_with_zero_configuration(tmp_path):
    # no pmi_mode: srun --mpi is chosen from this environment's MPI (pmix for Open MPI,
    # pmi2 for MPICH); the suite runs this under both
    report = _in_allocation(
        tmp_path,
        """
        with SlurmJobExecutor() as exe:
            result = exe.submit(ranks, 3, resource_dict={"cores": 2}).result(timeout=60)
            env, _ = exe.submit(seen, "SLURM_NTASKS", resource_dict={"cores": 2}).result(timeout=60)
        with SlurmJobExecutor(block_allocation=True, max_workers=1, resource_dict={"cores": 2}) as exe:
            warm = exe.submit(ranks, 4).result(timeout=60)
        print(json.dumps({"ranks": result, "ntasks": env, "warm": warm}))
        """,
    )
    assert report["ranks"] == [[3, 2, 0], [3, 2, 1]]
    assert report["ntasks"][0]["SLURM_NTASKS"] == "2"
    assert report["warm"] == [[4, 2, 0], [4, 2, 1]]


@pytest.mark.slurm
@pytest.mark.mpi
def test_srun_without_a_pmi_the_mpi_understands_gives_no_answer(tmp_path):
    # pmi_mode="none": srun starts two singletons; each would answer (7, 1, 0) alone
    report = _in_allocation(
        tmp_path,
        """
        outcomes = []
        for block in (False, True):
            options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
            with SlurmJobExecutor(pmi_mode="none", **options) as exe:
                try:
                    value = exe.submit(ranks, 7, resource_dict=None if block else {"cores": 2}).result(timeout=60)
                    outcomes.append(["answer", value])
                except Exception as exc:
                    outcomes.append([type(exc).__name__, str(exc)])
        print(json.dumps(outcomes))
        """,
        ntasks=2,
    )
    (fresh, fresh_text), (warm, warm_text) = report
    assert fresh == "MPIWorldError" and warm == "PoolBrokenError"
    for text in (fresh_text, warm_text):
        assert "asked for 2 MPI ranks, but this rank's MPI_COMM_WORLD has 1" in text
        assert "srun --mpi=none" in text and "pmi_mode=" in text


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_failing_rank_ends_an_srun_step(tmp_path):
    report = _in_allocation(
        tmp_path,
        """
        import funcs
        outcomes = []
        for block in (False, True):
            options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
            res = None if block else {"cores": 2}
            with SlurmJobExecutor(**options) as exe:
                calls = [
                    exe.submit(funcs.mpi_fail_then_others_wait, 0, 1, resource_dict=res),
                    exe.submit(funcs.mpi_fail_then_others_wait, 1, 2, resource_dict=res),
                    exe.submit(funcs.mpi_raise_two_arg_error, 3, resource_dict=res),
                    exe.submit(funcs.mpi_ranks, 4, resource_dict=res),
                ]
                if not block:  # a rank whose process ends: srun ends the step (MPICH's ranks would wait)
                    calls.append(exe.submit(funcs.mpi_die_then_others_wait, 1, resource_dict=res))
                for f in calls:
                    try:
                        outcomes.append(["answer", f.result(timeout=60)])
                    except Exception as exc:
                        outcomes.append([type(exc).__name__, str(exc)])
        print(json.dumps(outcomes))
        """,
        ntasks=2,
    )
    assert report.pop(4)[0] == "WorkerCrashedError"
    for offset in (0, 4):  # fresh, then warm
        rank0, rank1, two_args, after = report[offset : offset + 4]
        assert rank0 == ["ValueError", "rank 0 failed on 1"]
        assert rank1 == ["ValueError", "rank 1 failed on 2"]  # from a rank without a link, through srun's stderr
        assert two_args[0] == "RuntimeError" and "TwoArgError: failed on 3" in two_args[1]
        assert after == ["answer", [[4, 2, 0], [4, 2, 1]]]


@pytest.mark.slurm
def test_warm_workers_are_long_lived_steps(tmp_path):
    report = _in_allocation(
        tmp_path,
        """
        def init():
            return {"offset": 100}

        def add_offset(x, offset):
            return x + offset

        with SlurmJobExecutor(block_allocation=True, max_workers=2, init_function=init) as exe:
            steps = {exe.submit(seen, "SLURM_STEP_ID").result(timeout=60)[0]["SLURM_STEP_ID"] for _ in range(6)}
            values = [exe.submit(add_offset, i).result(timeout=60) for i in range(3)]
        print(json.dumps({"steps": sorted(steps), "values": values}))
        """,
    )
    assert 1 <= len(report["steps"]) <= 2  # at most two steps served all six calls
    assert report["values"] == [100, 101, 102]


@pytest.mark.slurm
def test_warm_pool_larger_than_the_allocation_is_refused(tmp_path):
    report = _in_allocation(
        tmp_path,
        """
        try:
            SlurmJobExecutor(block_allocation=True, max_workers=3, resource_dict={"cores": 2})
            print(json.dumps("no error"))
        except ValueError as exc:
            print(json.dumps(str(exc)))
        """,
        ntasks=2,
    )
    assert "need 6 cores" in report and "allocation has 2" in report


@pytest.mark.slurm
def test_a_step_srun_refuses_fails_its_future_with_srun_s_message(tmp_path):
    report = _in_allocation(
        tmp_path,
        """
        from hpcfutures import WorkerCrashedError
        with SlurmJobExecutor() as exe:
            try:
                exe.submit(sum, [1], resource_dict={"slurm_cmd_args": ["--no-such-srun-flag"]}).result(timeout=60)
                print(json.dumps("no error"))
            except WorkerCrashedError as exc:
                print(json.dumps(str(exc)))
        """,
    )
    assert "no-such-srun-flag" in report


@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_numbers_srun_cannot_take_are_refused_and_cwd_is_honoured(tmp_path, monkeypatch):
    """From outside an allocation, as the breaker's reproducer: NaN used to fail the future
    late ("cannot convert float NaN to integer"), 0.5 GPUs reached srun as --gpus-per-task=0.5,
    and a relative cwd was taken twice (srun starts in cwd, then -D cwd again)."""
    import funcs
    from hpcfutures import SlurmJobExecutor

    for value in (float("nan"), float("inf"), 1e300):
        with pytest.raises(ValueError, match=r"SlurmJobExecutor\(resource_dict=\.\.\.\): resource_dict\['run_time_max'\] must be a finite"):
            SlurmJobExecutor(resource_dict={"run_time_max": value})
    with pytest.raises(ValueError, match=r"resource_dict\['gpus_per_core'\]=0.5 is not supported: srun --gpus-per-task counts whole GPUs"):
        SlurmJobExecutor(resource_dict={"gpus_per_core": 0.5, "cores": 2})
    monkeypatch.chdir(tmp_path)
    with SlurmJobExecutor(max_workers=1) as exe:
        for value in (float("nan"), float("inf"), 1e300):
            with pytest.raises(ValueError, match=r"submit\(\): resource_dict\['run_time_max'\] must be a finite number of seconds > 0"):
                exe.submit(funcs.cwd, resource_dict={"run_time_max": value})
        with pytest.raises(ValueError, match=r"submit\(\): resource_dict\['cwd'\]=.*exists and is not a directory"):
            exe.submit(funcs.cwd, resource_dict={"cwd": "/etc/passwd"})
        assert exe.submit(funcs.cwd, resource_dict={"cwd": "relative", "run_time_max": 600}).result(timeout=120) == str(tmp_path / "relative")


@pytest.mark.slurm  # it runs in an salloc allocation
@pytest.mark.timeout(150)
def test_requests_the_allocation_cannot_hold_are_unsatisfiable(tmp_path):
    """Inside `salloc -n 2`: a step of 3 cores is refused at submit() (the allocation's size
    is known); one that gets past that check (its -n set through slurm_cmd_args) fails at
    once with srun's "More processors requested than permitted" as UnsatisfiableRequestError,
    not WorkerCrashedError; a GPU on a SLURM without GPUs fails promptly with srun's gres
    line (the fresh engine used to wait for a GPU it does not hand out: the future never
    ended, shutdown blocked); the executor goes on serving, and shuts down."""
    report = _in_allocation(
        tmp_path,
        """
        import time
        from hpcfutures import UnsatisfiableRequestError, PoolBrokenError
        out = {}
        def outcome(call):
            start = time.monotonic()
            try:
                call()
                return ["no error", 0]
            except Exception as exc:
                cause = exc.__cause__
                return [type(exc).__name__, str(exc), type(cause).__name__ if cause else None, time.monotonic() - start]
        with SlurmJobExecutor(max_workers=2) as exe:
            out["cores3"] = outcome(lambda: exe.submit(sum, [1], resource_dict={"cores": 3}))
            out["n3"] = outcome(lambda: exe.submit(sum, [1], resource_dict={"slurm_cmd_args": ["-n", "3"]}).result(timeout=60))
            out["gpu"] = outcome(lambda: exe.submit(sum, [1], resource_dict={"gpus_per_core": 1}).result(timeout=60))
            out["after"] = exe.submit(sum, [1, 2]).result(timeout=60)
        with SlurmJobExecutor(max_workers=1, block_allocation=True, resource_dict={"gpus_per_core": 1}) as exe:
            out["warm_gpu"] = outcome(lambda: exe.submit(sum, [1]).result(timeout=60))
        out["gres_in_sinfo"] = __import__("subprocess").run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout
        print(json.dumps(out))
        """,
        ntasks=2,
        timeout=140,
    )
    kind, text = report["cores3"][:2]
    assert kind == "UnsatisfiableRequestError" and "cores=3" in text and "holds 2" in text, report["cores3"]
    kind, text = report["n3"][:2]
    assert kind == "UnsatisfiableRequestError" and "More processors requested than permitted" in text, report["n3"]
    assert report["after"] == 3
    if "gpu" not in report["gres_in_sinfo"]:
        kind, text = report["gpu"][:2]
        assert kind == "UnsatisfiableRequestError" and "Invalid generic resource" in text, report["gpu"]
        kind, text, cause = report["warm_gpu"][:3]
        assert kind == "PoolBrokenError" and cause == "UnsatisfiableRequestError" and "gres" in text, report["warm_gpu"]


def test_step_larger_than_the_allocation_is_refused_without_slurm(monkeypatch):
    from hpcfutures.errors import UnsatisfiableRequestError
    from hpcfutures.launch.srun import allocation_cpus, check_in_allocation

    for name in ("SLURM_NTASKS", "SLURM_CPUS_PER_TASK", "SLURM_NNODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "4(x2),2")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "3")
    assert allocation_cpus() == 10
    check_in_allocation({"cores": 5, "threads_per_core": 2, "num_nodes": 3})  # fits exactly
    with pytest.raises(UnsatisfiableRequestError, match="11 CPUs.*holds 10"):
        check_in_allocation({"cores": 11})
    with pytest.raises(UnsatisfiableRequestError, match="num_nodes=4.*spans 3"):
        check_in_allocation({"cores": 4, "num_nodes": 4})
    check_in_allocation({"cores": 11, "slurm_cmd_args": ["--overcommit"]})  # steps may share CPUs then


def test_resource_dict_maps_onto_srun_flags(monkeypatch, tmp_path):
    fake = tmp_path / "srun"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    command = srun_command(
        {
            "cores": 4,
            "threads_per_core": 2,
            "gpus_per_core": 1,
            "num_nodes": 2,
            "exclusive": True,
            "run_time_max": 90,
            "cwd": "/scratch/run",
            "openmpi_oversubscribe": True,
            "slurm_cmd_args": ["--mem=4G"],
        },
        pmi_mode="pmix",
    )
    assert command[0] == str(fake)
    assert command[1:] == [
        "--ntasks=4", "--cpus-per-task=2", "--gpus-per-task=1", "--nodes=2", "--exact", "--time=2",
        "--chdir=/scratch/run", "--mpi=pmix", "--kill-on-bad-exit=1", "--oversubscribe", "--mem=4G",
    ]  # fmt: skip
    plain = srun_command({"cores": 1})
    assert plain[1:] == ["--ntasks=1", "--cpus-per-task=1"]  # always given: srun no longer inherits it
    worker = SrunLauncher("pmi2").worker_command("tcp://host:1", {"cores": 2})
    assert worker[-2:] == ["tcp://host:1", "--mpi=2"]  # the world size it checks
    assert "import hpcfutures.worker.interactive as entry" in worker[-3]  # python -c, no runpy
    assert "--mpi=pmi2" in worker


def test_missing_srun_is_an_error_at_construction(monkeypatch, tmp_path):
    from hpcfutures import SlurmJobExecutor

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="srun"):
        SlurmJobExecutor()
    with pytest.raises(ValueError, match="pmi_mode"):
        SlurmJobExecutor(pmi_mode="nonsense")


def test_allocation_cores_from_the_environment(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_CPUS_PER_TASK", "SLURM_JOB_CPUS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    assert allocation_cores() is None
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "4(x2),2")
    assert allocation_cores() == 10
    monkeypatch.setenv("SLURM_NTASKS", "3")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert allocation_cores() == 6


@pytest.mark.slurm
@pytest.mark.timeout(150)
@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_children_of_srun_tasks_end_with_their_worker(block):
    """srun makes each task lead a process group inside slurmstepd's session, where the
    driver's session kill cannot reach: the worker ends its group itself (a fresh worker as
    it ends, a warm one at shutdown), so the child neither outlives the executor nor keeps
    the job running."""
    import funcs
    from conftest import pid_alive, wait_until
    from hpcfutures import SlurmJobExecutor

    exe = SlurmJobExecutor(max_workers=1, block_allocation=block)
    try:
        child = exe.submit(funcs.start_child, "popen").result(timeout=120)  # same node: pid is ours to see
        assert exe.submit(funcs.add, 1, 2).result(timeout=120) == 3
    finally:
        exe.shutdown(wait=True)
    assert wait_until(lambda: not pid_alive(child), 20), f"the srun task's child {child} outlived shutdown()"


_RANK0 = r"""
import os, subprocess, sys, time
from hpcfutures.worker.execute import end_own_session
out = sys.argv[1]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
# an orphan: sh starts it in the background and exits at once
subprocess.run(["sh", "-c", "sleep 120 & echo $! > " + out + ".orphan0"], check=True)
open(out + ".child0", "w").write(str(child.pid))
while not os.path.exists(out + ".ready1"):
    time.sleep(0.02)
end_own_session()
open(out + ".swept", "w").write("x")
"""

_RANK1 = r"""
import os, subprocess, sys, time
out = sys.argv[1]
subprocess.run(["sh", "-c", "sleep 120 & echo $! > " + out + ".orphan1"], check=True)
open(out + ".ready1", "w").write(str(os.getpid()))
time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_rank_zero_ending_its_group_spares_the_ranks_srun_put_beside_it(tmp_path):
    """slurmstepd puts every task of a node in the process group rank 0 leads: rank 0's
    worker ending what its tasks started must end its own child and orphan, never rank 1
    (which may still be finishing: atexit handlers, file flushes) nor what rank 1 started.
    This test plays slurmstepd: it starts rank 0 leading a group and rank 1 inside it."""
    from conftest import pid_alive, wait_until

    out = str(tmp_path / "r")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    rank0 = subprocess.Popen([sys.executable, "-c", _RANK0, out], env=dict(env, SLURM_PROCID="0"), process_group=0)
    rank1 = subprocess.Popen(
        [sys.executable, "-c", _RANK1, out], env=dict(env, SLURM_PROCID="1"), preexec_fn=lambda: os.setpgid(0, rank0.pid)
    )
    pids = []
    try:
        assert os.getpgid(rank1.pid) == rank0.pid  # the layout srun makes
        assert rank0.wait(timeout=30) == 0
        assert os.path.exists(out + ".swept")
        child0, orphan0, orphan1 = (int(open(out + s).read()) for s in (".child0", ".orphan0", ".orphan1"))
        pids = [child0, orphan0, orphan1]
        assert wait_until(lambda: not pid_alive(child0) and not pid_alive(orphan0), 10), "rank 0's own were not ended"
        assert rank1.poll() is None, f"rank 0 ending its group killed its sibling rank 1 ({rank1.returncode})"
        assert pid_alive(orphan1), "rank 0 ending its group killed what rank 1 started"
    finally:
        for pid in [rank1.pid, *pids]:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        rank1.wait(timeout=10)


@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_every_rank_of_an_srun_mpi_task_finishes_its_exit(tmp_path):
    """Rank 1 does work as it exits (an atexit handler: closing a file): rank 0's end must not
    cut it short, fresh (one srun per call) or warm (block_allocation), and srun reports no
    killed task."""
    body = f"""
        def late_exit(tag):
            import atexit, time
            from mpi4py import MPI
            rank = MPI.COMM_WORLD.Get_rank()
            def done():
                if rank == 1:
                    time.sleep(1.0)
                open(os.path.join({str(tmp_path)!r}, f"atexit_{{tag}}_{{rank}}"), "w").write("x")
            atexit.register(done)
            return rank

        with SlurmJobExecutor(max_cores=2) as exe:
            fresh = exe.submit(late_exit, "fresh", resource_dict={{"cores": 2}}).result(timeout=60)
        with SlurmJobExecutor(block_allocation=True, max_workers=1, resource_dict={{"cores": 2}}) as exe:
            warm = exe.submit(late_exit, "warm").result(timeout=60)
        import time
        deadline = time.monotonic() + 20
        while len([n for n in os.listdir({str(tmp_path)!r}) if n.startswith("atexit_")]) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        print(json.dumps({{"fresh": fresh, "warm": warm, "files": sorted(n for n in os.listdir({str(tmp_path)!r}) if n.startswith("atexit_"))}}))
        """
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    out = subprocess.run(["salloc", "-n4", "--time=5", sys.executable, str(script)], capture_output=True, text=True, timeout=150, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["fresh"] == [0, 1] and report["warm"] == [0, 1]
    assert report["files"] == ["atexit_fresh_0", "atexit_fresh_1", "atexit_warm_0", "atexit_warm_1"], out.stderr
    assert "Killed" not in out.stderr, out.stderr


# -- issue 15: the srun worker loads what a bare start needs and little more ------------

_PROBE = '''
import sys

HEAVY = ("threading", "signal", "enum", "functools", "collections")


def loaded(path):
    """Which heavy modules the worker holds now, and (atexit: after the worker's own end,
    end_own_session included) at its exit, written to path."""
    import atexit

    def at_exit():
        with open(path, "w") as f:
            f.write(" ".join(m for m in HEAVY if m in sys.modules))

    atexit.register(at_exit)
    return [m for m in HEAVY if m in sys.modules]


def make_partial(n):
    import functools

    return functools.partial(max, n)


def reduce_sum(values):
    import functools

    return functools.reduce(lambda a, b: a + b, values)
'''


@pytest.mark.slurm
@pytest.mark.timeout(150)
def test_an_srun_task_s_worker_loads_neither_threading_nor_signal_nor_functools(tmp_path):
    """The one-shot srun worker: its driver watch is a _thread thread (no threading), its end
    takes SIGKILL from _signal (no signal, no enum), and _pickle loads without functools
    (~2.5 ms of a 35 ms srun step together); a task that uses functools still gets the real one,
    partials travel both ways."""
    (tmp_path / "lean_probe.py").write_text(_PROBE)
    report = _in_allocation(
        tmp_path,
        f"""
        import functools
        import lean_probe
        with SlurmJobExecutor() as exe:
            at_call = exe.submit(lean_probe.loaded, {str(tmp_path / "at_exit")!r}).result(timeout=60)
            with open({str(tmp_path / "at_exit")!r}) as f:  # the future ends after the step did
                at_exit = f.read().split()
            power = exe.submit(functools.partial(pow, 2), 10).result(timeout=60)
            returned = exe.submit(lean_probe.make_partial, 5).result(timeout=60)
            total = exe.submit(lean_probe.reduce_sum, [1, 2, 3]).result(timeout=60)
        print(json.dumps({{"at_call": at_call, "at_exit": at_exit, "power": power,
                           "partial": [returned(3), returned(9)], "total": total}}))
        """,
        ntasks=2,
    )
    assert report["at_call"] == [] and report["at_exit"] == [], report
    assert report["power"] == 1024 and report["partial"] == [5, 9] and report["total"] == 6


def test_the_one_shot_worker_s_pickle_loads_without_functools_and_the_real_one_follows():
    """What an srun task's interpreter holds after importing the worker: _pickle, and no
    functools (not even the stand-in it loaded with); the first import of functools is the
    real module, whose partial is the type _pickle keeps, so partials pickle both ways."""
    code = (
        "import sys, hpcfutures.worker.one_shot;"
        "assert '_pickle' in sys.modules and 'functools' not in sys.modules, sorted(sys.modules);"
        "import functools, _functools, pickle, _pickle;"
        "assert functools.partial is _functools.partial and hasattr(functools, 'reduce');"
        "p = pickle.loads(_pickle.dumps(functools.partial(max, 4), protocol=2));"
        "print(p(1), p(7), functools.reduce(int.__add__, [1, 2]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "7", "3"]



@pytest.mark.timeout(60)
def test_the_driver_watch_ends_the_worker_when_the_driver_is_killed():
    """exit_with_driver's watch (a _thread thread on the driver's pidfd): the driver's
    SIGKILL ends the worker at once, with status 70, whatever the worker is doing."""
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    code = "import time, hpcfutures.worker.execute as e; e.exit_with_driver(); print('watching', flush=True); time.sleep(120)"
    env = dict(os.environ, HPCFUTURES_DRIVER_PID=str(driver.pid))
    worker = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "watching"
        driver.kill()
        driver.wait(timeout=30)
        assert worker.wait(timeout=30) == 70
    finally:
        for p in (driver, worker):
            if p.poll() is None:
                p.kill()
                p.wait()


_LEADER = r"""
import os, subprocess, sys, time
zombie = os.fork()
if zombie == 0:
    os._exit(0)  # never reaped while the leader sleeps: a zombie of the session
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
while open(f"/proc/{zombie}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
    time.sleep(0.01)
print(zombie, sleeper.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("refused", [False, True], ids=["getsid", "proc-stat-fallback"])
def test_session_members_are_the_live_processes_of_the_session(monkeypatch, refused):
    """What the end of every srun task scans (the worker its group, the driver srun's
    session): asked with getsid/getpgid per process, then only the matches read from /proc.
    The live members are found, the zombie is not, nothing outside the session is; where a
    security module refuses getsid/getpgid, /proc/PID/stat answers instead."""
    from hpcfutures.worker import execute

    if refused:
        def refuse(pid):
            raise PermissionError(1, "refused")

        monkeypatch.setattr(execute, "_getsid", refuse)
        monkeypatch.setattr(execute, "_getpgid", refuse)
    leader = subprocess.Popen([sys.executable, "-c", _LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        zombie, sleeper = map(int, leader.stdout.readline().split())
        assert sorted(execute.session_members(leader.pid)) == sorted([leader.pid, sleeper])
        assert sorted(execute.session_members(leader.pid, field=2)) == sorted([leader.pid, sleeper])
        assert execute.group_members_of_leader(leader.pid) == [sleeper]
        assert os.getpid() not in execute.session_members(leader.pid)
        assert execute.end_session(leader.pid, spare=leader.pid) == 1  # the sleeper; the zombie is no member
        from conftest import pid_alive, wait_until

        assert wait_until(lambda: not pid_alive(sleeper), 10)
    finally:
        leader.kill()
        leader.wait(timeout=30)
