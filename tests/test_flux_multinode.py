"""Several nodes on one machine: inside ``flux start --test-size=2`` (two brokers acting
as two nodes; ``bash scripts/flux.sh run -s 2 -- python -m pytest -m flux_multinode``)."""

import pytest

import funcs_flux
from test_flux import active_jobs
from conftest import wait_until

pytestmark = [pytest.mark.flux_multinode, pytest.mark.timeout(180)]


@pytest.fixture
def no_jobs_left():
    assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs of an earlier test still run: {active_jobs()}"
    yield
    assert wait_until(lambda: not active_jobs(), timeout=30), f"jobs left after shutdown: {active_jobs()}"


@pytest.mark.mpi
@pytest.mark.parametrize("block_allocation", [False, True])
def test_mpi_task_spans_both_brokers(block_allocation, no_jobs_left):
    from hpcfutures.executors.flux_job import FluxJobExecutor

    resources = {"cores": 2, "num_nodes": 2}
    with FluxJobExecutor(resource_dict=resources, block_allocation=block_allocation, max_workers=1) as exe:
        ranks = exe.submit(funcs_flux.rank_broker, 0).result(timeout=120)
    assert [r[:2] for r in ranks] == [(0, 2), (1, 2)], ranks
    assert len({r[2] for r in ranks}) == 2, f"both ranks ran under the same broker: {ranks}"


def test_default_link_across_nodes_is_tcp():
    from hpcfutures.executors.flux_job import FluxJobExecutor

    with FluxJobExecutor() as exe:
        assert exe.info["hostname_localhost"] is False


def test_warm_workers_on_the_second_broker_reach_the_driver_over_tcp(tmp_path, no_jobs_left):
    """Two warm workers that each fill a node: one runs under the second broker and talks
    to the driver over the authenticated TCP wire. Two calls that wait for each other must
    run on different workers at once."""
    from hpcfutures.executors.flux_job import FluxJobExecutor
    from hpcfutures.launch.flux import instance_resources

    per_node = instance_resources()["cores"] // instance_resources()["nodes"]
    with FluxJobExecutor(
        block_allocation=True,
        max_workers=2,
        hostname_localhost=False,
        resource_dict={"threads_per_core": per_node, "exclusive": True},
    ) as exe:
        assert exe.info["hostname_localhost"] is False
        futures = [exe.submit(funcs_flux.meet_then_broker, str(tmp_path), 2) for _ in range(2)]
        uris = {f.result(timeout=120) for f in futures}
    assert len(uris) == 2, f"the warm workers all ran under one broker: {uris}"


def test_serial_tasks_on_both_brokers(no_jobs_left):
    from hpcfutures.executors.flux_job import FluxJobExecutor
    from hpcfutures.launch.flux import instance_resources

    per_node = instance_resources()["cores"] // instance_resources()["nodes"]
    with FluxJobExecutor(resource_dict={"threads_per_core": per_node}) as exe:
        uris = {f.result(timeout=120) for f in [exe.submit(funcs_flux.broker, i) for i in range(4)]}
    assert len(uris) == 2, uris


@pytest.mark.parametrize("block_allocation", [False, True])
def test_a_request_flux_can_never_place_fails_with_the_reason(block_allocation, no_jobs_left):
    """More cores per task than one node has passes the instance-wide check; Flux's own
    refusal (alloc: unsatisfiable) ends the future, never a wait."""
    from hpcfutures import UnsatisfiableRequestError
    from hpcfutures.executors.flux_job import FluxJobExecutor
    from hpcfutures.launch.flux import instance_resources

    per_node = instance_resources()["cores"] // instance_resources()["nodes"]
    with FluxJobExecutor(block_allocation=block_allocation, max_workers=1,
                         resource_dict={"threads_per_core": per_node + 1, "num_nodes": 1}) as exe:
        future = exe.submit(funcs_flux.broker)
        with pytest.raises(Exception, match="unsatisfiable") as info:
            future.result(timeout=60)
    cause = info.value if isinstance(info.value, UnsatisfiableRequestError) else info.value.__cause__
    assert isinstance(cause, UnsatisfiableRequestError), info.value


def test_a_crash_on_either_node_carries_its_stderr(no_jobs_left):
    """Across nodes Flux keeps the output (another node's /tmp is not ours): the error of a
    job that died on either broker still ends with its stderr."""
    from hpcfutures import WorkerCrashedError
    from hpcfutures.executors.flux_job import FluxJobExecutor
    from hpcfutures.launch.flux import instance_resources

    per_node = instance_resources()["cores"] // instance_resources()["nodes"]
    with FluxJobExecutor(resource_dict={"threads_per_core": per_node}) as exe:
        futures = [exe.submit(funcs_flux.say_then_exit, f"last words {i}", 3) for i in range(2)]
        errors = []
        for i, f in enumerate(futures):
            with pytest.raises(WorkerCrashedError, match=f"(?s)exited with code 3.*last words {i}") as info:
                f.result(timeout=120)
            errors.append(str(info.value))
    brokers = {e.rsplit("under ", 1)[1].split()[0] for e in errors}
    assert len(brokers) == 2, errors


@pytest.mark.mpi
def test_a_failing_rank_on_the_other_node_ends_the_call_with_its_error(no_jobs_left):
    """Rank 1 (on the second broker) fails while rank 0 waits in a barrier: its report comes
    back through the output Flux kept, and the call ends with rank 1's exception."""
    import funcs
    from hpcfutures.executors.flux_job import FluxJobExecutor

    with FluxJobExecutor(resource_dict={"cores": 2, "num_nodes": 2}) as exe:
        with pytest.raises(ValueError, match="rank 1 failed on 5"):
            exe.submit(funcs.mpi_fail_then_others_wait, 1, 5).result(timeout=120)
