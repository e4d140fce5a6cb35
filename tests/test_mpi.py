"""MPI-parallel functions (run under Open MPI in .venv and MPICH in .venv-mpich)."""

import os
import stat
import sys

import pytest

import funcs
from hpcfutures import SingleNodeExecutor, WorkerCrashedError
from hpcfutures.launch import mpi as mpi_launch

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]


def test_mpi_family_is_detected():
    family = mpi_launch.mpi_family(mpi_launch.find_mpiexec())
    assert family in ("openmpi", "mpich")
    from mpi4py import MPI

    library = MPI.Get_library_version()
    assert ("Open MPI" in library) == (family == "openmpi")


def test_every_rank_runs_and_results_are_ordered_by_rank():
    with SingleNodeExecutor(max_cores=2) as exe:
        fut = exe.submit(funcs.mpi_ranks, 3, resource_dict={"cores": 2})
        assert fut.result(timeout=60) == [(3, 2, 0), (3, 2, 1)]
        assert exe.submit(funcs.add, 1, 1).result(timeout=30) == 2  # serial beside MPI


def test_executor_level_cores():
    with SingleNodeExecutor(resource_dict={"cores": 2}) as exe:
        assert exe.submit(funcs.mpi_ranks, "x").result(timeout=60) == [("x", 2, 0), ("x", 2, 1)]


def test_oversubscribe_three_ranks_on_two_cores():
    with SingleNodeExecutor(openmpi_oversubscribe=True) as exe:
        result = exe.submit(funcs.mpi_ranks, 0, resource_dict={"cores": 3}).result(timeout=60)
    assert [r[2] for r in result] == [0, 1, 2] and {r[1] for r in result} == {3}


def test_error_on_one_rank_reaches_the_future():
    with SingleNodeExecutor() as exe:
        with pytest.raises(KeyError, match="rank 1") as info:
            exe.submit(funcs.mpi_fail_on_rank, 1, resource_dict={"cores": 2}).result(timeout=60)
        assert "on MPI rank 1 of 2" in info.value.__cause__.text


def test_warm_mpi_workers_with_init_function():
    with SingleNodeExecutor(
        max_workers=1, block_allocation=True, resource_dict={"cores": 2}, init_function=funcs.init_store
    ) as exe:
        assert exe.submit(funcs.uses_store, 1).result(timeout=60) == [8, 8]
        pids_first = exe.submit(funcs.my_pid).result(timeout=60)
        pids_again = exe.submit(funcs.my_pid).result(timeout=60)
        assert pids_first == pids_again and len(set(pids_first)) == 2  # same warm ranks


def test_mpi_worker_killed_rank_fails_future(tmp_path):
    with SingleNodeExecutor() as exe:
        fut = exe.submit(funcs.write_pid_then_sleep, str(tmp_path / "pid"), 60, resource_dict={"cores": 2})
        from conftest import wait_until

        assert wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 60)
        os.kill(int((tmp_path / "pid").read_text()), 9)
        with pytest.raises(WorkerCrashedError):
            fut.result(timeout=60)


def _fake_launcher(tmp_path):
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\necho 'fake-mpiexec: cannot reach the resource manager' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return str(fake)


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_launcher_that_exits_at_start(tmp_path, monkeypatch, block):
    monkeypatch.setattr(mpi_launch, "find_mpiexec", lambda: _fake_launcher(tmp_path))
    kwargs = {"resource_dict": {"cores": 2}}
    with SingleNodeExecutor(max_workers=1, block_allocation=block, **(kwargs if block else {})) as exe:
        fut = exe.submit(funcs.add, 1, 1) if block else exe.submit(funcs.add, 1, 1, **kwargs)
        with pytest.raises(WorkerCrashedError, match="exited with code 3(.|\n)*cannot reach the resource manager"):
            fut.result(timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="Open MPI refuses root only when run as root")
def test_open_mpi_refusing_root_is_reported(monkeypatch):
    if mpi_launch.mpi_family(mpi_launch.find_mpiexec()) != "openmpi":
        pytest.skip("Open MPI only")
    for name in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "PRTE_ALLOW_RUN_AS_ROOT", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM"):
        monkeypatch.delenv(name, raising=False)
    with SingleNodeExecutor() as exe:
        with pytest.raises(WorkerCrashedError, match="root"):
            exe.submit(funcs.add, 1, 1, resource_dict={"cores": 2}).result(timeout=60)


