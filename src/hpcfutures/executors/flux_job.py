"""``FluxJobExecutor``: inside a Flux instance, every task (or warm worker) is a Flux job.
Everything else — dependencies, cache, retries, warm pools — is ``SingleNodeExecutor``'s;
only the launcher (``launch.flux``) and the limits differ."""

from __future__ import annotations

from hpcfutures.executors.single_node import _WORKER_KEYS, SingleNodeExecutor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

_NOT_UNDER_FLUX = {
    "slurm_cmd_args": (lambda v: not v, "srun arguments need SlurmJobExecutor"),
    "submission_template": (lambda v: v is None, "submission templates are for the Cluster executors"),
    "gpus_per_core": (lambda v: v == int(v), "a Flux jobspec counts whole GPUs per rank"),
    "priority": (
        lambda v: v is None or (isinstance(v, int) and 0 <= v <= 31),
        "under Flux the priority is the job's urgency, a whole number from 0 to 31 (default 16)",
    ),
}


def _one_node_instance() -> bool:
    """A one-broker instance runs every job on this machine: a Unix socket serves."""
    from hpcfutures.launch.flux import instance_resources

    return instance_resources()["size"] == 1


class FluxJobExecutor(SingleNodeExecutor):
    """Run each call as a job of the enclosing Flux instance (``flux start``, ``flux alloc``,
    or a Flux started inside a SLURM allocation), submitted through ``flux.job.FluxExecutor``.

    The jobspec comes from the call's ``resource_dict``: ``cores`` -> tasks (MPI ranks),
    ``threads_per_core`` -> cores per task, ``gpus_per_core`` -> GPUs per task, ``num_nodes``,
    ``exclusive``, ``cwd``, ``run_time_max`` -> the job's duration (fresh mode; in block
    allocation it limits each call), ``priority`` -> urgency (0..31). A job that Flux kills,
    that exceeds its duration or that is cancelled from outside (``flux cancel``) fails its
    future at once, with the job's exception and the tail of its stderr.
    Without ``max_cores``/``max_workers`` the budget is the instance's cores.

    Args:
        max_workers: calls running at once (fresh jobs), or the number of warm workers
            (``block_allocation=True``; default: cores // cores per worker).
        cache_directory: store every result there and answer repeated calls from it.
        max_cores: cores that running calls may occupy together (``cores x threads_per_core``
            per call); default: the instance's cores.
        resource_dict: default resources of every call; a call's own is merged over it.
        flux_executor: a ``flux.job.FluxExecutor`` of the caller's to submit through (it is
            left running at shutdown); None: one of our own.
        pmi_mode: the flux shell's ``pmi`` option (``pmix``, ``simple``, ``pmi2``, ...); None:
            ``pmix`` for MPI jobs when mpi4py loads Open MPI, Flux's default otherwise.
        flux_executor_nesting: each job runs its ranks inside a nested Flux instance of its
            own (``flux run`` inside it), so a task may submit jobs of its own.
        flux_log_files: keep each job's stdout and stderr as ``flux-<jobid>.out``/``.err`` in
            the job's working directory (otherwise they are shown on this process's streams).
        hostname_localhost: ``True``: workers connect over this machine's Unix socket;
            ``False``: over authenticated TCP (workers on other nodes); ``None``: a Unix socket
            in a one-broker instance, TCP otherwise.
        block_allocation: ``True`` starts warm workers (one job each) once.
        init_function: (warm workers only) runs once per worker, returns a dict of arguments.
        disable_dependencies: ``True`` refuses futures as arguments (``TypeError``).
        refresh_rate: accepted for executorlib compatibility; nothing polls (seconds).
        plot_dependency_graph: record the calls instead of running them, draw their graph.
        plot_dependency_graph_filename: graph-only mode, writing the picture to this file.
        export_workflow_filename: graph-only mode, writing a Python Workflow Definition JSON.
        log_obj_size: log the size of each message sent to and from workers (bytes).
        wait: must be True (the jobs belong to this session).
        restart_limit: how often a warm worker that died is restarted before it is given up.
        openmpi_oversubscribe: accepted for compatibility; Flux places ranks on its own cores.

    Raises:
        ImportError: no Flux Python bindings (or ``cores > 1`` without mpi4py).
        RuntimeError: not inside a Flux instance (``FLUX_URI`` unset).
        ValueError: an unknown ``pmi_mode``, a count below 1, an unknown ``resource_dict`` key
            or one this executor cannot honour (with the reason), a warm pool larger than the
            instance.
        UnsatisfiableRequestError: (construction and ``submit()``) more cores, GPUs or nodes
            than the instance has.
        TypeError: ``flux_executor`` is not a FluxExecutor; a ``resource_dict`` value of the
            wrong type.
    """

    _refused = _NOT_UNDER_FLUX
    _assigns_gpus = False  # Flux binds the job's GPUs itself
    # a warm worker is one job: its nodes and exclusivity are fixed when it starts
    _worker_keys = (*_WORKER_KEYS, "num_nodes", "exclusive", "priority")

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
        flux_executor=None,
        pmi_mode: str | None = None,
        flux_executor_nesting: bool = False,
        flux_log_files: bool = False,
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
        from hpcfutures.launch.flux import FluxLauncher

        graph_only = bool(plot_dependency_graph or plot_dependency_graph_filename or export_workflow_filename)
        # made before the base class asks for it: the arguments are checked first
        self._flux_launcher = FluxLauncher(flux_executor, pmi_mode, flux_executor_nesting, flux_log_files)
        if hostname_localhost is None and not graph_only:
            hostname_localhost = _one_node_instance()
        super().__init__(
            max_workers=max_workers,
            cache_directory=cache_directory,
            max_cores=max_cores,
            resource_dict=resource_dict,
            hostname_localhost=hostname_localhost,
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
        self._info.update(
            pmi_mode=pmi_mode,
            flux_executor=flux_executor,
            flux_executor_nesting=bool(flux_executor_nesting),
            flux_log_files=bool(flux_log_files),
        )

    def _make_launcher(self):
        return self._flux_launcher

    def _default_cores(self) -> int | None:
        from hpcfutures.launch.flux import instance_resources

        return instance_resources()["cores"]

    def _check_warm_pool(self, n_workers: int, resources: dict) -> None:
        available = self._default_cores()
        needed = n_workers * resources.get("cores", 1) * resources.get("threads_per_core", 1)
        if needed > available:
            raise ValueError(
                f"{n_workers} warm workers x {resources.get('cores', 1)} cores x {resources.get('threads_per_core', 1)} "
                f"threads need {needed} cores, but this Flux instance has {available}; lower max_workers or start "
                "Flux on more resources"
            )

    def _drain_and_stop(self) -> None:
        try:
            super()._drain_and_stop()
        finally:
            self._flux_launcher.close()  # our FluxExecutor's thread; every job has ended
