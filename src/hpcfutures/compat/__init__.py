"""The pympipool interfaces (``Pool``, ``Executor``, ``HPCExecutor``, ``PoolExecutor``,
``MPISpawnPool``), kept for code written against them. Each is a thin front over
``SingleNodeExecutor``'s warm workers — one engine for everything — with pympipool's
parameter names mapped onto ``resource_dict``."""
