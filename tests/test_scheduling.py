"""Pure scheduling state: resource validation, the core budget, dependency helpers."""

import threading
from concurrent.futures import Future

import pytest

from hpcfutures.scheduling.budget import CoreBudget
from hpcfutures.scheduling.dependencies import find_futures, propagate, substitute, when_all_done
from hpcfutures.scheduling.resources import LONGEST_WAIT, check_seconds, merge, validate

pytestmark = pytest.mark.timeout(20)


def test_validate_accepts_known_keys_and_copies():
    d = {"cores": 2, "threads_per_core": 1, "cwd": "/tmp", "run_time_max": 1.5}
    out = validate(d, "here")
    assert out == d and out is not d


@pytest.mark.parametrize(
    "bad, exc, text",
    [
        ({"core": 2}, ValueError, "unknown resource_dict key"),
        ({"cores": "2"}, TypeError, "cores"),
        ({"cores": 0}, ValueError, "cores"),
        ({"cores": True}, TypeError, "cores"),
        ({"threads_per_core": 1.5}, TypeError, "threads_per_core"),
        ({"run_time_max": -1}, ValueError, "run_time_max"),
        ({"slurm_cmd_args": ["-x", 3]}, TypeError, "slurm_cmd_args"),
        ([("cores", 1)], TypeError, "must be a dict"),
    ],
)
def test_validate_rejects(bad, exc, text):
    with pytest.raises(exc, match=text):
        validate(bad, "submit()")


# numbers no backend can render: NaN passes a "< 0" check, infinity and 1e300 overflow the
# timers (select, zmq, threading) and srun's --time; an int too large for a float must not
# slip through a float conversion either
NOT_RENDERABLE = [float("nan"), float("inf"), -float("inf"), 1e300, 10**400]


@pytest.mark.parametrize("value", NOT_RENDERABLE + [0, -1, LONGEST_WAIT + 1])
def test_run_time_max_must_be_finite_and_in_range(value):
    with pytest.raises(ValueError, match=r"resource_dict\['run_time_max'\] must be a finite number of seconds > 0 and <= 3153600000.*got"):
        validate({"run_time_max": value}, "submit()")


@pytest.mark.parametrize("value", NOT_RENDERABLE + [-1, 65537])
def test_gpus_per_core_must_be_finite_and_in_range(value):
    with pytest.raises(ValueError, match=r"resource_dict\['gpus_per_core'\] must be a finite number >= 0 and <= 65536"):
        validate({"gpus_per_core": value}, "submit()")


def test_edges_of_the_number_ranges_are_accepted():
    ok = {"run_time_max": LONGEST_WAIT, "gpus_per_core": 0}
    assert validate(ok, "here") == ok
    assert validate({"run_time_max": 1e-3, "gpus_per_core": 65536}, "here")["run_time_max"] == 1e-3


@pytest.mark.parametrize("value", NOT_RENDERABLE + [0, -2])
def test_memory_max_for_the_queue_must_be_finite_gb(value):
    with pytest.raises(ValueError, match=r"resource_dict\['memory_max'\] must be a finite number of GB > 0"):
        validate({"memory_max": value}, "submit()", pass_unknown=True)


def test_queue_keys_are_type_checked_and_others_passed_on():
    with pytest.raises(TypeError, match=r"resource_dict\['partition'\] must be a str, got \['a'\]"):
        validate({"partition": ["a"]}, "submit()", pass_unknown=True)
    with pytest.warns(UserWarning, match=r"\['custom'\] are not hpcfutures keys"):  # only the key nothing knows
        out = validate({"memory_max": 1.5, "partition": "short", "custom": object}, "submit()", pass_unknown=True)
    assert out["memory_max"] == 1.5 and out["custom"] is object


def test_cwd_that_can_never_be_a_directory_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match=r"resource_dict\['cwd'\]=.*file'.* exists and is not a directory"):
        validate({"cwd": str(a_file)}, "submit()")
    with pytest.raises(ValueError, match=r"resource_dict\['cwd'\]=.*cannot be created: .*file' is not a directory"):
        validate({"cwd": a_file / "below" / "it"}, "submit()")
    with pytest.raises(ValueError, match=r"resource_dict\['cwd'\] is empty"):
        validate({"cwd": ""}, "submit()")
    missing = tmp_path / "not" / "made" / "yet"
    assert validate({"cwd": missing}, "submit()") == {"cwd": missing}  # created when the call starts
    assert not missing.exists()  # checking creates nothing


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300, -1])
def test_check_seconds_refuses_what_no_timer_holds(value):
    with pytest.raises(ValueError, match=r"refresh_rate must be a finite number of seconds >= 0.*got"):
        check_seconds(value, "refresh_rate")