def test_missing_mpiexec_is_a_clear_error_at_submit(tmp_path, monkeypatch):
    monkeypatch.setattr(mpi_launch, "_search_path", lambda: str(tmp_path))
    with SingleNodeExecutor() as exe:
        with pytest.raises(FileNotFoundError, match="mpiexec"):
            exe.submit(funcs.add, 1, resource_dict={"cores": 2})
    with pytest.raises(FileNotFoundError, match="mpiexec"):
        SingleNodeExecutor(block_allocation=True, resource_dict={"cores": 2})


def test_missing_mpi4py_is_a_clear_error_at_submit(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a))
    with SingleNodeExecutor() as exe:
        with pytest.raises(ImportError, match="mpi4py"):
            exe.submit(funcs.add, 1, resource_dict={"cores": 2})


def test_mpi_worker_imports():
    def modules():
        import sys

        return sorted(m for m in sys.modules if m.startswith("hpcfutures.")), "mpi4py" in sys.modules

    with SingleNodeExecutor(resource_dict={"cores": 2}) as exe:
        results = exe.submit(modules).result(timeout=60)
    for mods, has_mpi in results:
        # hpcfutures.errors: the exception classes (standard library only), for MPIWorldError
        assert has_mpi and all(m.startswith(("hpcfutures.wire", "hpcfutures.worker", "hpcfutures.errors")) for m in mods)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_no_rank_outlives_its_driver(tmp_path, how):
    """Ctrl-C (the driver stops its workers) and SIGKILL of the driver (the workers notice)."""
    import signal
    import subprocess
    import textwrap

    from conftest import pid_alive, wait_until

    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import funcs
        from hpcfutures import SingleNodeExecutor
        with SingleNodeExecutor() as exe:
            exe.submit(funcs.rank_pid_files_then_sleep, {str(tmp_path)!r}, 120, resource_dict={{"cores": 2}}).result()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path), stderr=subprocess.DEVNULL)
    files = [tmp_path / "rank0", tmp_path / "rank1"]
    try:
        assert wait_until(lambda: all(f.exists() and f.read_text() for f in files), 60), "ranks never started"
        pids = [int(f.read_text()) for f in files]
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            proc.kill()
        proc.wait(timeout=30)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), 20), "an MPI rank outlived its driver"
    finally:
        proc.kill()


# -- issue 12: no answer unless one world of the requested size took part ---------------

def _singleton_launcher(tmp_path):
    """An ``mpiexec`` that starts N separate singletons, as ``srun`` without a PMI the MPI
    library understands does (``SLURM_PROCID`` numbers them, as srun would)."""
    fake = tmp_path / "mpiexec"
    fake.write_text(
        "#!/bin/sh\nn=$2; shift 2\ni=0\n"
        'while [ $i -lt $n ]; do SLURM_PROCID=$i "$@" & i=$((i+1)); done\nwait\n'
    )
    fake.chmod(0o755)
    return str(fake)


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_ranks_that_are_not_one_world_give_no_answer(tmp_path, monkeypatch, block):
    from hpcfutures.errors import MPIWorldError, PoolBrokenError

    monkeypatch.setattr(mpi_launch, "find_mpiexec", lambda: _singleton_launcher(tmp_path))
    options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
    with SingleNodeExecutor(**options) as exe:
        fut = exe.submit(funcs.mpi_ranks, 7, resource_dict=None if block else {"cores": 2})
        expected = PoolBrokenError if block else MPIWorldError  # warm: the worker could not start
        with pytest.raises(expected, match="asked for 2 MPI ranks, but this rank's MPI_COMM_WORLD has 1") as info:
            fut.result(timeout=60)
        assert "pmi_mode=" in str(info.value) and "PMI" in str(info.value)


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("failing", [0, 1], ids=["rank0", "rank1"])
def test_a_rank_that_fails_while_the_others_wait_ends_the_task(block, failing):
    options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {"max_cores": 2}
    resources = None if block else {"cores": 2}
    with SingleNodeExecutor(**options) as exe:
        bad = exe.submit(funcs.mpi_fail_then_others_wait, failing, 1, resource_dict=resources)
        behind = [exe.submit(funcs.mpi_ranks, i, resource_dict=resources) for i in range(3)]  # sent ahead, in warm mode
        with pytest.raises(ValueError, match=f"rank {failing} failed on 1") as info:
            bad.result(timeout=60)
        assert f"on MPI rank {failing} of 2" in info.value.__cause__.text
        # the cores are free again and (warm) the worker was replaced: the calls behind it run
        assert [f.result(timeout=60) for f in behind] == [[(i, 2, 0), (i, 2, 1)] for i in range(3)]
        if block:
            assert exe.submit(funcs.mpi_ranks, 9).result(timeout=60) == [(9, 2, 0), (9, 2, 1)]


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_an_exception_that_cannot_be_unpickled_is_named(block):
    options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
    resources = None if block else {"cores": 2}
    with SingleNodeExecutor(**options) as exe:
        bad = exe.submit(funcs.mpi_raise_two_arg_error, 1, resource_dict=resources)
        after = exe.submit(funcs.mpi_ranks, 2, resource_dict=resources)
        with pytest.raises(RuntimeError, match="TwoArgError: failed on 1.*could not be unpickled") as info:
            bad.result(timeout=60)
        assert "raise TwoArgError" in info.value.__cause__.text  # the worker's traceback
        assert after.result(timeout=60) == [(2, 2, 0), (2, 2, 1)]


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_a_result_one_rank_cannot_pickle_fails_only_its_future(block):
    options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
    resources = None if block else {"cores": 2}
    with SingleNodeExecutor(**options) as exe:
        bad = exe.submit(funcs.mpi_unpicklable_on_rank, 1, resource_dict=resources)
        after = exe.submit(funcs.mpi_ranks, 3, resource_dict=resources)
        with pytest.raises(TypeError, match="result of type lock could not be pickled") as info:
            bad.result(timeout=60)
        assert "on MPI rank 1 of 2" in info.value.__cause__.text
        assert after.result(timeout=60) == [(3, 2, 0), (3, 2, 1)]


