"""pympipool's ``Executor`` (one worker, FIFO), ``HPCExecutor`` (several, balanced) and
``PoolExecutor`` (serial workers), as warm pools: processes on this machine (as
``SingleNodeExecutor``'s), ``srun`` steps (``enable_slurm_backend``, as ``SlurmJobExecutor``'s)
or jobs of the enclosing Flux instance (``enable_flux_backend``, as ``FluxJobExecutor``'s)."""

from __future__ import annotations

from hpcfutures.compat.backend_switches import refuse_missing_backends
from hpcfutures.executors.backends import FLUX, LOCAL, SRUN
from hpcfutures.executors.launched import LaunchedExecutor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def _worker_resources(cores: int, gpus: int | float, cwd) -> dict:
    resources: dict = {"cores": cores}
    if gpus:
        resources["gpus_per_core"] = gpus / cores
    if cwd is not None:
        resources["cwd"] = cwd
    return resources


class _WarmFront(LaunchedExecutor):
    """What the three fronts share: refuse a combination of backends that makes no sense,
    then start a warm pool shaped by pympipool's parameters, on this machine, as srun steps
    (``enable_slurm_backend``, the ``SRUN`` backend of ``SlurmJobExecutor``) or as Flux jobs
    (``enable_flux_backend``, the ``FLUX`` backend of ``FluxJobExecutor``)."""

    def _open_front(self, max_workers, cores, gpus, init_function, oversubscribe, cwd, hostname_localhost, backends) -> None:
        name = type(self).__name__
        which = refuse_missing_backends(name, **backends)
        self._open(
            {"flux": FLUX, "srun": SRUN, "local": LOCAL}[which],
            name,
            max_workers=max_workers,
            cache_directory=None,
            max_cores=None,
            resource_dict=_worker_resources(cores, gpus, cwd),
            hostname_localhost=hostname_localhost,
            block_allocation=True,
            init_function=init_function,
            disable_dependencies=False,
            refresh_rate=0.01,
            plot_dependency_graph=False,
            plot_dependency_graph_filename=None,
            export_workflow_filename=None,
            log_obj_size=False,
            wait=True,
            restart_limit=0,
            openmpi_oversubscribe=oversubscribe,
        )


class Executor(_WarmFront):
    """One warm worker — serial, or MPI-parallel with ``cores`` ranks — running calls first
    in first out; ``init_function``'s dict feeds calls by parameter name; ``len()`` counts
    the calls still waiting. An error fails only its own future.

    Args:
        cores: MPI ranks of the worker (1: a serial worker); a call's result is the list of
            rank results when ``cores > 1``.
        gpus_per_task: whole GPUs of the worker (its ``CUDA_VISIBLE_DEVICES``).
        init_function: runs once in the worker and returns a dict whose entries calls
            receive by parameter name.
        oversubscribe: let Open MPI place more ranks than cores (``--oversubscribe``).
        enable_flux_backend: ``True``: each worker is a job of the enclosing Flux instance
            (the ``FLUX`` backend of ``FluxJobExecutor``: run inside ``flux start`` or
            ``flux alloc``, so that ``FLUX_URI`` is set), its GPUs bound by Flux; not together
            with ``enable_slurm_backend`` or a queue adapter (``ValueError``).
        enable_slurm_backend: ``True``: the workers are ``srun`` steps (as
            ``SlurmJobExecutor``'s), GPUs bound by srun.
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``): warm workers
            through a pysqa queue adapter are not built; ``SlurmClusterExecutor`` submits one
            job per call.
        cwd: the workers' working directory (created if missing); ``None``: the driver's.
        hostname_localhost: ``True``: workers connect over a Unix socket on this machine;
            ``False``: over TCP; ``None``: the backend's default (a Unix socket on this
            machine; under srun a Unix socket inside a one-node allocation, TCP otherwise;
            under Flux a Unix socket in a one-broker instance, TCP otherwise).

    Raises:
        ValueError: a count below 1; ``enable_flux_backend`` together with
            ``enable_slurm_backend``; either of them together with a queue adapter; a
            ``cwd`` that exists and is not a directory; a pool larger than the allocation
            (srun) or the Flux instance; under srun or Flux, ``gpus_per_task`` that is not a
            multiple of ``cores`` (both count whole GPUs per rank); under Flux,
            ``oversubscribe=True`` (Flux gives every rank a core of its own); on this
            machine, more GPUs in all than it shows.
        NotImplementedError: a queue adapter without a backend switch.
        TypeError: an ``init_function`` that is not callable.
        ImportError: ``enable_flux_backend`` without Flux's Python bindings.
        RuntimeError: ``enable_flux_backend`` outside a Flux instance (``FLUX_URI`` unset).
    """

    _pool_remedy = "lower cores"

    def __init__(
        self,
        cores: int = 1,
        gpus_per_task: int = 0,
        init_function: Callable | None = None,
        oversubscribe: bool = False,
        enable_flux_backend: bool = False,
        enable_slurm_backend: bool = False,
        queue_adapter=None,
        queue_adapter_kwargs: dict | None = None,
        cwd: str | None = None,
        hostname_localhost: bool | None = None,
    ):
        backends = dict(
            enable_flux_backend=enable_flux_backend,
            enable_slurm_backend=enable_slurm_backend,
            queue_adapter=queue_adapter,
            queue_adapter_kwargs=queue_adapter_kwargs,
        )
        self._open_front(1, cores, gpus_per_task, init_function, oversubscribe, cwd, hostname_localhost, backends)


