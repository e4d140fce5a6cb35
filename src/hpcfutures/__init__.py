"""hpcfutures: ``concurrent.futures`` executors for serial, threaded and MPI-parallel
Python functions, from a laptop to a SLURM cluster, by changing one class name.

How a call flows (each box is a subpackage; imports point down only)::

    user code
      | exe.submit(fn, *args, resource_dict={...})       compat/: pympipool's Pool, Executor, ...
      v                                                   (fronts over the same executors)
    executors/     facade: validate input, merge resource defaults, pickle the call,
      |            hold calls whose arguments are futures (done-callbacks, no polling),
      |            answer from cache/ when the result is stored; outcome: futures settled
      v
    scheduling/    pure state: Task, TaskFuture (cancel() wakes waiters at once), resource
      |            keys, core budget, dependency helpers
      |            (graph/ replaces the engine in graph-only mode: record, draw, export)
      v  engine: one fresh process per task | a warm pool of workers | cluster/: one batch job per call
    launch/        how a worker process comes to exist: python, mpiexec or srun (a launcher
      |            object; srun --test-only outside an allocation, its size inside; srun's
      |            own refusals read from its stderr; a stopped srun's queued job scancelled);
      |            the key (pipe, 0600 file, or srun's environment), thread counts, GPUs; its
      |            death seen at once (pidfd), and what it left in its session killed; ranks'
      |            reports taken out of its stderr. pending: queued srun jobs watched, one
      |            squeue per interval, hopeless ones (slurm_reasons) cancelled. guardian: one
      |            process per driver that ends its launchers and jobs when the driver dies,
      |            SIGKILL included
      v
    wire/          HMAC-authenticated frames; pipes for one-shot serial workers (also through
      |            srun's stdin/stdout), Unix sockets locally, zmq over tcp across nodes
      |            (a peer answers a challenge before it is sent anything);
      |            replies: MPI ranks' replies travel unopened, decoded in the driver
      v
    worker/        lean entry points run in the worker processes: one_shot, interactive,
                   file_task (queued jobs; reads and writes cache entries); mpi_world: one
                   world of the size asked for, an end for every call (MPI_Abort when needed)

Public names are imported lazily, so ``import hpcfutures`` costs almost nothing.
"""

from __future__ import annotations

_EXPORTS = {
    "SingleNodeExecutor": "hpcfutures.executors.single_node",
    "SlurmJobExecutor": "hpcfutures.executors.slurm_job",
    "SlurmClusterExecutor": "hpcfutures.executors.cluster",
    "FluxJobExecutor": "hpcfutures.executors.flux_job",
    "FluxClusterExecutor": "hpcfutures.executors.flux_cluster",
    "terminate_tasks_in_cache": "hpcfutures.cluster.terminate",
    "terminate_task_in_cache": "hpcfutures.cluster.terminate",
    # pympipool's interfaces
    "Pool": "hpcfutures.compat.pool",
    "MPISpawnPool": "hpcfutures.compat.pool",
    "Executor": "hpcfutures.compat.executors",
    "HPCExecutor": "hpcfutures.compat.executors",
    "PoolExecutor": "hpcfutures.compat.executors",
    "SocketInterface": "hpcfutures.wire.socket_interface",
    # every exception a user can meet
    "WorkerCrashedError": "hpcfutures.errors",
    "UnsatisfiableRequestError": "hpcfutures.errors",
    "PoolBrokenError": "hpcfutures.errors",
    "RemoteTraceback": "hpcfutures.errors",
    "CacheEntryError": "hpcfutures.cache.entry",
    "QueueError": "hpcfutures.cluster.queues",
    "AuthenticationError": "hpcfutures.wire.frames",
    "MPIWorldError": "hpcfutures.errors",
    "get_cache_data": "hpcfutures.cache.store",
    "get_future_from_cache": "hpcfutures.cache.store",
    "get_item_from_future": "hpcfutures.scheduling.derived",
    "split_future": "hpcfutures.scheduling.derived",
    "progress": "hpcfutures.progress_bar",
}

__all__ = sorted(_EXPORTS)


def _version() -> str:
    """The installed distribution's version: pyproject.toml is its single source."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hpcfutures")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":  # read on demand: importlib.metadata costs milliseconds
        value = globals()["__version__"] = _version()
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcfutures' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
