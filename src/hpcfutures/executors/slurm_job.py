"""``SlurmJobExecutor``: inside a SLURM allocation, every task (or warm worker) is an
``srun`` step. Everything else — dependencies, cache, retries, warm pools — is the shared
body (``launched.LaunchedExecutor``); only the backend (``SRUN``) differs."""

from __future__ import annotations

from hpcfutures.executors.backends import SRUN
from hpcfutures.executors.launched import LaunchedExecutor, given

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class SlurmJobExecutor(LaunchedExecutor):
    """Run each call as an ``srun`` step of the current allocation (``cores`` -> ``-n``,
    ``threads_per_core`` -> ``--cpus-per-task``, ``gpus_per_core`` -> ``--gpus-per-task``,
    ``num_nodes`` -> ``-N``, ``exclusive`` -> ``--exact``, ``run_time_max`` -> ``--time``,
    ``cwd`` -> ``-D``, ``pmi_mode`` -> ``--mpi``, plus ``slurm_cmd_args``). Workers reach the
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
        wait: only ``True`` is accepted (executorlib's parameter): the workers are processes of
            this Python session and cannot outlive it (``SlurmClusterExecutor(wait=False)``'s
            jobs can).
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
        # the parameters as given (locals() holds nothing else yet), checked by the shared body
        self._open(SRUN, type(self).__name__, **given(locals()))
