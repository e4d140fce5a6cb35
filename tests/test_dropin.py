"""Code written for executorlib (and the standard library) behaves the same here: truthiness,
cloudpickle_register, info after shutdown, the parameters of every executor (honoured or
refused with the reason), exception types; futures and exits: cancelled futures wake
their waiters at once, wait=False lets the interpreter leave, a job that ends without a
result says where its log is and what it says."""

import concurrent.futures as cf
import json
import logging
import os
import subprocess
import sys
import textwrap
from concurrent.futures import Future

import pytest

import funcs
import funcs_dropin
from conftest import wait_until
from hpcfutures import SingleNodeExecutor, SlurmClusterExecutor, SlurmJobExecutor, WorkerCrashedError, get_cache_data
from hpcfutures.api import TestClusterExecutor


# -- truthiness ------------------------------------------------------------------------
def _local_executors(tmp_path):
    from hpcfutures import Executor, HPCExecutor, Pool, PoolExecutor

    return [
        lambda: SingleNodeExecutor(max_workers=1),
        lambda: SingleNodeExecutor(max_workers=1, block_allocation=True),
        lambda: SingleNodeExecutor(plot_dependency_graph_filename=str(tmp_path / "g.dot")),
        lambda: TestClusterExecutor(cache_directory=str(tmp_path / "c1")),
        lambda: SlurmClusterExecutor(cache_directory=str(tmp_path / "c2"), export_workflow_filename=str(tmp_path / "w.json")),
        lambda: Executor(),
        lambda: HPCExecutor(max_workers=1),
        lambda: PoolExecutor(max_workers=1),
        lambda: Pool(max_workers=1),
    ]


def test_every_executor_is_truthy_while_idle_and_busy(tmp_path):
    for make in _local_executors(tmp_path):
        with make() as exe:
            assert bool(exe) is True, type(exe).__name__
            assert (exe or "default") is exe
    release = str(tmp_path / "release")
    with SingleNodeExecutor(max_workers=1) as exe:
        running = exe.submit(funcs_dropin.wait_for_file, release)
        queued = exe.submit(funcs_dropin.double, 1)
        # busy: the one worker runs the first call, the second waits
        assert exe and wait_until(lambda: len(exe) == 1, 30), len(exe)
        open(release, "w").close()
        assert running.result(timeout=60) == "released" and queued.result(timeout=60) == 2
    assert bool(exe) is True  # and after shutdown


@pytest.mark.slurm
def test_slurm_executors_are_truthy():
    with SlurmJobExecutor(max_workers=1) as exe:
        assert bool(exe) is True
    with SlurmClusterExecutor(block_allocation=True) as exe:
        assert bool(exe) is True


# -- cloudpickle_register --------------------------------------------------------------
def test_cloudpickle_register_ind_1_registers_the_calling_module(tmp_path):
    import cloudpickle

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "dropin_user_module.py").write_text(
        textwrap.dedent(
            """
            from hpcfutures.api import cloudpickle_register

            cloudpickle_register(ind=1)  # this module, as in executorlib


            def triple(x):
                return 3 * x


            def register_my_caller():
                cloudpickle_register()  # the default ind=2: the module that called this function
            """
        )
    )
    sys.path.insert(0, str(mods))
    try:
        import dropin_user_module
    finally:
        sys.path.remove(str(mods))  # the jobs cannot import it: only pickling by value helps
    try:
        with TestClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
            assert exe.submit(dropin_user_module.triple, 3).result(timeout=60) == 9  # not ModuleNotFoundError
        assert "dropin_user_module" in cloudpickle.list_registry_pickle_by_value()
        assert __name__ not in cloudpickle.list_registry_pickle_by_value()
        dropin_user_module.register_my_caller()
        assert __name__ in cloudpickle.list_registry_pickle_by_value()
    finally:
        for name in ("dropin_user_module", __name__):
            if name in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.unregister_pickle_by_value(sys.modules[name])
        sys.modules.pop("dropin_user_module", None)


def test_cloudpickle_register_refuses_a_bad_index():
    from hpcfutures.api import cloudpickle_register

    with pytest.raises(ValueError, match="ind"):
        cloudpickle_register(ind=-1)
    cloudpickle_register(ind=10_000)  # deeper than the stack: the outermost frame, no error


