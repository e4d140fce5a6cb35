"""``SingleNodeExecutor``: run functions on this machine, serial or MPI-parallel — the
shared body (``launched.LaunchedExecutor``) with the ``LOCAL`` backend."""

from __future__ import annotations

from hpcfutures.executors.backends import LOCAL
from hpcfutures.executors.launched import LaunchedExecutor, given

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Callable



class SingleNodeExecutor(LaunchedExecutor):
    """Run Python functions on this machine.

    Without ``block_allocation`` every call gets a fresh process shaped by its own
    ``resource_dict`` (``cores > 1``: ``mpiexec -n cores``); at most ``max_workers`` calls
    (or ``max_cores`` cores) run at once — and when neither is given, as many cores as this
    machine has, where executorlib starts every call at once. With ``block_allocation=True``
    a pool of warm workers (optionally MPI-parallel, set up once by ``init_function``) runs
    the calls, which removes the process start from every call.

    Args:
        max_workers: calls running at once (fresh processes), or the number of warm workers
            (``block_allocation=True``; default: cores // cores per worker).
        cache_directory: store every result there and answer repeated calls from it (see
            ``get_cache_data``); ``None``: no cache.
        max_cores: cores that running calls may occupy together (``cores x
            threads_per_core`` per call); default: this machine's cores.
        resource_dict: default resources of every call (``cores``, ``threads_per_core``,
            ``gpus_per_core``, ``cwd``, ``run_time_max`` in seconds, ``retries``, ...); a
            call's own ``resource_dict`` is merged over it.
        hostname_localhost: ``True``: workers connect over this machine's Unix socket;
            ``False``: over TCP (workers on other nodes); ``None``: this machine, so a Unix socket.
        block_allocation: ``True`` starts warm workers once and sends every call to them.
        init_function: (warm workers only) runs once per worker and returns a dict whose
            entries calls receive by parameter name.
        disable_dependencies: ``True`` refuses futures as arguments (``TypeError``).
        refresh_rate: accepted for executorlib compatibility; nothing polls (seconds >= 0,
            finite: NaN and infinity are refused).
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
    Raises:
        ValueError: a count below 1, an unknown ``resource_dict`` key, a key this executor
            cannot honour (with the reason), a value outside its range (``run_time_max`` NaN
            or infinite, a ``cwd`` that is a file, ...), a ``refresh_rate`` that is negative,
            NaN or infinite, a warm pool larger than the core budget.
        TypeError: a ``resource_dict`` value of the wrong type, an ``init_function`` that is
            not callable.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
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
        self._open(LOCAL, type(self).__name__, **given(locals()))
