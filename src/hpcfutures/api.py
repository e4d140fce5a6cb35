"""Stable API for libraries built on hpcfutures: the link to one worker and its helpers."""

from hpcfutures.cache.entry import CacheEntryError, CacheEntryNotFinishedError
from hpcfutures.batch.queues import QueueError
from hpcfutures.errors import MPIWorldError, PoolBrokenError, RemoteTraceback, UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.executors.cluster_jobs import TestClusterExecutor
from hpcfutures.launch.process import WorkerProcess, python_command, worker_environment
from hpcfutures.wire.frames import AuthenticationError, dumps_by_value, loads, new_key, seal, unseal
from hpcfutures.launch.link import SocketInterface

ExecutorlibSocketError = WorkerCrashedError
"""The name executorlib gives the worker-crash exception."""

INTERACTIVE_WORKER = "hpcfutures.worker.interactive"


def cloudpickle_register(ind: int = 2) -> None:
    """Pickle the functions of a module by value, so that workers and batch jobs that
    cannot import it (a notebook, a script's neighbour module run from elsewhere) still
    get them. Same meaning as executorlib's: ``ind`` indexes ``inspect.stack()`` as seen
    inside this function, so ``ind=1`` is the module that calls ``cloudpickle_register``
    and the default ``ind=2`` is the module that called *that* caller (executorlib calls it
    from inside its executors on the user's behalf).

    Args:
        ind: frame index into ``inspect.stack()``; a stack shorter than that falls back to
            the outermost frame, as executorlib does.

    Returns:
        None. ``__main__`` (a script or notebook) needs nothing: cloudpickle pickles it by
        value already, so it is left alone.

    Raises:
        ValueError: ``ind`` is not an int >= 0.
    """
    import inspect

    import cloudpickle

    if not isinstance(ind, int) or isinstance(ind, bool) or ind < 0:
        raise ValueError(f"cloudpickle_register(ind=...) needs an int >= 0, got {ind!r}")
    stack = inspect.stack(0)  # no source context: reading source files is slow and not needed
    try:
        frame = stack[min(ind, len(stack) - 1)][0]
        module = inspect.getmodule(frame)
    finally:
        del stack  # frames hold their locals alive
    if module is not None and module.__name__ != "__main__":
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:  # a module that is not in sys.modules (IPython cells): nothing to register
            pass


__all__ = [
    "SocketInterface",
    "TestClusterExecutor",
    "WorkerCrashedError",
    "UnsatisfiableRequestError",
    "PoolBrokenError",
    "MPIWorldError",
    "CacheEntryError",
    "CacheEntryNotFinishedError",
    "QueueError",
    "AuthenticationError",
    "ExecutorlibSocketError",
    "RemoteTraceback",
    "WorkerProcess",
    "python_command",
    "worker_environment",
    "cloudpickle_register",
    "dumps_by_value",
    "loads",
    "new_key",
    "seal",
    "unseal",
    "INTERACTIVE_WORKER",
]