# -- info and max_workers after shutdown -----------------------------------------------
@pytest.mark.parametrize("block_allocation", [False, True])
def test_info_is_none_after_shutdown_and_max_workers_stays(block_allocation):
    exe = SingleNodeExecutor(max_workers=2, block_allocation=block_allocation)
    assert exe.info["max_workers"] == 2 and exe.info["block_allocation"] is block_allocation
    assert exe.max_workers == 2
    exe.shutdown()
    assert exe.info is None
    assert exe.max_workers == 2
    with pytest.raises(RuntimeError, match="after shutdown"):
        exe.max_workers = 3


def test_cluster_executor_info_and_max_workers(tmp_path):
    exe = TestClusterExecutor(cache_directory=str(tmp_path))
    assert exe.info["cache_directory"] == str(tmp_path) and exe.info["max_workers"] is None
    assert exe.max_workers is None  # the queue decides
    with pytest.raises(ValueError, match="queue decides"):
        exe.max_workers = 2
    exe.shutdown()
    assert exe.info is None and exe.max_workers is None


# executorlib 1.11's exe.info keys (its internal spawner/functions left out), per executor
_EXECUTORLIB_INFO = {
    "single block": {"cache_directory", "cores", "cwd", "hostname_localhost", "init_function", "log_obj_size",
                     "max_workers", "openmpi_oversubscribe", "restart_limit"},
    "single": {"cache_directory", "cores", "cwd", "hostname_localhost", "log_obj_size", "max_cores", "max_workers",
               "openmpi_oversubscribe"},
    "slurm job": {"cache_directory", "cores", "cwd", "gpus_per_core", "hostname_localhost", "log_obj_size", "max_cores",
                  "max_workers", "openmpi_oversubscribe", "pmi_mode", "slurm_cmd_args", "threads_per_core"},
    "slurm cluster": {"backend", "disable_dependencies", "executor_kwargs", "pmi_mode", "pysqa_config_directory",
                      "refresh_rate", "wait"},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(_EXECUTORLIB_INFO))
def test_info_has_executorlib_s_keys(tmp_path, kind):
    """F07: exe.info["cores"] / ["cwd"] were a KeyError (only under info["resource_dict"])."""
    make = {
        "single block": lambda: SingleNodeExecutor(max_workers=2, block_allocation=True, resource_dict={"cores": 1, "cwd": "/tmp"}),
        "single": lambda: SingleNodeExecutor(),
        "slurm job": lambda: SlurmJobExecutor(resource_dict={"slurm_cmd_args": ["--mem=1G"]}),
        "slurm cluster": lambda: SlurmClusterExecutor(cache_directory=str(tmp_path)),
    }[kind]
    exe = make()
    try:
        info = exe.info
        assert _EXECUTORLIB_INFO[kind] <= set(info), sorted(_EXECUTORLIB_INFO[kind] - set(info))
        assert info["cores"] == info["resource_dict"]["cores"] == 1 and "resource_dict" in info
        if kind == "single block":
            assert info["cwd"] == "/tmp"
        if kind == "slurm job":
            assert info["slurm_cmd_args"] == ["--mem=1G"]
        if kind == "slurm cluster":
            assert info["backend"] == "slurm" and info["executor_kwargs"]["cache_directory"] == str(tmp_path)
    finally:
        exe.shutdown()


def test_test_cluster_executor_info_is_flat_too(tmp_path):
    with TestClusterExecutor(cache_directory=str(tmp_path), resource_dict={"cwd": str(tmp_path)}) as exe:
        assert exe.info["cwd"] == str(tmp_path) and exe.info["cores"] == 1 and exe.info["backend"] == "local"


# -- graph-only mode on the cluster executors -------------------------------------------
@pytest.mark.parametrize("cls", [TestClusterExecutor, SlurmClusterExecutor])
def test_cluster_executors_draw_the_graph_without_submitting(tmp_path, cls):
    workflow, cache = tmp_path / "workflow.json", tmp_path / "cache"
    with cls(cache_directory=str(cache), export_workflow_filename=str(workflow)) as exe:
        first = exe.submit(funcs.add, 1, 2)
        second = exe.submit(funcs.add, first, 3)
        assert first.done() and second.done()
    data = json.loads(workflow.read_text())
    assert sum(1 for n in data["nodes"] if n.get("type") == "function") == 2
    assert not cache.exists() or not list(cache.iterdir())  # nothing ran, no job, no entry


