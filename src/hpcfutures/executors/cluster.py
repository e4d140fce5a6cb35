"""``SlurmClusterExecutor``: every call one batch job, and ``TestClusterExecutor``: the same
file-based path with local processes, for users' own tests.

Each call's input and output live in its cache entry (``cache_directory``, default
``hpcfutures_cache``), so the Python session may end while jobs run: with ``wait=False`` the
``with`` block returns at once, and running the same calls again later collects what
finished and follows what still runs, without submitting anything twice. A call whose
arguments are futures of this executor is submitted at once with a scheduler-side
dependency (``afterok``); its job reads the upstream results from their entries. The key
of such a call names its upstream entries, not their values, so a later run finds it.
"""

from __future__ import annotations

import os
import weakref

from hpcfutures.executors.base import BaseExecutor, _pickle_call, _succeeded
from hpcfutures.executors.outcome import settle
from hpcfutures.scheduling.dependencies import find_futures, propagate, upstream_error
from hpcfutures.scheduling.resources import DEFAULTS, KEYS, validate
from hpcfutures.scheduling.task import Task

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

DEFAULT_CACHE = "hpcfutures_cache"


class _FileJobExecutor(BaseExecutor):
    _task_keys = frozenset(KEYS)
    _pass_unknown_keys = True

    def _setup(self, queue, cache_directory, resource_dict, max_workers, max_cores, wait, disable_dependencies, refresh_rate, info_extra):
        from hpcfutures.cluster.engine import JobEngine

        name = type(self).__name__
        defaults = dict(DEFAULTS)
        defaults["cache_directory"] = os.path.abspath(os.fspath(cache_directory or DEFAULT_CACHE))
        defaults.update(validate(resource_dict, f"{name}(resource_dict=...)", self._task_keys, pass_unknown=True))
        engine = JobEngine(queue, interval=max(0.05, float(refresh_rate)))
        info = {
            "max_workers": max_workers,
            "max_cores": max_cores,
            "cache_directory": defaults["cache_directory"],
            "resource_dict": dict(defaults),
            "wait": wait,
            "disable_dependencies": disable_dependencies,
            "refresh_rate": refresh_rate,
            **info_extra,
        }
        super().__init__(engine, defaults, max_cores, info, disable_dependencies=disable_dependencies)
        self._wait = wait
        self._owned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # future -> UpstreamResult
        self._after: dict[int, list] = {}

    @property
    def queue_queries(self) -> int:
        """How often the queue was asked about jobs (one query covers all of them)."""
        return self._engine.queries

    def _dispatch(self, task: Task) -> None:
        from hpcfutures.worker.upstream import UpstreamResult

        store, key = self._cache_slot(task, task.resources["cache_directory"])
        self._owned[task.future] = UpstreamResult(store.path(key), key)
        after = self._after.pop(id(task), [])
        reply = store.lookup(key)
        if reply is not None:
            if task.start():
                settle(task, reply)
            return
        task.cache = (store, key)
        self._engine.enqueue(task, after)

    def _with_upstream(self, task: Task, upstream: list) -> None:
        if not self._engine.supports_dependencies or not all(f in self._owned for f in upstream):
            return super()._with_upstream(task, upstream)  # foreign futures: wait here, then submit
        bad = next((f for f in upstream if f.done() and not _succeeded(f)), None)
        if bad is not None:
            propagate(bad, task.future, task.name)
            return
        after = []
        for future in upstream:
            pending = self._engine.pending(future)
            if pending is not None:
                after.append(pending[0])
        task.args = _as_upstream(task.args, self._owned)
        task.kwargs = _as_upstream(task.kwargs, self._owned)
        task.payload = _pickle_call(task)

        def upstream_done(up):
            if up.cancelled() or up.exception() is not None:
                error = upstream_error(up, task.name) if not up.cancelled() else None
                if not self._engine.abandon(task.future, error):
                    propagate(up, task.future, task.name)

        for future in upstream:
            if not future.done():
                future.add_done_callback(upstream_done)
        self._after[id(task)] = after
        self._dispatch(task)

    def __exit__(self, exc_type, exc_val, exc_tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._terminate()
        elif self._wait:
            self.shutdown(wait=True)
        else:  # the jobs go on without this process: neither this block nor interpreter exit waits
            from hpcfutures.executors.base import _live

            self.shutdown(wait=False)
            _live.discard(self)
        return False


def _as_upstream(obj, owned):
    """Futures of this executor replaced by markers naming their entries."""
    from concurrent.futures import Future

    if isinstance(obj, Future):
        return owned[obj]
    if isinstance(obj, list):
        return [_as_upstream(x, owned) for x in obj]
    if isinstance(obj, tuple):
        items = [_as_upstream(x, owned) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, dict):
        return {k: _as_upstream(v, owned) for k, v in obj.items()}
    return obj


class SlurmClusterExecutor(_FileJobExecutor):
    """Submit every call as its own SLURM batch job (``sbatch``), from a login node or
    anywhere the SLURM client tools work. Without ``pysqa_config_directory`` a built-in job
    script is used that needs no configuration; with it, pysqa's queues and templates.
    Unknown ``resource_dict`` keys (``partition``, ``memory_max``, ...) go to the adapter.

    ``block_allocation=True`` instead starts ``max_workers`` warm workers, each its own
    SLURM job (an ``srun`` job from where the driver runs), and sends the calls to them.

    Args:
        max_workers: warm workers with ``block_allocation=True``; otherwise accepted for
            executorlib compatibility (the queue decides how many jobs run at once).
        cache_directory: where each call's entry (input, output, job id) lives; it must be on
            a file system the compute nodes share. Default ``hpcfutures_cache``.
        max_cores: accepted for executorlib compatibility; the queue limits the cores.
        resource_dict: default resources of every job (``cores``, ``threads_per_core``,
            ``gpus_per_core``, ``num_nodes``, ``run_time_max`` in seconds, ``cwd``, and for the
            queue ``partition``, ``account``, ``qos``, ``memory_max`` in GB, ...).
        pysqa_config_directory: submit through a pysqa ``QueueAdapter`` configured there;
            ``None``: the built-in ``sbatch`` job script.
        hostname_localhost: (warm workers) how they connect; ``None``: TCP.
        block_allocation: ``True`` starts warm workers as SLURM jobs instead of a job per call.
        init_function: (warm workers only) as for ``SingleNodeExecutor``.
        disable_dependencies: ``True`` refuses futures as arguments (``TypeError``).
        refresh_rate: seconds between looks at the entries (at least 0.05); the queue is
            asked once a second for all jobs.
        plot_dependency_graph: not available here (``NotImplementedError``).
        plot_dependency_graph_filename: not available here (``NotImplementedError``).
        export_workflow_filename: not available here (``NotImplementedError``).
        log_obj_size: (warm workers) log message sizes (bytes).
        wait: ``False``: leaving the ``with`` block does not wait for the jobs; the same
            calls run again later with the same ``cache_directory`` pick up their results.
        pmi_mode: ``srun --mpi=`` value for MPI calls (``pmix``, ``pmi2``, ...).

    Raises:
        NotImplementedError: graph-only mode, or warm workers through pysqa.
        ValueError: ``init_function`` without ``block_allocation``, a bad ``resource_dict``.
        hpcfutures.cluster.queues.QueueError: (from a future) ``sbatch`` refused the job.
    """

    def __new__(cls, *args, **kwargs):
        import inspect

        # bind as __init__ would, so block_allocation counts however it was passed
        given = inspect.signature(cls.__init__).bind(None, *args, **kwargs).arguments
        if given.get("block_allocation"):
            return _warm_jobs(given)
        return super().__new__(cls)

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
        pysqa_config_directory: str | None = None,
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
        pmi_mode: str | None = None,
    ):
        if init_function is not None and not block_allocation:
            raise ValueError("init_function needs block_allocation=True: only warm workers keep its state between calls")
        if plot_dependency_graph or plot_dependency_graph_filename or export_workflow_filename:
            raise NotImplementedError("graph-only mode: use SingleNodeExecutor(plot_dependency_graph=True) to draw the graph")
        from hpcfutures.cluster.queues import PysqaQueue, SlurmQueue

        queue = PysqaQueue(pysqa_config_directory) if pysqa_config_directory else SlurmQueue(pmi_mode)
        self._setup(
            queue, cache_directory, resource_dict, max_workers, max_cores, wait, disable_dependencies, refresh_rate,
            {"pysqa_config_directory": pysqa_config_directory, "pmi_mode": pmi_mode},
        )  # fmt: skip


