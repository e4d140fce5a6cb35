"""hpcfutures: ``concurrent.futures`` executors for serial, threaded and MPI-parallel
Python functions, from a laptop to a SLURM or Flux cluster, by changing one class name.

The packages, top to bottom; a module imports only its own package and those below it
(``tests/test_architecture.py`` checks it)::

    user code
      | exe.submit(fn, *args, resource_dict={...})
      v
    compat/        pympipool's Pool, Executor, HPCExecutor, ...: fronts over the executors
      v
    executors/     facades: validate input at submit(), merge resource defaults, pickle the
      |            call in the caller's thread, hold calls whose arguments are futures
      |            (done-callbacks, no polling), answer from cache/ when the result is stored.
      |            One body (launched.py) + a Backend value (backends.py: local, srun,
      |            flux) make SingleNodeExecutor, SlurmJobExecutor, FluxJobExecutor and the
      |            fronts; cluster_jobs.py: SlurmClusterExecutor, TestClusterExecutor (a job
      |            per call); flux_cluster.py: FluxClusterExecutor (a Flux batch job per call)
      v
    engines/       interface.py: the one Engine interface (enqueue, queued, resize, stop,
      |            kill_all, ...); the engines: one_process.py (a fresh process per task),
      |            warm_pool.py (warm workers), job_per_call.py (one batch job per call,
      |            one queue query per interval), graph/ (graph-only mode: record, then
      |            draw or export at shutdown); outcome.py: the one place futures complete
      v
    batch/         batch queues behind one interface (a JobSpec in, neutral JobStates
      |            out: scheduling/job_states.py): sbatch/squeue/scancel, pysqa, local
      |            processes, Flux batch jobs (flux_queue.py); terminate
    launch/        how a worker comes to exist: a launcher (python, a fork of the fork server,
      |            mpiexec, srun, flux) starts it and returns a handle (its end as an event,
      |            describe_exit, terminate, kill, stderr tail, failing ranks' reports);
      |            the key, thread counts, GPUs; spawn: a fork gate; pending: queued srun jobs
      |            watched, hopeless ones (slurm_reasons) cancelled; guardian: one process
      |            per driver that ends its launchers and jobs when the driver dies
      v
    scheduling/    pure state: Task, TaskFuture (cancel() wakes waiters at once), resource
      |            keys and their validated value (resources.py), rendered per backend
      |            (render.py: mpiexec, srun, #SBATCH, templates, pysqa, Flux), which keys
      |            each backend honours (honoured.py), neutral job states (job_states.py),
      |            core budget, dependency helpers
      v
    worker/        lean entry points run in the worker processes (stdlib + cloudpickle, +
      |            mpi4py): one_shot, interactive, file_task; mpi_world: one world of the
      |            size asked for, an end for every call (MPI_Abort when needed)
    cache/         the entry format (entry.py) and the store (lookups, the writer thread)
    wire/          MAC-authenticated frames; pipes, Unix sockets, zmq over tcp (a peer
      |            answers a challenge before it is sent anything); MPI ranks' replies
      |            travel unopened and are decoded in the driver. wire/ imports no launch/
    errors, logs, nested (the one walk over nested arguments), files (the one atomic write)

Data travels driver -> wire -> worker process and back; only the driver's engines and the
worker entry points touch the wire.

Which thread completes a future (always through ``engines/outcome.py``):

- the caller's thread, in ``submit()``: an answer from the cache, a call recorded in
  graph-only mode, a call whose upstream future had already failed;
- an upstream future's done-callback (whichever thread completed the upstream): a call
  whose upstream failed or was cancelled; one whose upstreams all succeeded is handed to
  its engine from that thread;
- a per-task thread (``hpcfutures-task-<name>``, one process per task): the reply, the
  crash or the time-out of its process;
- a warm worker's thread (``hpcfutures-worker-<n>``): the reply or crash of its worker;
  tasks still queued when the whole pool is broken;
- the job poller (``hpcfutures-job-poller``, one batch job per call): a job's entry
  written, or the job gone without one;
- the thread that calls ``shutdown(cancel_futures=True)`` (or Ctrl-C, or interpreter exit):
  cancelled and stopped tasks. The cache writer (``hpcfutures-cache-writer``) completes no
  future: it writes entries after their futures completed.

Three questions, three files each:

- Where does a task get its cores? ``scheduling/resources.py`` (the keys, ``cores``
  defaulting to 1 rank, the validated ``Resources`` value), ``executors/base.py``
  (``submit`` merges the call's ``resource_dict`` over the executor's; ``launched.py``
  then checks it against the core budget and the backend), ``scheduling/render.py`` (the
  value as each backend's words: ``mpiexec -n``, ``srun --ntasks``, ``#SBATCH``, Flux).
- How does a result get back from a warm worker to its future? ``worker/interactive.py``
  (runs the call, sends the reply), ``engines/warm_pool.py`` (the worker's thread waits
  for it), ``engines/outcome.py`` (``finish``/``settle``: retry, or complete the future).
- What happens when a worker is SIGKILLed? ``launch/handle.py`` (its end is seen at once
  and described: "killed by SIGKILL"), ``engines/warm_pool.py`` (or ``one_process.py``:
  the wait sees the end before a reply, the worker is restarted up to
  ``restart_limit``), ``engines/outcome.py`` (``WorkerCrashedError``, retried while
  ``retries`` allow).

``docs/architecture.md`` says the same at more length. Public names are imported lazily,
so ``import hpcfutures`` costs almost nothing.
"""

from __future__ import annotations

_EXPORTS = {
    "SingleNodeExecutor": "hpcfutures.executors.single_node",
    "SlurmJobExecutor": "hpcfutures.executors.slurm_job",
    "SlurmClusterExecutor": "hpcfutures.executors.cluster_jobs",
    "FluxJobExecutor": "hpcfutures.executors.flux_job",
    "FluxClusterExecutor": "hpcfutures.executors.flux_cluster",
    "terminate_tasks_in_cache": "hpcfutures.batch.terminate",
    "terminate_task_in_cache": "hpcfutures.batch.terminate",
    # pympipool's interfaces
    "Pool": "hpcfutures.compat.pool",
    "MPISpawnPool": "hpcfutures.compat.pool",
    "Executor": "hpcfutures.compat.executors",
    "HPCExecutor": "hpcfutures.compat.executors",
    "PoolExecutor": "hpcfutures.compat.executors",
    "SocketInterface": "hpcfutures.launch.link",
    # every exception a user can meet
    "WorkerCrashedError": "hpcfutures.errors",
    "UnsatisfiableRequestError": "hpcfutures.errors",
    "PoolBrokenError": "hpcfutures.errors",
    "RemoteTraceback": "hpcfutures.errors",
    "CacheEntryError": "hpcfutures.cache.entry",
    "CacheEntryNotFinishedError": "hpcfutures.cache.entry",
    "QueueError": "hpcfutures.batch.queues",
    "AuthenticationError": "hpcfutures.wire.frames",
    "MPIWorldError": "hpcfutures.errors",
    "get_cache_data": "hpcfutures.cache.store",
    "get_future_from_cache": "hpcfutures.cache.store",
    "get_item_from_future": "hpcfutures.scheduling.derived_futures",
    "split_future": "hpcfutures.scheduling.derived_futures",
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