# -- parameters: honoured, or refused with the reason -----------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (SlurmClusterExecutor, {"max_workers": 2}, r"SlurmClusterExecutor\(max_workers=2\).*queue decides.*block_allocation=True"),
        (SlurmClusterExecutor, {"max_cores": 4}, r"SlurmClusterExecutor\(max_cores=4\).*queue decides"),
        (SlurmClusterExecutor, {"hostname_localhost": True}, r"hostname_localhost=True.*files in the cache directory"),
        (SlurmClusterExecutor, {"init_function": dict}, r"init_function needs block_allocation=True"),
        (TestClusterExecutor, {"max_workers": 2}, r"TestClusterExecutor\(max_workers=2\).*queue decides"),
        (TestClusterExecutor, {"max_cores": 2}, r"TestClusterExecutor\(max_cores=2\)"),
        (TestClusterExecutor, {"hostname_localhost": False}, r"hostname_localhost=False.*files"),
        (TestClusterExecutor, {"block_allocation": True}, r"block_allocation=True.*SingleNodeExecutor"),
        (TestClusterExecutor, {"refresh_rate": -1}, r"refresh_rate"),
        (SingleNodeExecutor, {"wait": False}, r"SingleNodeExecutor\(wait=False\).*SlurmClusterExecutor\(wait=False\)"),
    ],
)
def test_a_parameter_that_cannot_be_honoured_is_refused_with_the_reason(tmp_path, cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(cache_directory=str(tmp_path), **kwargs)


def test_resource_keys_a_job_per_call_cannot_honour_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"SlurmClusterExecutor\(resource_dict=\.\.\.\).*'retries'.*not run again"):
        SlurmClusterExecutor(cache_directory=str(tmp_path), resource_dict={"retries": 2})
    with TestClusterExecutor(cache_directory=str(tmp_path)) as exe:
        with pytest.raises(ValueError, match=r"submit\(\).*'slurm_cmd_args'.*SlurmJobExecutor"):
            exe.submit(funcs.add, 1, resource_dict={"slurm_cmd_args": ["--exclusive"]})
        with pytest.raises(ValueError, match=r"'retry_on'"):
            exe.submit(funcs.add, 1, resource_dict={"retry_on": ValueError})
        assert exe.submit(funcs.add, 1, resource_dict={"retries": 0}).result(timeout=60) == 1  # neutral value


def test_errors_name_the_executor_class_the_user_built():
    with pytest.raises(TypeError, match=r"^SlurmJobExecutor\(resource_dict=\.\.\.\)"):
        SlurmJobExecutor(resource_dict={"cores": "two"})
    with pytest.raises(TypeError, match=r"^SlurmClusterExecutor\(resource_dict=\.\.\.\)"):
        SlurmClusterExecutor(block_allocation=True, resource_dict={"cores": "two"})
    with pytest.raises(ValueError, match=r"^SlurmJobExecutor\(wait=False\)"):
        SlurmJobExecutor(wait=False)


def test_parameters_keep_executorlib_s_positions(tmp_path):
    # executorlib: (max_workers, cache_directory, max_cores, resource_dict, pysqa_config_directory, pmi_mode, ...)
    exe = SlurmClusterExecutor(None, str(tmp_path), None, None, None, "pmi2", export_workflow_filename=str(tmp_path / "w.json"))
    assert exe.info["pmi_mode"] == "pmi2"
    exe.shutdown()


def test_log_obj_size_logs_each_job_s_bytes(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hpcfutures"):
        with TestClusterExecutor(cache_directory=str(tmp_path), log_obj_size=True) as exe:
            assert exe.submit(funcs.add, 1, 2).result(timeout=60) == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "hpcfutures"]
    assert any("input of" in m for m in messages) and any("output of" in m for m in messages), messages


def test_log_obj_size_logs_serial_fresh_tasks_too(caplog):
    with caplog.at_level(logging.INFO, logger="hpcfutures"):
        with SingleNodeExecutor(max_workers=1, log_obj_size=True) as exe:
            assert exe.submit(funcs.add, 1, 2).result(timeout=60) == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "hpcfutures"]
    assert any(m.startswith("sending") for m in messages) and any(m.startswith("received") for m in messages), messages