def test_check_seconds_types_and_none():
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
        check_seconds("1", "timeout", none_ok=True)
    with pytest.raises(TypeError):
        check_seconds(True, "refresh_rate")
    with pytest.raises(TypeError):
        check_seconds(None, "refresh_rate")
    assert check_seconds(None, "timeout", none_ok=True) is None
    assert check_seconds(-5, "timeout", lowest=None, none_ok=True) == -5  # already over, as in concurrent.futures
    with pytest.raises(ValueError, match="None: no limit"):
        check_seconds(float("-inf"), "timeout", lowest=None, none_ok=True)


def test_merge_task_wins():
    assert merge({"cores": 1, "cwd": None}, {"cores": 2}) == {"cores": 2, "cwd": None}


def test_budget_fifo_limits():
    b = CoreBudget(max_cores=4, max_running=3)
    assert b.fits(8)  # nothing running: even an oversized task may start, alone
    b.take(2)
    assert b.fits(2) and not b.fits(3)
    b.take(2)
    assert not b.fits(1)
    b.give(2)
    assert b.fits(1)
    b.take(1)
    b.take(0)
    assert not b.fits(0)  # max_running reached
    counted_only = CoreBudget(max_cores=None, max_running=2)
    counted_only.take(64)
    assert counted_only.fits(64)
    counted_only.take(64)
    assert not counted_only.fits(1)


def test_find_and_substitute_nested():
    f1, f2 = Future(), Future()
    args = (1, [f1, {"x": (f2,)}], {"k": 3})
    assert find_futures(args) == [f1, f2]
    f1.set_result("a")
    f2.set_result("b")
    assert substitute(args) == (1, ["a", {"x": ("b",)}], {"k": 3})


def test_when_all_done_ready_once():
    futures = [Future() for _ in range(3)]
    calls = []
    when_all_done(futures, lambda: calls.append("ready"), lambda f: calls.append("failed"))
    for f in futures:
        assert calls == []
        f.set_result(1)
    assert calls == ["ready"]


def test_when_all_done_failure_first_wins():
    futures = [Future() for _ in range(3)]
    calls = []
    when_all_done(futures, lambda: calls.append("ready"), lambda f: calls.append(f))
    futures[1].set_exception(KeyError("x"))
    futures[0].set_result(1)
    futures[2].cancel()
    assert calls == [futures[1]]


def test_propagate_exception_and_cancel():
    up, down = Future(), Future()
    up.set_exception(ValueError("up"))
    propagate(up, down)
    with pytest.raises(ValueError, match="up"):
        down.result(timeout=1)
    up2, down2 = Future(), Future()
    up2.cancel()
    propagate(up2, down2)
    assert down2.cancelled()


def test_when_all_done_threadsafe():
    futures = [Future() for _ in range(200)]
    hits = []
    when_all_done(futures, lambda: hits.append(1), lambda f: hits.append(0))
    threads = [threading.Thread(target=f.set_result, args=(1,)) for f in futures]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hits == [1]


@pytest.mark.parametrize(
    "key, value",
    [("cores", 2**31), ("threads_per_core", 2**63), ("num_nodes", 2**31), ("priority", -(2**63)), ("priority", 2**31)],
)
def test_counts_no_launcher_can_hold_are_refused(key, value):
    """srun, sbatch and mpiexec count ranks in 32 bits: 2**31 wrapped to a negative "number of
    tasks" in the future; --nice takes +-2147483645. Refused where given, naming the range."""
    with pytest.raises(ValueError, match=rf"resource_dict\['{key}'\] must be an int "):
        validate({key: value}, "submit()")
    edge = {"cores": 2**24, "threads_per_core": 2**24, "num_nodes": 2**24, "priority": 2147483645}[key]
    assert validate({key: edge if value > 0 else -edge}, "submit()")[key] == (edge if value > 0 else -edge)
