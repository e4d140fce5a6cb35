"""``FluxClusterExecutor``: every call one Flux batch job, through the cache directory, as
``SlurmClusterExecutor`` does with ``sbatch`` (``executors.cluster_jobs``: waiting, reconnecting
with ``wait=False``, dependencies bound by job id, graph-only mode). Its queue is
``batch.flux_queue.FluxQueue``; the keys it honours are the ``flux_batch`` column of
``scheduling.honoured``."""

from __future__ import annotations

from hpcfutures.executors.base import graph_mode
from hpcfutures.executors.cluster_jobs import _FileJobExecutor, _refused
from hpcfutures.scheduling.honoured import FLUX_BATCH
from hpcfutures.scheduling.render import flux_urgency
from hpcfutures.scheduling.resources import Resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class FluxClusterExecutor(_FileJobExecutor):
    """Submit every call as its own Flux batch job (a nested instance of the call's size,
    as ``flux batch`` makes), from inside a Flux instance (``flux start``, ``flux alloc``, a
    system instance). A call whose arguments are futures of this executor is submitted at
    once with a Flux ``afterok`` dependency. One ``job-list`` query per interval covers all
    jobs; a job that ends without a result (failed, cancelled with ``flux cancel``, over its
    ``run_time_max``) fails its future with its final state and the tail of its log.

    Args:
        max_workers, max_cores: refused: every call is its own job and Flux decides how many
            run at once.
        cache_directory: where each call's entry (input, output, job id, log) lives; on a file
            system every node sees. Default ``hpcfutures_cache``.
        resource_dict: defaults for every call (``cores`` = MPI ranks, ``threads_per_core`` =
            cores per rank, ``gpus_per_core``, ``num_nodes``, ``exclusive``, ``run_time_max``
            in seconds -> duration, ``priority`` -> urgency, as executorlib passes it
            (1..31; 0 and other values refused at ``submit()``), ``queue`` -> Flux queue).
        pysqa_config_directory: submit through pysqa's queue adapter configured there (a
            ``queue_type: FLUX`` configuration) instead of the Python API.
        pmi_mode: the flux shell's ``pmi`` option for MPI calls; None: ``pmix`` for Open MPI,
            Flux's default for MPICH.
        hostname_localhost: refused (jobs talk through files).
        block_allocation, init_function: refused: warm workers are ``FluxJobExecutor``'s.
        disable_dependencies: refuse futures as arguments.
        refresh_rate: seconds between looks at the cache entries (at least 0.05).
        plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename:
            graph-only mode: nothing is submitted (no Flux needed).
        log_obj_size: log the bytes of each job's input and output.
        wait: ``False``: exit does not wait for the jobs; they run on, and a later run with
            the same cache directory collects their results (``terminate_tasks_in_cache``
            cancels them: each entry records its queue). ``True``: the jobs belong to this
            driver; if it is killed, its guardian cancels them (``flux cancel``).
        openmpi_oversubscribe: only False (``ValueError``): Flux gives every rank a core of
            its own.

    Raises:
        ValueError: a parameter this executor cannot honour (the message says why), an
            unknown ``pmi_mode``.
        ImportError, RuntimeError: no Flux bindings, or not inside an instance.
        hpcfutures.batch.queues.QueueError: (from a future) Flux refused the job.
        hpcfutures.UnsatisfiableRequestError: (from ``submit()``) a call the instance can never
            run: more cores x threads, GPUs or nodes than it has.
        TimeoutError: (from a future) the job ran past ``run_time_max``.
    """

    _honoured_as = FLUX_BATCH  # its column of scheduling.honoured.HONOURED

    def _check_task_resources(self, task_resources: dict) -> dict:
        task_resources = super()._check_task_resources(task_resources)
        if task_resources and "priority" in task_resources:
            flux_urgency(Resources.of({"priority": task_resources["priority"]}))  # 1..31 at submit()
        return task_resources

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
        pysqa_config_directory: str | None = None,
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
        openmpi_oversubscribe: bool = False,
    ):
        from hpcfutures.launch.flux import check_pmi_mode

        check_pmi_mode(pmi_mode)

        def make_queue():
            if pysqa_config_directory:
                from hpcfutures.batch.queues import PysqaQueue

                return PysqaQueue(pysqa_config_directory)
            from hpcfutures.batch.flux_queue import FluxQueue

            return FluxQueue(pmi_mode)

        warm = "warm workers are FluxJobExecutor(block_allocation=True)'s; here every call is its own batch job"
        refused = _refused(type(self).__name__, max_workers, max_cores, hostname_localhost)
        refused.update(block_allocation=(block_allocation, False, warm), init_function=(init_function, None, warm))
        if isinstance(resource_dict, dict) and isinstance(resource_dict.get("priority"), int):
            flux_urgency(Resources.of({"priority": resource_dict["priority"]}))  # 1..31, never 0
        self._setup(
            make_queue,
            cache_directory,
            resource_dict,
            wait,
            disable_dependencies,
            refresh_rate,
            {"pysqa_config_directory": pysqa_config_directory, "pmi_mode": pmi_mode, "log_obj_size": log_obj_size,
             "openmpi_oversubscribe": bool(openmpi_oversubscribe)},
            refused,
            graph_mode(plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename),
            log_obj_size,
            openmpi_oversubscribe,
        )  # fmt: skip