def test_test_cluster_executor_honours_openmpi_oversubscribe(tmp_path):
    exe = TestClusterExecutor(cache_directory=str(tmp_path), openmpi_oversubscribe=True)
    assert exe.info["resource_dict"]["openmpi_oversubscribe"] is True  # what its mpiexec is built from
    exe.shutdown()


@pytest.mark.slurm
def test_block_allocation_is_a_slurm_cluster_executor_that_honours_wait(tmp_path):
    release = str(tmp_path / "release")
    with SlurmClusterExecutor(block_allocation=True, wait=False) as exe:
        assert isinstance(exe, SlurmClusterExecutor)
        assert exe.info["wait"] is False and exe.max_workers == 1
        held = exe.submit(funcs_dropin.wait_for_file, release)
    assert not held.done()  # leaving the block did not wait (the call waits for the file)
    open(release, "w").close()
    assert held.result(timeout=120) == "released"
    assert exe.info is None


# -- exceptions -------------------------------------------------------------------------
def test_every_exception_is_importable_and_pool_broken_is_a_broken_executor():
    import hpcfutures
    import hpcfutures.api

    names = [
        "WorkerCrashedError",
        "PoolBrokenError",
        "UnsatisfiableRequestError",
        "MPIWorldError",
        "QueueError",
        "CacheEntryError",
        "RemoteTraceback",
        "AuthenticationError",
    ]
    for name in names:
        assert getattr(hpcfutures, name) is getattr(hpcfutures.api, name), name
        assert name in hpcfutures.__all__ and name in hpcfutures.api.__all__
    assert issubclass(hpcfutures.PoolBrokenError, cf.BrokenExecutor)
    assert issubclass(hpcfutures.PoolBrokenError, WorkerCrashedError)


# -- cancelled futures wake wait() and as_completed() at once -----------------------------
def _cancel_and_wait(future: Future) -> None:
    assert future.cancel() is True
    assert future.done()
    done, _ = cf.wait([future], timeout=20)  # a cancelled future is done for wait() at once
    assert future in done
    assert list(cf.as_completed([future], timeout=20)) == [future]


@pytest.mark.parametrize("block_allocation", [False, True])
def test_a_cancelled_queued_future_is_done_for_wait_and_as_completed(tmp_path, block_allocation, caplog):
    release = str(tmp_path / "release")
    # concurrent.futures logs CRITICAL "Future ... in unexpected state" when an already
    # notified future is claimed again; logging's last resort would print it on stderr
    caplog.set_level(logging.DEBUG, logger="concurrent.futures")
    with SingleNodeExecutor(max_workers=1, block_allocation=block_allocation) as exe:
        running = exe.submit(funcs_dropin.wait_for_file, release)
        sent_ahead = exe.submit(funcs_dropin.double, 1)  # warm: may already sit in the busy worker
        queued = exe.submit(funcs_dropin.double, 2)
        held = exe.submit(funcs_dropin.double, running)  # waits for its argument
        try:
            _cancel_and_wait(queued)
            _cancel_and_wait(held)
        finally:
            open(release, "w").close()
        assert running.result(timeout=60) == "released"
        assert sent_ahead.cancelled() or sent_ahead.result(timeout=60) == 2
    assert queued.cancelled() and held.cancelled()
    assert [r.getMessage() for r in caplog.records if r.name == "concurrent.futures"] == []


def test_shutdown_cancelling_queued_futures_logs_nothing_from_concurrent_futures(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="concurrent.futures")
    release = str(tmp_path / "release")
    exe = SingleNodeExecutor(max_workers=1)
    running = exe.submit(funcs_dropin.wait_for_file, release)
    dropped = exe.submit(funcs_dropin.double, 1)
    queued = exe.submit(funcs_dropin.double, 2)
    try:
        assert dropped.cancel()
        assert wait_until(lambda: running.running(), timeout=60)
    finally:
        exe.shutdown(cancel_futures=True)  # cancels `queued`, stops `running`
        open(release, "w").close()
    assert dropped.cancelled() and queued.cancelled()
    assert isinstance(running.exception(timeout=60), cf.CancelledError)
    assert [r.getMessage() for r in caplog.records if r.name == "concurrent.futures"] == []


