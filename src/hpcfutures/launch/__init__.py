"""How a worker process comes to exist: a plain interpreter, a fork of the fork server,
``mpiexec``, an ``srun`` step or a Flux job. Everything that decides a process's command line or environment lives here."""
