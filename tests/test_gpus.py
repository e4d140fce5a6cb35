"""GPU assignment: each worker or task sees its own devices through CUDA_VISIBLE_DEVICES.
The driver's environment declares the devices, as an allocation or a user would."""

import pytest

import funcs
from hpcfutures import SingleNodeExecutor


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")


def test_four_single_gpu_warm_workers_see_different_devices(four_gpus, tmp_path):
    with SingleNodeExecutor(max_workers=4, block_allocation=True, resource_dict={"gpus_per_core": 1}) as exe:
        # a barrier of four: all four workers hold a call at once (no more calls than
        # workers: a backlog would let the pool send a second call ahead to a busy worker)
        futures = [exe.submit(funcs.devices_at_barrier, str(tmp_path / "meet"), 4, 40) for _ in range(4)]
        results = [f.result(timeout=60) for f in futures]
        results += [exe.submit(funcs.pid_and_devices, 0).result(timeout=60) for _ in range(4)]  # and later calls
        by_worker = {}
        for pid, devices in results:
            by_worker.setdefault(pid, set()).add(devices)
    assert len(by_worker) == 4
    # every worker always saw exactly one device, and no two workers shared one
    assert all(len(d) == 1 for d in by_worker.values())
    assert sorted(next(iter(d)) for d in by_worker.values()) == ["0", "1", "2", "3"]


def test_two_gpu_workers_get_disjoint_pairs(four_gpus, tmp_path):
    with SingleNodeExecutor(max_workers=2, block_allocation=True, resource_dict={"cores": 1, "gpus_per_core": 2}) as exe:
        # both workers hold a call at once (a barrier of two): each reports its own pair
        futures = [exe.submit(funcs.devices_at_barrier, str(tmp_path / "meet"), 2, 40) for _ in range(2)]
        pairs = [f.result(timeout=60) for f in futures]
    assert len({pid for pid, _ in pairs}) == 2
    devices = [set(d.split(",")) for _, d in pairs]
    assert all(len(d) == 2 for d in devices) and not devices[0] & devices[1]  # disjoint, not just a subset
    assert devices[0] | devices[1] == {"0", "1", "2", "3"}


def test_fresh_tasks_get_free_devices_and_give_them_back(four_gpus):
    with SingleNodeExecutor(max_workers=4, resource_dict={"gpus_per_core": 1}) as exe:
        futures = [exe.submit(funcs.visible_devices, 0.5) for _ in range(8)]
        seen = [f.result(timeout=60) for f in futures]
        two = exe.submit(funcs.visible_devices, resource_dict={"gpus_per_core": 2}).result(timeout=60)
        none = exe.submit(funcs.visible_devices, resource_dict={"gpus_per_core": 0}).result(timeout=60)
    assert set(seen) <= {"0", "1", "2", "3"} and len(set(seen)) >= 2
    assert len(two.split(",")) == 2
    assert none == "0,1,2,3"  # a task without GPUs is not restricted


def test_more_gpus_than_exist_is_a_clear_error(four_gpus):
    with pytest.raises(ValueError, match="5 GPU.*only 4"):
        SingleNodeExecutor(max_workers=5, block_allocation=True, resource_dict={"gpus_per_core": 1})
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(ValueError, match="8 GPU.*only 4"):
            exe.submit(funcs.add, 1, resource_dict={"gpus_per_core": 8})
        with pytest.raises(ValueError, match="whole number"):
            exe.submit(funcs.add, 1, resource_dict={"gpus_per_core": 0.5})


def test_no_gpus_visible(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match="only 0 are visible"):
        SingleNodeExecutor(max_workers=1, resource_dict={"gpus_per_core": 1})


@pytest.mark.timeout(60)
def test_engine_never_waits_for_devices_that_do_not_exist():
    """The fresh-process engine: a task needing more GPUs than the pool holds is refused
    with the reason instead of waiting at the head of the queue for ever (submit() checks
    this first; the engine must not hang if a request gets past it), and the tasks behind
    it run. An engine given no pool (srun binds GPUs under SLURM) does not count GPUs."""
    from concurrent.futures import Future

    from hpcfutures.engines.one_process import OneProcessPerTask
    from hpcfutures.scheduling.task import Task
    from hpcfutures.wire.frames import new_key

    def task(fn, *args, gpus):
        t = Task(Future(), fn, args, {}, {"cores": 1, "gpus_per_core": gpus})
        t.payload = t.pickle()
        return t

    engine = OneProcessPerTask(new_key(), max_cores=None, max_running=2)
    engine.provide_gpus(["0"])
    big, small = task(abs, -1, gpus=2), task(abs, -2, gpus=1)
    engine.enqueue(big)
    engine.enqueue(small)
    with pytest.raises(ValueError, match="2 GPU"):
        big.future.result(timeout=30)
    assert small.future.result(timeout=30) == 2
    engine.stop(wait=True)

    uncounted = OneProcessPerTask(new_key(), max_cores=None, max_running=1)
    one = task(funcs.visible_devices, gpus=1)
    uncounted.enqueue(one)
    assert one.future.result(timeout=30) == funcs.visible_devices()  # the driver's setting, untouched
    uncounted.stop(wait=True)