def test_a_cancelled_big_task_does_not_hold_up_the_smaller_ones_behind_it(tmp_path):
    release = str(tmp_path / "release")
    with SingleNodeExecutor(max_cores=2) as exe:
        running = exe.submit(funcs_dropin.wait_for_file, release)  # 1 of the 2 cores
        big = exe.submit(funcs_dropin.double, 1, resource_dict={"threads_per_core": 2})  # waits for 2 cores
        assert big.cancel()
        try:
            small = exe.submit(funcs_dropin.double, 3)  # fits the free core: runs now, not after `running`
            assert small.result(timeout=60) == 6
            assert not running.done()
        finally:
            open(release, "w").close()
        assert running.result(timeout=60) == "released"


def test_a_cancelled_derived_future_is_done_for_wait():
    from hpcfutures import get_item_from_future, split_future

    source: Future = Future()  # never finishes
    _cancel_and_wait(get_item_from_future(source, 0))
    _cancel_and_wait(split_future(source, 2)[1])
    later = get_item_from_future(source, "k")
    source.set_result({"k": 5})
    assert later.result(timeout=5) == 5


# -- wait=False: the interpreter leaves at once, the jobs run on -----------------------------
def _driver_leaves(tmp_path, executor: str, how: str) -> str:
    cache, release = str(tmp_path / "cache"), str(tmp_path / "release")
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import funcs_dropin
            from hpcfutures import SlurmClusterExecutor
            from hpcfutures.api import TestClusterExecutor
            exe = {executor}(cache_directory={cache!r}, wait=False)
            exe.submit(funcs_dropin.wait_for_file, {release!r}, 150)
            if {how!r} == "shutdown":
                exe.shutdown(wait=False)
            print("left")
            """
        )
    )
    # the job waits for a file only this test creates, after the driver has left: a driver
    # that waited for its job would never exit (the timeout here is the failure, not a measure)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "left"
    assert not os.path.exists(release)
    open(release, "w").close()
    # the job ran on without its driver: its entry gets the result
    assert wait_until(lambda: [d.get("status") for d in get_cache_data(cache)] == ["ok"], 120)
    return cache


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["shutdown", "no shutdown"])
def test_wait_false_lets_the_interpreter_exit_while_the_job_runs_on(tmp_path, how):
    _driver_leaves(tmp_path, "TestClusterExecutor", how)


@pytest.mark.slurm
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["shutdown", "no shutdown"])
def test_wait_false_lets_the_interpreter_exit_while_the_batch_job_runs_on(tmp_path, how):
    _driver_leaves(tmp_path, "SlurmClusterExecutor", how)


@pytest.mark.timeout(240)
def test_wait_false_exit_still_submits_the_calls_held_for_their_arguments(tmp_path):
    cache = str(tmp_path / "cache")
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import funcs, funcs_dropin
            from hpcfutures.api import TestClusterExecutor
            exe = TestClusterExecutor(cache_directory={cache!r}, wait=False)
            first = exe.submit(funcs.sleep_then, 0.5, 21)
            exe.submit(funcs_dropin.double, first)  # local jobs have no afterok: held in this process
            print("left")
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    # the held call became a job before the interpreter left, and that job ran on
    assert wait_until(lambda: sorted(d.get("status") for d in get_cache_data(cache)) == ["ok", "ok"], 120)
    assert sorted(d.get("output") for d in get_cache_data(cache)) == [21, 42]


# -- a job that ends without a result says where its log is and what it says ----------------
def _assert_names_log(exc: BaseException) -> None:
    text = str(exc)
    assert "without writing a result" in text
    assert ".log" in text and "the last words of the job" in text, text


def test_a_local_job_without_result_names_its_log_and_tail(tmp_path):
    with TestClusterExecutor(cache_directory=str(tmp_path)) as exe:
        future = exe.submit(funcs_dropin.print_then_die, "the last words of the job")
        with pytest.raises(WorkerCrashedError, match="ended in state FAILED") as info:
            future.result(timeout=60)
    _assert_names_log(info.value)
    log = str(info.value).split("log file ", 1)[1].split(":\n", 1)[0]
    assert os.path.isfile(log)


@pytest.mark.slurm
def test_a_batch_job_without_result_names_its_log_and_tail(tmp_path):
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        future = exe.submit(funcs_dropin.print_then_die, "the last words of the job")
        with pytest.raises(WorkerCrashedError, match="ended in state") as info:
            future.result(timeout=120)
    _assert_names_log(info.value)
