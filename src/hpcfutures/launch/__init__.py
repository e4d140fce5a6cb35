"""How a worker process comes to exist: a plain interpreter, ``mpiexec``, later ``srun``
and ``flux``. Everything that decides a process's command line or environment lives here."""
