"""Small functions the pympipool ``Pool`` front sends to workers: a chunk of a map as one
call, and a call given its MPI communicator. Standard library only, like every worker module."""


def run_chunk(func, chunk: list, star: bool) -> list:
    """``[func(*item) if star else func(item) for item in chunk]`` in one message (the
    ``chunksize`` idea of ``multiprocessing.Pool.map`` and ``ProcessPoolExecutor.map``).

    An item that raises stops the chunk; its exception carries the results of the items
    before it (attribute ``_hpcfutures_done``), so the driver yields those first and raises
    where the failing item's result would have been.

    Args:
        func: the function of the ``map``.
        chunk: the items of one message.
        star: unpack each item as positional arguments (``starmap``).

    Returns:
        The results, in order.
    """
    results = []
    append = results.append
    try:
        if star:
            for item in chunk:
                append(func(*item))
        else:
            for item in chunk:
                append(func(item))
    except BaseException as exc:
        try:
            exc._hpcfutures_done = results  # see hpcfutures.executors.mapping.PARTIAL_ATTR
        except Exception:  # an exception type without a __dict__: only the error travels
            pass
        raise
    return results


def call_with_comm(func, args: tuple):
    """Call ``func(*args, comm=...)`` on every rank of this worker; only rank 0's result
    is kept by the caller. The communicator is the worker's own ``COMM_WORLD``: each
    worker of an ``MPISpawnPool`` is one ``mpiexec`` of ``ranks_per_task`` ranks.

    Args:
        func: a function with a ``comm`` parameter.
        args: its positional arguments.

    Returns:
        What ``func`` returned on this rank.
    """
    from mpi4py import MPI

    return func(*args, comm=MPI.COMM_WORLD)
