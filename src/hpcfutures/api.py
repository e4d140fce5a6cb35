"""Stable API for libraries built on hpcfutures: the link to one worker and its helpers."""

from hpcfutures.errors import RemoteTraceback, UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.launch.process import WorkerProcess, python_command, worker_environment
from hpcfutures.wire.frames import dumps_by_value, loads, new_key, seal, unseal
from hpcfutures.wire.socket_interface import SocketInterface

from hpcfutures.executors.cluster import TestClusterExecutor

ExecutorlibSocketError = WorkerCrashedError
"""The name executorlib gives the worker-crash exception."""

INTERACTIVE_WORKER = "hpcfutures.worker.interactive"


def cloudpickle_register(ind: int = 0) -> None:
    """Pickle the functions of the calling module by value, so that workers that cannot
    import it (a notebook, a script run from another directory) still get them."""
    import inspect

    import cloudpickle

    frame = inspect.stack()[ind + 1]
    module = inspect.getmodule(frame[0])
    if module is not None and module.__name__ != "__main__":
        cloudpickle.register_pickle_by_value(module)


__all__ = [
    "SocketInterface",
    "TestClusterExecutor",
    "WorkerCrashedError",
    "UnsatisfiableRequestError",
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
