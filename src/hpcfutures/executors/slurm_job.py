"""``SlurmJobExecutor``: inside a SLURM allocation, every task (or warm worker) is an
``srun`` step. Everything else — dependencies, cache, retries, warm pools — is
``SingleNodeExecutor``'s; only the launcher and the limits differ."""

from __future__ import annotations

from hpcfutures.executors.single_node import SingleNodeExecutor
from hpcfutures.scheduling.honoured import SRUN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def _one_node_allocation() -> bool:
    """Inside a one-node allocation every step runs on this node: a Unix socket serves
    (no zmq, no TCP port); otherwise workers connect over TCP."""
    import os

    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_NNODES") == "1"


class SlurmJobExecutor(SingleNodeExecutor):
    """Run each call as an ``srun`` step of the current allocation (``cores`` -> ``--ntasks``,
    ``threads_per_core`` -> ``--cpus-per-task``, ``gpus_per_core`` -> ``--gpus-per-task``,
    ``num_nodes`` -> ``--nodes``, ``exclusive`` -> ``--exact``, ``run_time_max`` -> ``--time``,
    ``cwd`` -> ``--chdir``, ``pmi_mode`` -> ``--mpi``, plus ``slurm_cmd_args``). Workers reach the
    driver over TCP, or over a Unix socket inside a one-node allocation (``hostname_localhost``
    chooses explicitly).
    Without ``max_cores``/``max_workers`` the budget is the allocation's cores.

    Args:
        max_workers: calls running at once (fresh processes), or the number of warm workers
            (``block_allocation=True``; default: cores // cores per worker).
        cache_directory: store every result there and answer repeated calls from it (see
            ``get_cache_data``); ``None``: no cache.
        max_cores: cores that running calls may occupy together (``cores x
            threads_per_core`` per call); default: the allocation's cores (``SLURM_NTASKS x SLURM_CPUS_PER_TASK``).
        resource_dict: default resources of every call (``cores``, ``threads_per_core``,
            ``gpus_per_core``, ``cwd``, ``run_time_max`` in seconds, ``retries``, ...); a
            call's own ``resource_dict`` is merged over it.
        hostname_localhost: ``True``: workers connect over this machine's Unix socket;
            ``False``: over TCP (workers on other nodes); ``None``: a Unix socket inside a one-node allocation, TCP otherwise.
        block_allocation: ``True`` starts warm workers once and sends every call to them.
        init_function: (warm workers only) runs once per worker and returns a dict whose
            entries calls receive by parameter name.
        disable_dependencies: ``True`` refuses futures as arguments (``TypeError``).
        refresh_rate: accepted for executorlib compatibility; nothing polls (seconds).
        plot_dependency_graph: ``True`` records the calls instead of running them and draws
            their graph at shutdown (inline in Jupyter).
        plot_dependency_graph_filename: graph-only mode, writing the picture to this file
            (``.svg``, ``.dot``; ``.png``/``.pdf`` need matplotlib).
        export_workflow_filename: graph-only mode, writing a Python Workflow Definition JSON.
        log_obj_size: log the size of each message sent to and from workers (bytes).
        restart_limit: how often a warm worker that died is restarted before it is given up.
        openmpi_oversubscribe: let Open MPI place more ranks than cores.
        pmi_mode: ``srun --mpi=`` value (``pmix``, ``pmi2``, ...); ``None``: MPI steps get
            ``pmix`` for Open MPI and ``pmi2`` for MPICH, serial steps srun's default.

    Raises:
        ValueError: a count below 1, an unknown ``resource_dict`` key, a key this executor
            cannot honour (with the reason), a warm pool larger than the core budget.
        FileNotFoundError: no ``srun`` on ``PATH``.
        UnsatisfiableRequestError: (construction and ``submit()``) SLURM can never start the
            request: ``srun --test-only`` refuses it outside an allocation, or inside one it
            needs more CPUs or nodes than the allocation holds.
        TypeError: a ``resource_dict`` value of the wrong type, an ``init_function`` that is
            not callable.
    """

    # its column of scheduling.honoured.HONOURED: a warm worker is one srun step, so its
    # node count, exclusivity and extra srun flags are fixed when it starts, too
    _backend = SRUN
    _assigns_gpus = False  # srun --gpus-per-task binds devices itself

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
        pmi_mode: str | None = None,
        hostname_localhost: bool | None = None,
        block_allocation: bool = False,
        init_function: Callable | None = None,
        disable_dependencies: bool = False,
        refresh_rate: float = 0.01,
        plot_dependency_graph: bool = False,
        plot_dependency_graph_filename: str | None = None,
        export_workflow_filename: str | None = None,
        log_obj_size: bool = False,
        wait: bool = True,
        restart_limit: int = 0,
        openmpi_oversubscribe: bool = False,
    ):
        self._pmi_mode = pmi_mode
        super().__init__(
            max_workers=max_workers,
            cache_directory=cache_directory,
            max_cores=max_cores,
            resource_dict=resource_dict,
            hostname_localhost=_one_node_allocation() if hostname_localhost is None else hostname_localhost,
            block_allocation=block_allocation,
            init_function=init_function,
            disable_dependencies=disable_dependencies,
            refresh_rate=refresh_rate,
            plot_dependency_graph=plot_dependency_graph,
            plot_dependency_graph_filename=plot_dependency_graph_filename,
            export_workflow_filename=export_workflow_filename,
            log_obj_size=log_obj_size,
            wait=wait,
            restart_limit=restart_limit,
            openmpi_oversubscribe=openmpi_oversubscribe,
        )
        self._info["pmi_mode"] = pmi_mode

    def _make_launcher(self):
        from hpcfutures.launch.srun import SrunLauncher

        return SrunLauncher(self._pmi_mode)

    def _default_cores(self) -> int | None:
        from hpcfutures.launch.srun import allocation_cores

        return allocation_cores()

    def _check_warm_pool(self, n_workers: int, resources: dict) -> None:
        from hpcfutures.launch.srun import allocation_cores

        available = allocation_cores()
        needed = n_workers * resources.get("cores", 1) * resources.get("threads_per_core", 1)
        if available is not None and needed > available:
            raise ValueError(
                f"{n_workers} warm workers x {resources.get('cores', 1)} cores x {resources.get('threads_per_core', 1)} "
                f"threads need {needed} cores, but this allocation has {available} (SLURM_NTASKS x "
                "SLURM_CPUS_PER_TASK); lower max_workers or ask SLURM for more"
            )
