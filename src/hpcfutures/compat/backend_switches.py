"""pympipool's backend switches, mapped onto hpcfutures' launchers."""

from __future__ import annotations


def refuse_missing_backends(
    where: str,
    enable_flux_backend: bool = False,
    enable_slurm_backend: bool = False,
    queue_adapter=None,
    queue_adapter_kwargs: dict | None = None,
) -> str:
    """Which launcher starts the workers: ``"flux"`` (``enable_flux_backend``: Flux jobs, as
    ``FluxJobExecutor``), ``"srun"`` (``enable_slurm_backend``: srun steps), or ``"local"``;
    a clear error for a combination that makes no sense or a backend hpcfutures has not
    built — never a silent fallback to local processes, which would run a cluster's worth of
    work on a login node.

    Args:
        where: the class named in the error (``Pool``, ``Executor``, ...).
        enable_flux_backend: start the workers as Flux jobs.
        enable_slurm_backend: start the workers as ``srun`` steps.
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``).

    Returns:
        ``"flux"``, ``"srun"`` or ``"local"``.

    Raises:
        ValueError: two backends at once, or a backend together with a queue adapter.
        NotImplementedError: a pysqa queue adapter.
    """
    if enable_flux_backend and enable_slurm_backend:
        raise ValueError(f"{where}: choose enable_flux_backend=True or enable_slurm_backend=True, not both")
    if (enable_slurm_backend or enable_flux_backend) and (queue_adapter is not None or queue_adapter_kwargs):
        which = "enable_flux_backend" if enable_flux_backend else "enable_slurm_backend"
        raise ValueError(f"{where}: choose {which}=True or a queue_adapter, not both")
    if queue_adapter is not None or queue_adapter_kwargs:
        raise NotImplementedError(
            f"{where}(queue_adapter=...): warm workers submitted through a pysqa queue adapter are not part of "
            "hpcfutures yet; for one batch job per call use SlurmClusterExecutor(pysqa_config_directory=...)"
        )
    return "flux" if enable_flux_backend else "srun" if enable_slurm_backend else "local"


def warm_pool_class(backend: str):
    """The executor a front builds on: Flux jobs (``FluxJobExecutor``), srun steps
    (``SlurmJobExecutor``) or this machine (``SingleNodeExecutor``)."""
    if backend == "flux":
        from hpcfutures.executors.flux_job import FluxJobExecutor

        return FluxJobExecutor
    if backend == "srun":
        from hpcfutures.executors.slurm_job import SlurmJobExecutor

        return SlurmJobExecutor
    from hpcfutures.executors.single_node import SingleNodeExecutor

    return SingleNodeExecutor
