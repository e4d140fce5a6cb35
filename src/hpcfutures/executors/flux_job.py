"""``FluxJobExecutor``: inside a Flux instance, every task (or warm worker) is a Flux job.
Everything else — dependencies, cache, retries, warm pools — is the shared body
(``launched.LaunchedExecutor``); only the backend (``FLUX``) differs."""

from __future__ import annotations

from hpcfutures.executors.backends import FLUX
from hpcfutures.executors.launched import LaunchedExecutor, given

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class FluxJobExecutor(LaunchedExecutor):
    """Run each call as a job of the enclosing Flux instance (``flux start``, ``flux alloc``,
    or a Flux started inside a SLURM allocation), submitted through ``flux.job.FluxExecutor``.

    The jobspec comes from the call's ``resource_dict``: ``cores`` -> tasks (MPI ranks),
    ``threads_per_core`` -> cores per task, ``gpus_per_core`` -> GPUs per task, ``num_nodes``,
    ``exclusive``, ``cwd``, ``run_time_max`` -> the job's duration (fresh mode; in block
    allocation it limits each call), ``priority`` -> urgency, passed straight
    through as executorlib does (1 lowest .. 31 highest; 0, which Flux holds for ever, and
    values outside 1..31 are refused at ``submit()``; ``scheduling.render.flux_urgency``). A job that Flux kills,
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
        openmpi_oversubscribe: only False: Flux gives every rank a core of its own
            (``ValueError`` otherwise).

    Raises:
        ImportError: no Flux Python bindings (or ``cores > 1`` without mpi4py).
        RuntimeError: not inside a Flux instance (``FLUX_URI`` unset).
        ValueError: an unknown ``pmi_mode``, ``openmpi_oversubscribe=True``, a count below 1, an unknown ``resource_dict`` key
            or one this executor cannot honour (with the reason), a warm pool larger than the
            instance.
        UnsatisfiableRequestError: (construction and ``submit()``) more cores, GPUs or nodes
            than the instance has.
        TypeError: ``flux_executor`` is not a FluxExecutor; a ``resource_dict`` value of the
            wrong type.
    """

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
        # the parameters as given (locals() holds nothing else yet), checked by the shared body
        self._open(FLUX, type(self).__name__, **given(locals()))