class TestClusterExecutor(_FileJobExecutor):
    """The file-based path of ``SlurmClusterExecutor`` with local processes as "jobs": for
    testing code that will run on a cluster, on a laptop or in CI.

    Args:
        max_workers: accepted for compatibility; every call starts its process at once.
        cache_directory: where each call's entry lives (default ``hpcfutures_cache``).
        max_cores: accepted for compatibility.
        resource_dict: default resources of every call (``cores > 1`` runs ``mpiexec``).
        disable_dependencies: ``True`` refuses futures as arguments (``TypeError``).
        refresh_rate: seconds between looks at the entries (at least 0.05).
        wait: ``False``: leaving the ``with`` block does not wait for the processes.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
        disable_dependencies: bool = False,
        refresh_rate: float = 0.01,
        wait: bool = True,
    ):
        from hpcfutures.cluster.queues import LocalQueue

        self._setup(
            LocalQueue(), cache_directory, resource_dict, max_workers, max_cores, wait, disable_dependencies, refresh_rate, {}
        )


def _warm_jobs(given: dict):
    """``SlurmClusterExecutor(block_allocation=True)``: warm workers that are jobs, i.e. a
    ``SlurmJobExecutor`` pool (each ``srun`` outside an allocation is a job of its own).
    ``given``: the arguments as bound to ``SlurmClusterExecutor.__init__``."""
    if given.get("pysqa_config_directory") is not None:
        raise NotImplementedError("block_allocation=True with pysqa_config_directory: warm workers are started with srun only")
    from hpcfutures.executors.slurm_job import SlurmJobExecutor

    options = {k: v for k, v in given.items() if k not in ("self", "pysqa_config_directory", "wait")}
    options["max_workers"] = options.get("max_workers") or 1
    return SlurmJobExecutor(**options)
