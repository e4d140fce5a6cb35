"""The pympipool interfaces (``Pool``, ``Executor``, ``HPCExecutor``, ``PoolExecutor``,
``MPISpawnPool``), kept for code written against them. Each is a thin front over warm
workers — ``SingleNodeExecutor``'s on this machine, ``SlurmJobExecutor``'s with
``enable_slurm_backend``, ``FluxJobExecutor``'s with ``enable_flux_backend``
(``backend_switches``) — with pympipool's parameter names mapped onto ``resource_dict``."""