def test_replies_of_ranks_are_decoded_by_the_driver_one_by_one():
    from hpcfutures.wire.frames import dumps
    from hpcfutures.wire.replies import mpi_parts, open_reply

    good = dumps({"result": 1})
    broken = b"\x80\x05not a pickle"
    opened = open_reply(mpi_parts([good, broken]))
    assert isinstance(opened.reply["error"], RuntimeError) and not opened.ends_worker
    assert "MPI rank 1 of 2 could not be unpickled here" in str(opened.reply["error"])
    assert open_reply(mpi_parts([good, good])).reply == {"result": [1, 1]}


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_a_failure_of_the_worker_loop_on_one_rank_ends_the_task(block):
    options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
    resources = None if block else {"cores": 2}
    with SingleNodeExecutor(**options) as exe:
        bad = exe.submit(funcs.mpi_break_worker_loop_on_rank, 1, resource_dict=resources)
        after = exe.submit(funcs.mpi_ranks, 5, resource_dict=resources)
        with pytest.raises(RuntimeError, match="loop failed on rank 1: OSError: the worker loop broke"):
            bad.result(timeout=60)
        assert after.result(timeout=60) == [(5, 2, 0), (5, 2, 1)]


def test_default_pmi_mode_follows_the_mpi_library_of_mpi4py(monkeypatch):
    from mpi4py import MPI

    expected = "pmix" if "Open MPI" in MPI.Get_library_version() else "pmi2"
    mpi_launch.default_pmi_mode.cache_clear()
    assert mpi_launch.default_pmi_mode() == expected  # from mpiexec --version
    # without an mpiexec (srun-only sites): asked of mpi4py in a subprocess
    def no_mpiexec():
        raise FileNotFoundError("no mpiexec")

    monkeypatch.setattr(mpi_launch, "find_mpiexec", no_mpiexec)
    mpi_launch.default_pmi_mode.cache_clear()
    try:
        assert mpi_launch.default_pmi_mode() == expected
    finally:
        mpi_launch.default_pmi_mode.cache_clear()


@pytest.mark.parametrize("block", [False, True], ids=["fresh", "warm"])
def test_a_failing_rank_0_reports_over_a_tcp_link_too(block):
    # zmq sends from a background thread: the report must be delivered before the abort
    options = {"block_allocation": True, "max_workers": 1, "resource_dict": {"cores": 2}} if block else {}
    resources = None if block else {"cores": 2}
    with SingleNodeExecutor(hostname_localhost=False, **options) as exe:
        with pytest.raises(ValueError, match="rank 0 failed on 1"):
            exe.submit(funcs.mpi_fail_then_others_wait, 0, 1, resource_dict=resources).result(timeout=60)
        assert exe.submit(funcs.mpi_ranks, 2, resource_dict=resources).result(timeout=60) == [(2, 2, 0), (2, 2, 1)]
