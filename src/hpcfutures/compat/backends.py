"""pympipool's backend switches, mapped onto hpcfutures' launchers as those exist."""

from __future__ import annotations


def refuse_missing_backends(
    where: str,
    enable_flux_backend: bool = False,
    enable_slurm_backend: bool = False,
    queue_adapter=None,
    queue_adapter_kwargs: dict | None = None,
) -> None:
    """A clear error for a backend hpcfutures has not built yet — never a silent fallback
    to local processes, which would run a cluster's worth of work on a login node."""
    if enable_flux_backend:
        raise NotImplementedError(f"{where}(enable_flux_backend=True): the Flux launcher is not part of hpcfutures yet")
    if enable_slurm_backend:
        raise NotImplementedError(
            f"{where}(enable_slurm_backend=True): the srun launcher (SlurmJobExecutor) is not part of hpcfutures yet"
        )
    if queue_adapter is not None or queue_adapter_kwargs:
        raise NotImplementedError(
            f"{where}(queue_adapter=...): submitting through a pysqa queue adapter (SlurmClusterExecutor) "
            "is not part of hpcfutures yet"
        )
