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

from hpcfutures.engines.outcome import settle
from hpcfutures.executors.backends import SRUN
from hpcfutures.executors.base import BaseExecutor, _succeeded, flat_info, graph_mode
from hpcfutures.executors.launched import LaunchedExecutor
from hpcfutures.scheduling.dependencies import propagate, upstream_error
from hpcfutures.scheduling.honoured import LOCAL_JOBS, SBATCH, refuse_unhonoured
from hpcfutures.scheduling.resources import DEFAULTS, KEYS, check_combination, check_seconds, merge, script_safe, validate
from hpcfutures.scheduling.task import Task

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

DEFAULT_CACHE = "hpcfutures_cache"


class _FileJobExecutor(BaseExecutor):
    _task_keys = frozenset(KEYS)
    _honoured_as = SBATCH  # its column of scheduling.honoured.HONOURED
    _pass_unknown_keys = True

    def _setup(
        self,
        make_queue: Callable,
        cache_directory,
        resource_dict,
        wait: bool,
        disable_dependencies: bool,
        refresh_rate,
        info_extra: dict,
        refused: dict,
        graph_output: dict | None = None,
        log_obj_size: bool = False,
        openmpi_oversubscribe: bool = False,
    ) -> None:
        """``make_queue``: builds the queue adapter (not called in graph-only mode, which
        submits nothing); ``refused``: parameter -> (value given, neutral value, reason) of
        the parameters this executor cannot honour."""
        name = type(self).__name__
        for parameter, (value, neutral, reason) in refused.items():
            if value is not neutral and value != neutral:
                raise ValueError(f"{name}({parameter}={value!r}) is not supported: {reason}")
        check_seconds(refresh_rate, f"{name}(refresh_rate=...)")
        defaults = dict(DEFAULTS)
        defaults["cache_directory"] = os.path.abspath(os.fspath(cache_directory or DEFAULT_CACHE))
        if not script_safe(defaults["cache_directory"]):  # job logs live there, named in the job script
            raise ValueError(f"{name}(cache_directory={cache_directory!r}): a line break, NUL or double quote cannot stand in a job script")
        defaults["openmpi_oversubscribe"] = bool(openmpi_oversubscribe)
        defaults.update(validate(resource_dict, f"{name}(resource_dict=...)", self._task_keys, pass_unknown=True))
        refuse_unhonoured(defaults, f"{name}(resource_dict=...)", self._honoured_as)
        check_combination(defaults, f"{name}(resource_dict=...)")
        if graph_output is not None:  # graph-only mode: nothing is submitted, no queue needed
            from hpcfutures.graph.record import GraphRecorder

            engine = GraphRecorder(**graph_output)
        else:
            from hpcfutures.engines.job_per_call import JobEngine

            # wait=True: the jobs belong to this driver and end with it; wait=False: they outlive it
            engine = JobEngine(make_queue(), interval=max(0.05, float(refresh_rate)), guard=wait, log_obj_size=bool(log_obj_size))
        info = {
            "max_workers": None,
            "max_cores": None,
            "cache_directory": defaults["cache_directory"],
            "resource_dict": dict(defaults),
            "wait": wait,
            "disable_dependencies": disable_dependencies,
            "refresh_rate": refresh_rate,
            # executorlib's names: the queue, and the defaults every job gets
            "backend": getattr(getattr(engine, "queue", None), "kind", None),
            "executor_kwargs": dict(defaults),
            **info_extra,
        }
        super().__init__(engine, defaults, None, info, disable_dependencies=disable_dependencies)
        self._wait = bool(wait)
        self._graph_only = graph_output is not None
        self._owned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # future -> UpstreamResult
        self._after: dict[int, list] = {}

    def _check_task_resources(self, task_resources: dict) -> dict:
        if task_resources:
            refuse_unhonoured(task_resources, "submit()", self._honoured_as)
        check = getattr(getattr(self._engine, "queue", None), "check", None)
        if check is not None:  # what the queue can never run is refused here, not by a failed job
            check(merge(self._defaults, task_resources) if task_resources else self._defaults)
        return task_resources

    @property
    def max_workers(self) -> None:
        """``None``: every call is its own job and the queue decides how many run at once."""
        return None

    @max_workers.setter
    def max_workers(self, n: int) -> None:
        raise ValueError(
            f"{type(self).__name__}: max_workers cannot be set, the queue decides how many jobs run at once"
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``. On an executor made with ``wait=False``, interpreter
        exit does not wait for the jobs either (whether or not this was called): they run
        on, and their results land in their cache entries for a later run to collect.

        Args:
            wait: return only when every job has ended (graph-only mode always waits: the
                graph is written before it returns).
            cancel_futures: cancel what waits and ``scancel`` the jobs (their futures raise
                ``CancelledError``).
        """
        if self._graph_only:
            wait = True  # nothing runs; the graph is written before shutdown returns
        super().shutdown(wait=wait, cancel_futures=cancel_futures)

    def _at_interpreter_exit(self) -> None:
        if self._wait:
            super()._at_interpreter_exit()
            return
        # the jobs run on without this process; but a call still held here for its arguments
        # (futures of another executor, and every dependent call of TestClusterExecutor, whose
        # local processes have no afterok) becomes a job only through this process
        with self._lock:
            while self._waiting:
                self._released.wait()
        self.shutdown(wait=False)

    @property
    def queue_queries(self) -> int:
        """How often the queue was asked about jobs (one query covers all of them)."""
        return getattr(self._engine, "queries", 0)  # graph-only mode asks nothing

    def job_id(self, future) -> str | None:
        """The queue's id of the job that runs ``future``'s call, while that job has not
        finished (``squeue``/``scancel`` take it); None before the job is submitted, after
        it ended, or for a future of another executor (or a cache hit: no job).

        Args:
            future: a future this executor's ``submit`` returned.

        Returns:
            The job id as the queue prints it, or None.
        """
        pending = getattr(self._engine, "pending", None)  # graph-only mode submits nothing
        known = pending(future) if pending is not None else None
        return None if known is None else known[0]

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
        task.payload = task.pickle()

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
        else:  # wait=False: the jobs go on without this process; neither this block nor exit waits
            self.shutdown(wait=self._wait)
        return False


def _as_upstream(obj, owned):
    """Futures of this executor replaced by markers naming their entries."""
    from concurrent.futures import Future

    from hpcfutures.nested import replace

    return replace(obj, Future, owned.__getitem__)


_NO_LINK = "jobs exchange calls and results through files in the cache directory, not over a network link"


def _refused(name: str, max_workers, max_cores, hostname_localhost) -> dict:
    """What a file-based executor cannot honour: parameter -> (value given, neutral value, reason)."""
    warm = ", or use block_allocation=True for a fixed number of warm workers" if name == "SlurmClusterExecutor" else ""
    count = (
        "every call is its own job and the queue decides how many run at once; "
        f"leave it unset (bound running jobs with the queue's own limits{warm})"
    )
    cores = (
        "every call is its own job and the queue decides how many cores are busy at once; "
        f"leave it unset and set each call's cores in resource_dict{warm}"
    )
    return {
        "max_workers": (max_workers, None, count),
        "max_cores": (max_cores, None, cores),
        "hostname_localhost": (hostname_localhost, None, _NO_LINK),
    }


class SlurmClusterExecutor(_FileJobExecutor):
    """Submit every call as its own SLURM batch job (``sbatch``), from a login node or
    anywhere the SLURM client tools work. Without ``pysqa_config_directory`` a built-in job
    script is used that needs no configuration; with it, pysqa's queues and templates.
    Unknown ``resource_dict`` keys (``partition``, ``memory_max``, ...) go to the adapter.

    ``block_allocation=True`` instead starts ``max_workers`` warm workers, each its own
    SLURM job (an ``srun`` job from where the driver runs), and sends the calls to them.

    Args:
        max_workers: warm workers with ``block_allocation=True`` (default 1); without it
            refused (``ValueError``): the queue decides how many jobs run at once.
        cache_directory: where each call's entry (input, output, job id) lives; it must be on
            a file system the compute nodes share. Default ``hpcfutures_cache``.
        max_cores: refused without ``block_allocation`` (as ``max_workers``).
        resource_dict: defaults for every call (``cores`` = MPI ranks, ``threads_per_core``
            = cores per rank, ``run_time_max`` in seconds, ``partition``, ...).
        pysqa_config_directory: use pysqa's queue adapter configured there.
        pmi_mode: ``srun --mpi=`` for MPI calls.
        hostname_localhost: warm workers only; refused otherwise (jobs talk through files).
        block_allocation: warm workers instead of one job per call.
        init_function: warm workers only.
        disable_dependencies: refuse futures as arguments.
        refresh_rate: seconds between looks at the cache entries (at least 0.05).
        plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename:
            graph-only mode: nothing is submitted; the graph is drawn or written at shutdown.
        log_obj_size: log (logger ``hpcfutures``, INFO) the bytes of each job's input and output.
        wait: ``False``: neither the ``with`` block, ``shutdown(wait=False)`` nor interpreter
            exit waits for the jobs; they run on, and a later run collects their results.
            With ``block_allocation`` the workers need this process: the ``with`` block does not
            wait, but interpreter exit finishes the calls already submitted.
        openmpi_oversubscribe: ``srun --oversubscribe`` for MPI calls.

    Raises:
        ValueError: a parameter this mode cannot honour (the message says why).
        NotImplementedError: ``block_allocation=True`` with ``pysqa_config_directory``.
        hpcfutures.batch.queues.QueueError: (from a future) ``sbatch`` refused the job.
    """

    def __new__(cls, *args, **kwargs):
        # bind as __init__ would, so block_allocation counts however it was passed
        if _bound_arguments(args, kwargs).get("block_allocation"):
            return super().__new__(_WarmSlurmCluster)  # still a SlurmClusterExecutor; Python then runs its __init__
        return super().__new__(cls)

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
        if init_function is not None:
            raise ValueError("init_function needs block_allocation=True: only warm workers keep its state between calls")
        graph_output = graph_mode(plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename)

        def make_queue():
            from hpcfutures.batch.queues import PysqaQueue, SlurmQueue

            return PysqaQueue(pysqa_config_directory, pmi_mode=pmi_mode) if pysqa_config_directory else SlurmQueue(pmi_mode)

        self._setup(
            make_queue,
            cache_directory,
            resource_dict,
            wait,
            disable_dependencies,
            refresh_rate,
            {"pysqa_config_directory": pysqa_config_directory, "pmi_mode": pmi_mode, "log_obj_size": log_obj_size,
             "openmpi_oversubscribe": bool(openmpi_oversubscribe)},
            _refused(type(self).__name__, max_workers, max_cores, hostname_localhost),
            graph_output,
            log_obj_size,
            openmpi_oversubscribe,
        )  # fmt: skip


class TestClusterExecutor(_FileJobExecutor):
    """The file-based path of ``SlurmClusterExecutor`` with local processes as "jobs": for
    testing code that will run on a cluster, on a laptop or in CI. The parameters are
    executorlib's; those that only make sense elsewhere are refused with the reason.

    Args:
        max_workers, max_cores: refused: every call is its own process, as a job would be.
        cache_directory: where each call's entry lives; default ``hpcfutures_cache``.
        resource_dict: defaults for every call (``cores`` > 1 runs ``mpiexec -n cores``).
        hostname_localhost: refused (jobs talk through files).
        block_allocation, init_function: refused: warm workers are ``SingleNodeExecutor``'s.
        disable_dependencies: refuse futures as arguments.
        refresh_rate: seconds between looks at the cache entries (at least 0.05).
        plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename:
            graph-only mode, as ``SlurmClusterExecutor``.
        log_obj_size: log the bytes of each job's input and output.
        wait: ``False``: exit does not wait for the jobs (here local processes, which run on).
        openmpi_oversubscribe: ``mpiexec --oversubscribe`` for MPI calls (Open MPI).

    Raises:
        ValueError: a parameter this executor cannot honour (the message says why).
    """

    __test__ = False  # not a pytest test class, whatever its name
    _honoured_as = LOCAL_JOBS

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
        openmpi_oversubscribe: bool = False,
    ):
        def make_queue():
            from hpcfutures.batch.queues import LocalQueue

            return LocalQueue()

        warm = "warm workers are SingleNodeExecutor(block_allocation=True)'s; here every call is its own process"
        refused = _refused(type(self).__name__, max_workers, max_cores, hostname_localhost)
        refused.update(block_allocation=(block_allocation, False, warm), init_function=(init_function, None, warm))
        self._setup(
            make_queue,
            cache_directory,
            resource_dict,
            wait,
            disable_dependencies,
            refresh_rate,
            {"log_obj_size": log_obj_size, "openmpi_oversubscribe": bool(openmpi_oversubscribe)},
            refused,
            graph_mode(plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename),
            log_obj_size,
            openmpi_oversubscribe,
        )


class _WarmSlurmCluster(SlurmClusterExecutor):
    """``SlurmClusterExecutor(block_allocation=True)``: warm workers that are jobs (each
    ``srun`` outside an allocation is a job of its own), run by a ``SlurmJobExecutor`` pool
    inside. It is a ``SlurmClusterExecutor`` to the user's code; every call is handed to
    the pool, and ``wait`` decides whether leaving the ``with`` block waits."""

    def __init__(self, *args, **kwargs):
        given = _bound_arguments(args, kwargs)
        if given.get("pysqa_config_directory") is not None:
            raise NotImplementedError("block_allocation=True with pysqa_config_directory: warm workers are started with srun only")
        options = {k: v for k, v in given.items() if k not in ("self", "pysqa_config_directory", "wait")}
        options["max_workers"] = options.get("max_workers") or 1
        self._wait = bool(given.get("wait", True))
        self._inner = _ClusterWarmJobs(**options)

    def __getattr__(self, name: str):
        # anything not forwarded below (private state that tests and tools read) is the pool's
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def submit(self, fn, /, *args, resource_dict: dict | None = None, **kwargs):
        return self._inner.submit(fn, *args, resource_dict=resource_dict, **kwargs)

    def map(self, fn, *iterables, timeout=None, chunksize: int | None = None, progress: bool | str = False):
        return self._inner.map(fn, *iterables, timeout=timeout, chunksize=chunksize, progress=progress)

    def batched(self, iterable, n: int) -> list:
        return self._inner.batched(iterable, n)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __exit__(self, exc_type, exc_val, exc_tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._inner._terminate()
        else:
            self._inner.shutdown(wait=self._wait)
        return False

    def __len__(self) -> int:
        return len(self._inner)

    @property
    def info(self) -> dict | None:
        info = self._inner.info
        return None if info is None else flat_info(dict(info, wait=self._wait, pysqa_config_directory=None))

    @property
    def max_workers(self) -> int:
        return self._inner.max_workers

    @max_workers.setter
    def max_workers(self, n: int) -> None:
        self._inner.max_workers = n

    @property
    def queue_queries(self) -> int:
        """0: warm workers never ask the queue about jobs."""
        return 0

    def job_id(self, future) -> None:
        """None: warm workers are jobs, calls are not (``info`` names the workers)."""
        return None


def _bound_arguments(args: tuple, kwargs: dict) -> dict:
    """The arguments as bound to ``SlurmClusterExecutor.__init__`` (positional or not)."""
    import inspect

    return inspect.signature(SlurmClusterExecutor.__init__).bind(None, *args, **kwargs).arguments


class _ClusterWarmJobs(LaunchedExecutor):
    """The pool inside ``SlurmClusterExecutor(block_allocation=True)``: the shared body
    with the ``SRUN`` backend, as ``SlurmJobExecutor``, its errors naming the class the
    user built."""

    def __init__(self, **given):
        import inspect

        from hpcfutures.executors.slurm_job import SlurmJobExecutor

        bound = inspect.signature(SlurmJobExecutor.__init__).bind(None, **given)
        bound.apply_defaults()  # SlurmJobExecutor's defaults for what the user left out
        params = {k: v for k, v in bound.arguments.items() if k != "self"}
        self._open(SRUN, "SlurmClusterExecutor", **params)