class HPCExecutor(_WarmFront):
    """``max_workers`` warm workers of ``cores_per_worker`` ranks and ``gpus_per_worker``
    GPUs each (every worker its own devices, through ``CUDA_VISIBLE_DEVICES``); an idle
    worker takes the next call, so the load balances itself.

    Args:
        max_workers: warm workers (>= 1).
        cores_per_worker: MPI ranks of each worker (1: serial workers).
        gpus_per_worker: whole GPUs of each worker.
        init_function: runs once in each worker and returns a dict whose entries calls
            receive by parameter name.
        oversubscribe: let Open MPI place more ranks than cores (``--oversubscribe``).
        enable_flux_backend: ``True``: each worker is a job of the enclosing Flux instance
            (the ``FLUX`` backend of ``FluxJobExecutor``: run inside ``flux start`` or
            ``flux alloc``, so that ``FLUX_URI`` is set), its GPUs bound by Flux; not together
            with ``enable_slurm_backend`` or a queue adapter (``ValueError``).
        enable_slurm_backend: ``True``: the workers are ``srun`` steps (as
            ``SlurmJobExecutor``'s), GPUs bound by srun.
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``): warm workers
            through a pysqa queue adapter are not built; ``SlurmClusterExecutor`` submits one
            job per call.
        cwd: the workers' working directory (created if missing); ``None``: the driver's.
        hostname_localhost: ``True``: workers connect over a Unix socket on this machine;
            ``False``: over TCP; ``None``: the backend's default (a Unix socket on this
            machine; under srun a Unix socket inside a one-node allocation, TCP otherwise;
            under Flux a Unix socket in a one-broker instance, TCP otherwise).

    Raises:
        ValueError: a count below 1; ``enable_flux_backend`` together with
            ``enable_slurm_backend``; either of them together with a queue adapter; a
            ``cwd`` that exists and is not a directory; a pool larger than the allocation
            (srun) or the Flux instance; under srun or Flux, ``gpus_per_worker`` that is not
            a multiple of ``cores_per_worker`` (both count whole GPUs per rank); under Flux,
            ``oversubscribe=True`` (Flux gives every rank a core of its own); on this
            machine, more GPUs in all than it shows.
        NotImplementedError: a queue adapter without a backend switch.
        TypeError: an ``init_function`` that is not callable.
        ImportError: ``enable_flux_backend`` without Flux's Python bindings.
        RuntimeError: ``enable_flux_backend`` outside a Flux instance (``FLUX_URI`` unset).
    """

    _pool_remedy = "lower max_workers or cores_per_worker"

    def __init__(
        self,
        max_workers: int = 1,
        cores_per_worker: int = 1,
        gpus_per_worker: int = 0,
        init_function: Callable | None = None,
        oversubscribe: bool = False,
        enable_flux_backend: bool = False,
        enable_slurm_backend: bool = False,
        queue_adapter=None,
        queue_adapter_kwargs: dict | None = None,
        cwd: str | None = None,
        hostname_localhost: bool | None = None,
    ):
        backends = dict(
            enable_flux_backend=enable_flux_backend,
            enable_slurm_backend=enable_slurm_backend,
            queue_adapter=queue_adapter,
            queue_adapter_kwargs=queue_adapter_kwargs,
        )
        self._open_front(max_workers, cores_per_worker, gpus_per_worker, init_function, oversubscribe, cwd, hostname_localhost, backends)


class PoolExecutor(_WarmFront):
    """``submit()`` of serial functions over ``max_workers`` warm workers.

    Args:
        max_workers: warm serial workers (>= 1).
        oversubscribe: let Open MPI place more ranks than cores (``--oversubscribe``).
        enable_flux_backend: ``True``: each worker is a job of the enclosing Flux instance
            (the ``FLUX`` backend of ``FluxJobExecutor``: run inside ``flux start`` or
            ``flux alloc``, so that ``FLUX_URI`` is set), its GPUs bound by Flux; not together
            with ``enable_slurm_backend`` or a queue adapter (``ValueError``).
        enable_slurm_backend: ``True``: the workers are ``srun`` steps (as
            ``SlurmJobExecutor``'s), GPUs bound by srun.
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``): warm workers
            through a pysqa queue adapter are not built; ``SlurmClusterExecutor`` submits one
            job per call.
        cwd: the workers' working directory (created if missing); ``None``: the driver's.
        hostname_localhost: ``True``: workers connect over a Unix socket on this machine;
            ``False``: over TCP; ``None``: the backend's default (a Unix socket on this
            machine; under srun a Unix socket inside a one-node allocation, TCP otherwise;
            under Flux a Unix socket in a one-broker instance, TCP otherwise).

    Raises:
        ValueError: a count below 1; ``enable_flux_backend`` together with
            ``enable_slurm_backend``; either of them together with a queue adapter; a
            ``cwd`` that exists and is not a directory; a pool larger than the allocation
            (srun) or the Flux instance; under Flux, ``oversubscribe=True`` (Flux gives
            every rank a core of its own).
        NotImplementedError: a queue adapter without a backend switch.
        ImportError: ``enable_flux_backend`` without Flux's Python bindings.
        RuntimeError: ``enable_flux_backend`` outside a Flux instance (``FLUX_URI`` unset).
    """

    def __init__(
        self,
        max_workers: int = 1,
        oversubscribe: bool = False,
        enable_flux_backend: bool = False,
        enable_slurm_backend: bool = False,
        queue_adapter=None,
        queue_adapter_kwargs: dict | None = None,
        cwd: str | None = None,
        hostname_localhost: bool | None = None,
    ):
        backends = dict(
            enable_flux_backend=enable_flux_backend,
            enable_slurm_backend=enable_slurm_backend,
            queue_adapter=queue_adapter,
            queue_adapter_kwargs=queue_adapter_kwargs,
        )
        self._open_front(max_workers, 1, 0, None, oversubscribe, cwd, hostname_localhost, backends)
