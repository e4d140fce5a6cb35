"""pympipool's ``Executor`` (one worker, FIFO), ``HPCExecutor`` (several, balanced) and
``PoolExecutor`` (serial workers), as ``SingleNodeExecutor`` warm pools."""

from __future__ import annotations

from hpcfutures.compat.backends import refuse_missing_backends
from hpcfutures.executors.single_node import SingleNodeExecutor
from hpcfutures.executors.slurm_job import SlurmJobExecutor

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


class _WarmFront(SingleNodeExecutor):
    """What the three fronts share: refuse a backend that does not exist, then start a warm
    pool shaped by pympipool's parameters, of local processes, srun steps
    (``enable_slurm_backend``, as in ``SlurmJobExecutor``) or Flux jobs (``enable_flux_backend``,
    as in ``FluxJobExecutor``)."""

    _backend = "local"
    _pmi_mode = None

    def _make_launcher(self):
        if self._backend == "flux":
            from hpcfutures.launch.flux import FluxLauncher

            return FluxLauncher()
        return SlurmJobExecutor._make_launcher(self) if self._backend == "srun" else super()._make_launcher()

    def _default_cores(self):
        if self._backend == "flux":
            from hpcfutures.executors.flux_job import FluxJobExecutor

            return FluxJobExecutor._default_cores(self)
        return SlurmJobExecutor._default_cores(self) if self._backend == "srun" else super()._default_cores()

    def _check_warm_pool(self, n_workers: int, resources: dict) -> None:
        if self._backend == "flux":
            from hpcfutures.executors.flux_job import FluxJobExecutor

            FluxJobExecutor._check_warm_pool(self, n_workers, resources)
        elif self._backend == "srun":
            SlurmJobExecutor._check_warm_pool(self, n_workers, resources)

    @property
    def _assigns_gpus(self) -> bool:
        return self._backend == "local"  # srun and Flux bind GPUs themselves

    def _drain_and_stop(self) -> None:
        try:
            super()._drain_and_stop()
        finally:
            close = getattr(self._launcher, "close", None)  # the Flux launcher's FluxExecutor thread
            if close is not None:
                close()

    def _open(self, max_workers, cores, gpus, init_function, oversubscribe, cwd, hostname_localhost, backends) -> None:
        self._backend = refuse_missing_backends(type(self).__name__, **backends)
        if self._backend == "flux" and hostname_localhost is None:
            from hpcfutures.executors.flux_job import _one_node_instance

            hostname_localhost = _one_node_instance()  # TCP when the instance spans nodes
        super().__init__(
            max_workers=max_workers,
            block_allocation=True,
            init_function=init_function,
            resource_dict=_worker_resources(cores, gpus, cwd),
            openmpi_oversubscribe=oversubscribe,
            hostname_localhost=hostname_localhost,
        )


class Executor(_WarmFront):
    """One warm worker — serial, or MPI-parallel with ``cores`` ranks — running calls first
    in first out; ``init_function``'s dict feeds calls by parameter name; ``len()`` counts
    the calls still waiting. An error fails only its own future."""

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
        self._open(1, cores, gpus_per_task, init_function, oversubscribe, cwd, hostname_localhost, backends)


class HPCExecutor(_WarmFront):
    """``max_workers`` warm workers of ``cores_per_worker`` ranks and ``gpus_per_worker``
    GPUs each (every worker its own devices, through ``CUDA_VISIBLE_DEVICES``); an idle
    worker takes the next call, so the load balances itself."""

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
        self._open(max_workers, cores_per_worker, gpus_per_worker, init_function, oversubscribe, cwd, hostname_localhost, backends)


class PoolExecutor(_WarmFront):
    """``submit()`` of serial functions over ``max_workers`` warm workers."""

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
        self._open(max_workers, 1, 0, None, oversubscribe, cwd, hostname_localhost, backends)
