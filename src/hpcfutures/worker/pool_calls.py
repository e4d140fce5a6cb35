"""Small functions the pympipool ``Pool`` front sends to workers: a chunk of a map as one
call, and a call given its MPI communicator. Standard library only, like every worker module."""


def run_chunk(func, chunk: list, star: bool) -> list:
    """``[func(*item) if star else func(item) for item in chunk]`` in one message."""
    if star:
        return [func(*item) for item in chunk]
    return [func(item) for item in chunk]


def call_with_comm(func, args: tuple):
    """Call ``func(*args, comm=...)`` on every rank of this worker; only rank 0's result
    is kept by the caller. The communicator is the worker's own ``COMM_WORLD``: each
    worker of an ``MPISpawnPool`` is one ``mpiexec`` of ``ranks_per_task`` ranks."""
    from mpi4py import MPI

    return func(*args, comm=MPI.COMM_WORLD)
