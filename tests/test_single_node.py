"""SingleNodeExecutor: the API users rely on, in both modes (fresh process, warm pool)."""

import os
import sys
from concurrent.futures import Future, as_completed

import pytest

import funcs
from hpcfutures import SingleNodeExecutor
from hpcfutures.errors import RemoteTraceback

pytestmark = pytest.mark.timeout(60)

MODES = [pytest.param(False, id="fresh"), pytest.param(True, id="warm")]


@pytest.mark.parametrize("block", MODES)
def test_submit_map_and_lambda(block):
    with SingleNodeExecutor(max_workers=2, block_allocation=block) as exe:
        assert exe.submit(funcs.add, 1, b=2).result(timeout=30) == 3
        assert list(exe.map(funcs.add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
        assert exe.submit(lambda x: x * 10, 4).result(timeout=30) == 40  # by value (cloudpickle)


@pytest.mark.parametrize("block", MODES)
def test_exception_type_and_remote_traceback(block):
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        fut = exe.submit(funcs.boom, "bad input")
        with pytest.raises(ValueError, match="bad input") as info:
            fut.result(timeout=30)
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "funcs.py" in cause.text and "in boom" in cause.text
        # the executor stays usable
        assert exe.submit(funcs.add, 2, 2).result(timeout=30) == 4


@pytest.mark.parametrize("block", MODES)
def test_unpicklable_argument_fails_at_submit_only(block):
    import threading

    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        with pytest.raises(TypeError, match="cannot be pickled"):
            exe.submit(funcs.identity, threading.Lock())
        assert exe.submit(funcs.identity, 5).result(timeout=30) == 5


@pytest.mark.parametrize("block", MODES)
def test_unpicklable_result_fails_only_that_future(block):
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        bad = exe.submit(funcs.unpicklable_result)
        good = exe.submit(funcs.add, 1, 1)
        with pytest.raises(TypeError, match="could not be pickled"):
            bad.result(timeout=30)
        assert good.result(timeout=30) == 2


@pytest.mark.parametrize("block", MODES)
def test_sys_exit_in_function(block):
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        with pytest.raises(SystemExit) as info:
            exe.submit(funcs.call_sys_exit, 3).result(timeout=30)
        assert info.value.code == 3
        assert exe.submit(funcs.add, 1, 2).result(timeout=30) == 3


def test_threads_per_core_sets_thread_variables():
    names = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"]
    with SingleNodeExecutor(max_cores=2) as exe:
        seen = [exe.submit(funcs.env, n, resource_dict={"threads_per_core": 2}).result(timeout=30) for n in names]
        assert seen == ["2"] * 5
        assert exe.submit(funcs.env, "OMP_NUM_THREADS").result(timeout=30) == "1"


def test_threads_per_core_in_warm_workers():
    with SingleNodeExecutor(max_workers=1, block_allocation=True, resource_dict={"threads_per_core": 3}) as exe:
        assert exe.submit(funcs.env, "OPENBLAS_NUM_THREADS").result(timeout=30) == "3"


@pytest.mark.parametrize("block", MODES)
def test_cwd_is_created_and_used(tmp_path, block):
    target = tmp_path / "new" / "dir"
    kwargs = {"resource_dict": {"cwd": str(target)}}
    with SingleNodeExecutor(max_workers=1, block_allocation=block, **(kwargs if block else {})) as exe:
        fut = exe.submit(funcs.cwd) if block else exe.submit(funcs.cwd, **kwargs)
        assert fut.result(timeout=30) == str(target)


@pytest.mark.parametrize("block", MODES)
def test_cwd_that_is_a_file_is_refused_where_it_is_given(tmp_path, block):
    a_file = tmp_path / "file"
    a_file.write_text("")
    for cwd in (a_file, a_file / "sub"):
        with pytest.raises(ValueError, match=r"SingleNodeExecutor\(resource_dict=\.\.\.\): resource_dict\['cwd'\]=.*not a directory"):
            SingleNodeExecutor(max_workers=1, block_allocation=block, resource_dict={"cwd": str(cwd)})
    if not block:  # a warm pool's cwd is the executor's
        with SingleNodeExecutor(max_workers=1) as exe:
            with pytest.raises(ValueError, match=r"submit\(\): resource_dict\['cwd'\]=.*exists and is not a directory"):
                exe.submit(funcs.cwd, resource_dict={"cwd": str(a_file)})
            assert exe.submit(funcs.cwd, resource_dict={"cwd": tmp_path / "made"}).result(timeout=30) == str(tmp_path / "made")


def test_a_worker_enters_its_cwd_itself_or_fails_naming_it(tmp_path, monkeypatch):
    """What a worker does with the cwd the driver names (HPCFUTURES_CWD): a launcher such as
    srun may have started it elsewhere (srun -D falls back to /tmp)."""
    from hpcfutures.worker.directory import CWD_ENV, enter_from_environment

    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv(CWD_ENV, str(blocker / "sub"))
    error = enter_from_environment()
    assert isinstance(error, NotADirectoryError) and "resource_dict['cwd']" in str(error) and "blocker" in str(error)
    assert CWD_ENV not in os.environ and os.getcwd() == str(tmp_path)  # consumed; not moved
    monkeypatch.setenv(CWD_ENV, str(tmp_path / "made" / "here"))
    assert enter_from_environment() is None and os.getcwd() == str(tmp_path / "made" / "here")


@pytest.mark.parametrize("block", MODES)
def test_the_cwd_variable_does_not_reach_the_function(tmp_path, block):
    target = tmp_path / "w"
    with SingleNodeExecutor(max_workers=1, block_allocation=block, resource_dict={"cwd": str(target)}) as exe:
        assert exe.submit(funcs.env, "HPCFUTURES_CWD").result(timeout=30) is None
        assert exe.submit(funcs.cwd).result(timeout=30) == str(target)


def test_error_log_file(tmp_path):
    log = tmp_path / "errors.log"
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(ValueError):
            exe.submit(funcs.boom, "logged", resource_dict={"error_log_file": str(log)}).result(timeout=30)
    text = log.read_text()
    assert "boom" in text and "logged" in text and "ValueError" in text


def test_init_function_injection_and_explicit_args_win():
    with SingleNodeExecutor(max_workers=1, block_allocation=True, init_function=funcs.init_store) as exe:
        assert exe.submit(funcs.uses_store, 2, j=5).result(timeout=30) == 10
        assert exe.submit(funcs.uses_store, 2).result(timeout=30) == 9


def test_worker_ids_are_distinct():
    with SingleNodeExecutor(max_workers=2, block_allocation=True, init_function=funcs.init_with_id) as exe:
        # two calls at once on two idle workers: each worker takes one
        futures = [exe.submit(funcs.wid_after_sleep, 0.5) for _ in range(2)]
        assert sorted(f.result(timeout=30) for f in futures) == [0, 1]
        # the id is also injected into calls that name it, without an init_function entry
        assert exe.submit(funcs.get_executorlib_worker_id).result(timeout=30) in (0, 1)


def test_resize_warm_pool_up_and_down(tmp_path):
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        assert exe.max_workers == 1
        exe.max_workers = 3
        assert exe.max_workers == 3 and exe.info["max_workers"] == 3
        # three calls that pass only when all three run at once: three workers, three pids
        pids = [exe.submit(funcs.meet_then_pid, str(tmp_path / "up"), 3, 40) for _ in range(3)]
        assert len({p.result(timeout=50) for p in pids}) == 3
        exe.max_workers = 1
        assert exe.max_workers == 1
        assert [exe.submit(funcs.add, i, 1).result(timeout=30) for i in range(5)] == [1, 2, 3, 4, 5]
        with pytest.raises(ValueError):
            exe.max_workers = 0


def test_resize_fresh_mode_runs_more_at_once(tmp_path):
    from conftest import wait_until

    with SingleNodeExecutor(max_workers=1) as exe:
        exe.max_workers = 2
        assert exe.max_workers == 2
        first = exe.submit(funcs.write_pid_then_sleep, str(tmp_path / "a"), 3.0)
        second = exe.submit(funcs.write_pid_then_sleep, str(tmp_path / "b"), 0.1)
        assert wait_until(lambda: (tmp_path / "b").exists(), 20)
        assert not first.done()  # the second started while the first still ran
        assert first.result(timeout=30) == second.result(timeout=30) == "finished"


def test_len_info_and_fifo_queue():
    with SingleNodeExecutor(max_workers=1) as exe:
        first = exe.submit(funcs.sleep_then, 0.5, "a")
        rest = [exe.submit(funcs.identity, i) for i in range(3)]
        assert len(exe) == 3
        info = exe.info
        assert info["max_workers"] == 1 and info["block_allocation"] is False
        assert info["resource_dict"]["cores"] == 1
        assert first.result(timeout=30) == "a"
        assert [f.result(timeout=30) for f in rest] == [0, 1, 2]
        assert len(exe) == 0


def test_futures_as_arguments_chain_and_nesting():
    with SingleNodeExecutor(max_workers=2) as exe:
        a = exe.submit(funcs.add, 1, 1)
        b = exe.submit(funcs.add, a, 1)
        c = exe.submit(funcs.identity, {"list": [a, (b,)], "n": 5})
        assert c.result(timeout=30) == {"list": [2, (3,)], "n": 5}
        foreign = Future()
        d = exe.submit(funcs.add, foreign, 10)
        assert len(exe) == 1
        foreign.set_result(5)
        assert d.result(timeout=30) == 15


def test_upstream_failure_propagates_and_downstream_never_runs(tmp_path):
    marker = tmp_path / "ran"
    with SingleNodeExecutor(max_workers=2) as exe:
        up = exe.submit(funcs.boom, "upstream")
        down = exe.submit(funcs.write_pid_then_sleep, str(marker), up)
        with pytest.raises(ValueError, match="upstream"):
            down.result(timeout=30)
        assert not marker.exists()


def test_cancelled_upstream_cancels_downstream():
    with SingleNodeExecutor(max_workers=1) as exe:
        up = Future()
        down = exe.submit(funcs.identity, up)
        up.cancel()
        assert down.cancelled()
        assert exe.submit(funcs.add, 1, 1).result(timeout=30) == 2


def test_disable_dependencies_rejects_future_argument():
    with SingleNodeExecutor(max_workers=1, disable_dependencies=True) as exe:
        f = Future()
        f.set_result(1)
        with pytest.raises(TypeError, match="disable_dependencies"):
            exe.submit(funcs.identity, f)


def test_map_resolves_future_iterable():
    with SingleNodeExecutor(max_workers=2) as exe:
        items = exe.submit(list, range(4))
        assert list(exe.map(funcs.add, items, [1, 1, 1, 1])) == [1, 2, 3, 4]


def test_many_tasks_all_end():
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        futures = [exe.submit(funcs.add, i, i) for i in range(500)]
        assert sorted(f.result(timeout=60) for f in as_completed(futures, timeout=60)) == [2 * i for i in range(500)]


# -- bad input: clear errors at construction or submit() ------------------------------

def test_unknown_resource_key_at_submit():
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(ValueError, match="unknown resource_dict key.*'core'"):
            exe.submit(funcs.add, 1, resource_dict={"core": 2})
        with pytest.raises(TypeError, match="threads_per_core"):
            exe.submit(funcs.add, 1, resource_dict={"threads_per_core": "2"})


def test_unknown_resource_key_at_construction():
    with pytest.raises(ValueError, match="unknown resource_dict key"):
        SingleNodeExecutor(resource_dict={"gpus": 1})


def test_cores_above_max_cores():
    with SingleNodeExecutor(max_cores=2) as exe:
        with pytest.raises(ValueError, match="exceeds max_cores"):
            exe.submit(funcs.add, 1, resource_dict={"cores": 4})
    with pytest.raises(ValueError, match="exceeds max_cores"):
        SingleNodeExecutor(max_cores=1, block_allocation=True, resource_dict={"cores": 2})


def test_threads_count_against_max_cores():
    """max_cores counts cores x threads_per_core, as the docs say: a call asking for 4 threads
    of one rank does not fit max_cores=2."""
    with SingleNodeExecutor(max_cores=2) as exe:
        with pytest.raises(ValueError, match="threads_per_core=4 = 4 cores exceeds max_cores=2"):
            exe.submit(funcs.add, 1, resource_dict={"threads_per_core": 4})
        assert exe.submit(funcs.add, 1, 2, resource_dict={"threads_per_core": 2}).result(timeout=30) == 3
    with pytest.raises(ValueError, match="exceeds max_cores"):
        SingleNodeExecutor(max_cores=2, resource_dict={"cores": 2, "threads_per_core": 2})


def test_init_function_needs_block_allocation():
    with pytest.raises(ValueError, match="block_allocation"):
        SingleNodeExecutor(init_function=funcs.init_store)


def test_function_with_resource_dict_parameter():
    def f(x, resource_dict=None):
        return x

    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(ValueError, match="resource_dict"):
            exe.submit(f, 1)
        with pytest.raises(TypeError, match="callable"):
            exe.submit(42)


def test_submit_after_shutdown():
    exe = SingleNodeExecutor(max_workers=1)
    exe.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        exe.submit(funcs.add, 1)


def test_block_allocation_refuses_per_task_worker_resources():
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        with pytest.raises(ValueError, match="block_allocation"):
            exe.submit(funcs.add, 1, resource_dict={"cores": 2})
        assert exe.submit(funcs.add, 1, resource_dict={"run_time_max": 30}).result(timeout=30) == 1


def test_unsupported_keys_are_explained():
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(ValueError, match="num_nodes.*this machine only"):
            exe.submit(funcs.add, 1, resource_dict={"num_nodes": 2})
        assert exe.submit(funcs.add, 1, resource_dict={"num_nodes": 1, "exclusive": False}).result(timeout=30) == 1


@pytest.mark.parametrize("kwargs", [{"max_workers": 0}, {"max_cores": -1}, {"max_workers": 1.5}, {"restart_limit": -1}])
def test_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        SingleNodeExecutor(**kwargs)


def test_import_is_lazy():
    import subprocess

    code = "import sys, hpcfutures; print(sorted(m for m in sys.modules if m.startswith(('hpcfutures', 'zmq', 'cloudpickle'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "['hpcfutures']"


def test_queued_call_does_not_wait_behind_a_long_one_while_a_worker_is_free():
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        exe.submit(funcs.add, 0, 0).result(timeout=30)  # both workers up
        long = exe.submit(funcs.sleep_then, 3.0, "long")
        short = exe.submit(funcs.add, 1, 1)
        assert short.result(timeout=2.5) == 2  # sent behind `long` it would take 3 s
        assert not long.done()
        assert long.result(timeout=30) == "long"


@pytest.mark.parametrize("block", MODES)
def test_reply_that_cannot_be_unpickled_fails_only_its_future(block):
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        bad = exe.submit(funcs.raise_two_arg_error)
        # a backlog, so that warm workers have calls sent ahead behind the bad one
        good = [exe.submit(funcs.add, i, 100) for i in range(20)]
        with pytest.raises(RuntimeError, match="could not be unpickled"):
            bad.result(timeout=30)
        assert [f.result(timeout=30) for f in good] == [i + 100 for i in range(20)]


@pytest.mark.parametrize("block", [False, True])
def test_map_pickles_the_function_once_and_keeps_functions_apart(block):
    with SingleNodeExecutor(max_workers=2, block_allocation=block) as exe:
        offset = 1
        assert list(exe.map(lambda x: x + offset, range(5))) == [1, 2, 3, 4, 5]
        assert list(exe.map(lambda x: x * 10, range(5))) == [0, 10, 20, 30, 40]
        offset = 100  # a new map call sees the new value: nothing is cached across calls
        assert list(exe.map(lambda x: x + offset, range(3))) == [100, 101, 102]


@pytest.mark.parametrize("block", [False, True])
def test_map_chunksize_groups_items_and_keeps_order(block):
    with SingleNodeExecutor(max_workers=2, block_allocation=block) as exe:
        assert list(exe.map(funcs.add, range(10), range(10), chunksize=3)) == [2 * i for i in range(10)]
        assert list(exe.map(funcs.my_pid, chunksize=4)) == []
        pids = list(exe.map(lambda _: __import__("os").getpid(), range(8), chunksize=4))
        assert len(set(pids[:4])) == 1 and len(set(pids[4:])) == 1  # four items, one message, one process
        results = exe.map(funcs.boom, ["x"] * 5, chunksize=2)
        with pytest.raises(ValueError, match="x"):
            list(results)
        with pytest.raises(ValueError, match="chunksize"):
            exe.map(funcs.add, range(3), chunksize=0)
