"""pympipool's backend switches, mapped onto hpcfutures' launchers as those exist."""

from __future__ import annotations


def refuse_missing_backends(
    where: str,
    enable_flux_backend: bool = False,
    enable_slurm_backend: bool = False,
    queue_adapter=None,
    queue_adapter_kwargs: dict | None = None,
) -> bool:
    """Whether to start the workers with ``srun`` (``enable_slurm_backend``); a clear error
    for a backend hpcfutures has not built — never a silent fallback to local processes,
    which would run a cluster's worth of work on a login node.

    Args:
        where: the class named in the error (``Pool``, ``Executor``, ...).
        enable_flux_backend: refused (``NotImplementedError``).
        enable_slurm_backend: start the workers as ``srun`` steps.
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``).

    Returns:
        ``enable_slurm_backend``.

    Raises:
        NotImplementedError: Flux or a queue adapter asked for.
        ValueError: ``enable_slurm_backend`` together with a queue adapter.
    """
    if enable_flux_backend:
        raise NotImplementedError(f"{where}(enable_flux_backend=True): the Flux launcher is not part of hpcfutures yet")
    if enable_slurm_backend and (queue_adapter is not None or queue_adapter_kwargs):
        raise ValueError(f"{where}: choose enable_slurm_backend=True or a queue_adapter, not both")
    if queue_adapter is not None or queue_adapter_kwargs:
        raise NotImplementedError(
            f"{where}(queue_adapter=...): warm workers submitted through a pysqa queue adapter are not part of "
            "hpcfutures yet; for one batch job per call use SlurmClusterExecutor(pysqa_config_directory=...)"
        )
    return bool(enable_slurm_backend)


def warm_pool_class(use_srun: bool):
    """The executor a front builds on: srun steps (``SlurmJobExecutor``) or this machine."""
    if use_srun:
        from hpcfutures.executors.slurm_job import SlurmJobExecutor

        return SlurmJobExecutor
    from hpcfutures.executors.single_node import SingleNodeExecutor

    return SingleNodeExecutor
