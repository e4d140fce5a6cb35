"""pympipool's interfaces: the examples of its documentation, run as scripts with
``pympipool`` replaced by ``hpcfutures``, print what the documentation shows; and the
multiprocessing-style extras users expect from a Pool."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

import funcs
from hpcfutures import Executor, HPCExecutor, MPISpawnPool, Pool, PoolExecutor, SocketInterface

DOC_EXAMPLES = {
    "pool_map": (
        """
        import numpy as np
        from hpcfutures import Pool

        def calc(i):
            return np.array(i ** 2)

        with Pool(max_workers=2) as p:
            print(p.map(func=calc, iterable=[1, 2, 3, 4]))
        """,
        "[array(1), array(4), array(9), array(16)]",
        False,
    ),
    "pool_starmap": (
        """
        from hpcfutures import Pool

        def calc(i, j):
            return i + j

        with Pool(max_workers=2) as p:
            print(p.starmap(func=calc, iterable=[[1, 2], [3, 4], [5, 6], [7, 8]]))
        """,
        "[3, 7, 11, 15]",
        False,
    ),
    "executor_mpi": (
        """
        from hpcfutures import Executor

        def calc(i):
            from mpi4py import MPI
            size = MPI.COMM_WORLD.Get_size()
            rank = MPI.COMM_WORLD.Get_rank()
            return i, size, rank

        with Executor(cores=2) as p:
            fs = p.submit(calc, 3)
            print(fs.result())
        """,
        "[(3, 2, 0), (3, 2, 1)]",
        True,
    ),
    "executor_init": (
        """
        from hpcfutures import Executor

        def calc(i, j, k):
            return i + j + k

        def init_function():
            return {"j": 4, "k": 3, "l": 2}

        with Executor(cores=1, init_function=init_function) as p:
            fs = p.submit(calc, 2, j=5)
            print(fs.result())
        """,
        "10",
        False,
    ),
    "pool_executor": (
        """
        from hpcfutures import PoolExecutor

        def calc(i, j):
            return i + j

        with PoolExecutor(max_workers=2) as p:
            fs1 = p.submit(calc, 1, 2)
            fs2 = p.submit(calc, 3, 4)
            fs3 = p.submit(calc, 5, 6)
            fs4 = p.submit(calc, 7, 8)
            print(fs1.result(), fs2.result(), fs3.result(), fs4.result())
        """,
        "3 7 11 15",
        False,
    ),
    "mpispawnpool": (
        """
        from hpcfutures import MPISpawnPool

        def calc(i, comm):
            return i, comm.Get_size(), comm.Get_rank()

        with MPISpawnPool(max_ranks=4, ranks_per_task=2) as p:
            print(p.map(func=calc, iterable=[1, 2, 3, 4]))
        """,
        "[(1, 2, 0), (2, 2, 0), (3, 2, 0), (4, 2, 0)]",  # the documentation prints lists: tuples are fine
        True,
    ),
}


EXAMPLES = [
    pytest.param(code, expected, id=name, marks=[pytest.mark.mpi] if needs_mpi else [])
    for name, (code, expected, needs_mpi) in DOC_EXAMPLES.items()
]


@pytest.mark.parametrize("code, expected", EXAMPLES)
def test_documentation_example(tmp_path, code, expected):
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(code))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # exactly the answer: no launcher banner either (MPICH's mpiexec stopped mid-start by a
    # shutdown printed "BAD TERMINATION" here)
    assert out.stdout.strip() == expected


def test_pool_multiprocessing_api():
    with Pool(max_workers=2) as pool:
        assert pool.map(funcs.add, range(10), chunksize=3) == [i for i in range(10)]
        assert list(pool.imap(funcs.identity, range(7), chunksize=2)) == list(range(7))
        assert sorted(pool.imap_unordered(funcs.identity, range(7))) == list(range(7))
        assert pool.apply(funcs.add, (1, 2)) == 3
        got, errors = [], []
        ok = pool.apply_async(funcs.add, (2,), {"b": 5}, callback=got.append)
        bad = pool.apply_async(funcs.boom, ("no",), error_callback=errors.append)
        assert ok.get(timeout=30) == 7
        bad.wait(timeout=30)
        assert bad.ready() and not bad.successful() and ok.successful()
        with pytest.raises(ValueError, match="no"):
            bad.get()
        assert got == [7] and isinstance(errors[0], ValueError)
        with pytest.raises(ValueError, match="boom"):
            pool.map(funcs.boom, ["boom"] * 3)
        assert pool.map(funcs.add, range(3)) == [0, 1, 2]  # usable after a failure


@pytest.mark.timeout(120)
def test_pool_map_async_and_starmap_async_as_multiprocessing(tmp_path):
    """F03: map_async / starmap_async were missing (AttributeError)."""
    import multiprocessing

    with Pool(max_workers=2) as pool:
        got, errors = [], []
        res = pool.map_async(funcs.add, range(10), chunksize=3, callback=got.append)
        assert res.get(timeout=60) == list(range(10)) and res.ready() and res.successful()
        assert pool.starmap_async(funcs.add, [(1, 2), (3, 4)]).get(timeout=60) == [3, 7]
        assert pool.map_async(funcs.add, []).get(timeout=10) == []
        bad = pool.map_async(funcs.boom, ["a", "b"], error_callback=errors.append, chunksize=1)
        with pytest.raises(ValueError):
            bad.get(timeout=60)
        assert not bad.successful() and isinstance(errors[0], ValueError)
        res.wait(timeout=1)
        assert got == [list(range(10))]
        release = str(tmp_path / "release")
        held = pool.map_async(funcs.wait_for_file, [release])
        with pytest.raises(multiprocessing.TimeoutError):
            held.get(timeout=0.2)
        with pytest.raises(TimeoutError):  # also the builtin one, as futures raise it
            held.get(timeout=0.1)
        assert not held.ready()
        with pytest.raises(ValueError, match="not ready"):
            held.successful()
        open(release, "w").close()
        assert held.get(timeout=60) == [None]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_pool_imap_iterators_have_next_with_a_timeout(tmp_path, method):
    """F03: imap()/imap_unordered() returned plain generators: no .next(timeout)."""
    import multiprocessing

    release = str(tmp_path / "release")
    with Pool(max_workers=2) as pool:
        it = getattr(pool, method)(funcs.wait_for_file, [release, release], chunksize=1)
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.2)
        open(release, "w").close()
        assert [it.next(timeout=60), next(it)] == [None, None]
        with pytest.raises(StopIteration):
            it.next(timeout=1)
        assert sorted(getattr(pool, method)(funcs.identity, [0, 1, 2])) == [0, 1, 2]
    with Pool(max_workers=1) as pool:  # a failing call raises where its result would be; the next still comes
        it = getattr(pool, method)(funcs.boom, ["x", "y"])
        for _ in range(2):
            with pytest.raises(ValueError):
                it.next(timeout=60)
        with pytest.raises(StopIteration):
            next(it)


def test_pool_progress_bar(capsys):
    with Pool(max_workers=2, progress=True) as pool:
        assert pool.map(funcs.add, range(20)) == list(range(20))
    assert "20/20" in capsys.readouterr().err


def test_pool_close_join_terminate(tmp_path):
    from concurrent.futures import CancelledError

    from conftest import pid_alive, wait_until

    pool = Pool(max_workers=1)
    pending = pool.apply_async(funcs.sleep_then, (0.3, "late"))
    pool.close()
    pool.join()
    assert pending.get(timeout=1) == "late"
    pool = Pool(max_workers=1)
    started = tmp_path / "pid"
    running = pool.apply_async(funcs.write_pid_then_sleep, (str(started), 60))
    assert wait_until(lambda: started.exists() and started.read_text(), 30)  # the call runs
    pid = int(started.read_text())
    pool.terminate()
    # the running call is stopped (its process killed), not waited for: a CancelledError
    # that says why, never the 60 s call's result nor get()'s own TimeoutError
    with pytest.raises(CancelledError, match="shut down"):
        running.get(timeout=5)
    assert wait_until(lambda: not pid_alive(pid), 30)


def test_executor_is_one_fifo_worker_with_len():
    with Executor(cores=1) as exe:
        first = exe.submit(funcs.sleep_then, 0.5, "first")
        rest = [exe.submit(funcs.add, i) for i in range(3)]
        time.sleep(0.2)
        assert len(exe) == 3
        failing = exe.submit(funcs.boom, "only this one")
        assert first.result(timeout=30) == "first" and [f.result(timeout=30) for f in rest] == [0, 1, 2]
        with pytest.raises(ValueError):
            failing.result(timeout=30)
        assert exe.submit(funcs.add, 1, 1).result(timeout=30) == 2
        assert exe.max_workers == 1


def test_hpc_executor_balances_and_assigns_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    with HPCExecutor(max_workers=4, cores_per_worker=1, gpus_per_worker=1) as exe:
        seen = {}
        for f in [exe.submit(funcs.pid_and_devices, 0.3) for _ in range(8)]:
            pid, devices = f.result(timeout=60)
            seen.setdefault(pid, set()).add(devices)
    assert len(seen) >= 2 and all(len(d) == 1 for d in seen.values())
    assert len({next(iter(d)) for d in seen.values()}) == len(seen)


def test_pool_executor_runs_in_parallel(tmp_path):
    with PoolExecutor(max_workers=2) as exe:
        # a barrier of two: both calls pass only if they run at the same time
        futures = [exe.submit(funcs.meet_then_pid, str(tmp_path / "meet"), 2, 40) for i in range(2)]
        assert len({f.result(timeout=50) for f in futures}) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: HPCExecutor(queue_adapter=object()),
        lambda: PoolExecutor(queue_adapter_kwargs={"queue": "x"}),
        lambda: MPISpawnPool(max_ranks=2, ranks_per_task=1, queue_adapter=object()),
    ],
)
def test_missing_backends_are_named(make):
    with pytest.raises(NotImplementedError, match="not part of hpcfutures yet"):
        make()


def test_flux_backend_outside_flux_says_how_to_get_one(monkeypatch):
    """enable_flux_backend=True starts Flux jobs (tests/test_flux.py); outside an instance
    it refuses with the reason instead of running locally."""
    monkeypatch.delenv("FLUX_URI", raising=False)
    with pytest.raises((RuntimeError, ImportError), match="flux"):
        Executor(enable_flux_backend=True)
    with pytest.raises((RuntimeError, ImportError), match="flux"):
        Pool(enable_flux_backend=True)
    with pytest.raises(ValueError, match="not both"):
        HPCExecutor(enable_flux_backend=True, enable_slurm_backend=True)


@pytest.mark.parametrize("cls", [Executor, HPCExecutor, Pool, PoolExecutor])
def test_flux_backend_outside_flux_names_the_front(cls, monkeypatch):
    # F08: the message named FluxJobExecutor, a class the user did not build
    monkeypatch.delenv("FLUX_URI", raising=False)
    with pytest.raises((RuntimeError, ImportError), match=f"^{cls.__name__} ") as info:
        cls(enable_flux_backend=True)
    assert "FluxJobExecutor runs" not in str(info.value)


def test_flux_executors_name_themselves_and_their_remedy(monkeypatch):
    # F08: FluxClusterExecutor said FluxJobExecutor; FluxJobExecutor(wait=False) pointed at SLURM
    from hpcfutures import FluxClusterExecutor, FluxJobExecutor

    monkeypatch.delenv("FLUX_URI", raising=False)
    with pytest.raises((RuntimeError, ImportError), match="^FluxClusterExecutor "):
        FluxClusterExecutor()
    with pytest.raises(ValueError, match=r"FluxClusterExecutor\(wait=False\)") as info:
        FluxJobExecutor(wait=False)
    assert "Slurm" not in str(info.value)


@pytest.mark.slurm
def test_enable_slurm_backend_runs_workers_as_srun_steps(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            from hpcfutures import HPCExecutor, Pool

            def step(_):
                return os.environ.get("SLURM_STEP_ID")

            with HPCExecutor(max_workers=2, enable_slurm_backend=True) as exe:
                steps = {exe.submit(step, i).result() for i in range(4)}
            with Pool(max_workers=2, enable_slurm_backend=True) as pool:
                pool_steps = set(pool.map(step, range(4)))
            print(len(steps), None in steps, len(pool_steps), None in pool_steps)
            """
        )
    )
    out = subprocess.run(["salloc", "-n", "2", "--time=5", sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n_steps, missing, n_pool, pool_missing = out.stdout.split()
    assert 1 <= int(n_steps) <= 2 and missing == "False" and 1 <= int(n_pool) <= 2 and pool_missing == "False"


def test_mpispawnpool_sizes_are_checked():
    with pytest.raises(ValueError, match="max_ranks"):
        MPISpawnPool(max_ranks=1, ranks_per_task=2)


def test_socket_interface_drives_one_worker_on_its_own():
    from hpcfutures.api import INTERACTIVE_WORKER, python_command, worker_environment

    link = SocketInterface()
    address = link.bind()
    link.bootup(python_command(INTERACTIVE_WORKER, address), worker_environment(link.key, 1), os.getcwd())
    try:
        assert link.send_and_receive_dict({"fn": sum, "args": ([1, 2, 3],), "kwargs": {}}) == 6
        with pytest.raises(ZeroDivisionError):
            link.send_and_receive_dict({"fn": divmod, "args": (1, 0), "kwargs": {}})
    finally:
        link.shutdown()
    assert link.process is None


@pytest.mark.timeout(60)
def test_imap_next_timeout_holds_while_another_thread_waits_in_next():
    """A second thread's next(timeout) raises multiprocessing.TimeoutError in time even while
    a first thread waits inside next() without a timeout (it waited for the first's result)."""
    import multiprocessing
    import threading
    import time

    from hpcfutures import Pool

    with Pool(max_workers=1) as pool:
        it = pool.imap(_slow_identity, [3], chunksize=1)
        first = threading.Thread(target=it.next)
        first.start()
        time.sleep(0.3)  # the first thread is inside next() by now, waiting for the 3 s call
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.2)
        first.join(30)
        assert not first.is_alive()


def _slow_identity(x):
    import time

    time.sleep(x)
    return x
