"""Run exactly one serial task in a fresh process, talking to the driver over two pipes.

Usage: ``python -m hpcfutures.worker.one_shot TASK_FD REPLY_FD`` (or ``stdio``: stdin and
stdout, as ``srun`` carries them). The pipes are inherited
from the driver, so no socket exists that anyone else could reach, and this process never
imports zmq: it starts in little more than the time of a bare interpreter.
"""

import os
import sys


def _load_pickle_without_functools() -> None:
    """Load the C pickler (``_pickle``) without ``functools``.

    ``_pickle`` imports ``functools`` only to keep ``functools.partial``, which is the C type
    of ``_functools``; ``functools`` itself brings ``collections``, ``operator``, ``reprlib``,
    ``types``, ``keyword``...: ~1.7 ms of every srun task's start here (issue 15), paid
    even by a function that never uses them. So while ``_pickle`` loads,
    ``sys.modules["functools"]`` holds a stand-in module with that same ``partial``, and the
    stand-in is removed right after. Why this is safe: no other thread exists yet; the first
    real ``import functools`` (the task's, cloudpickle's) loads the real module, whose
    ``partial`` is the very type ``_pickle`` kept; should a Python version want more of
    ``functools`` than ``partial``, the stand-in fails that load and ``_pickle`` is loaded
    again the usual way. Where ``functools`` or ``_pickle`` is loaded already (a fork
    server's child, a test importing this module) nothing is done.
    """
    if "functools" in sys.modules or "_pickle" in sys.modules:
        return
    try:
        from _functools import partial
    except ImportError:
        return
    stand_in = type(sys)("functools")
    stand_in.partial = partial
    before = set(sys.modules)
    sys.modules["functools"] = stand_in
    try:
        import _pickle  # noqa: F401  (kept in sys.modules for wire.frames)
    except Exception:
        pass  # loaded below with the real functools
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
    # a module loaded meanwhile (copyreg, _compat_pickle: today neither imports functools)
    # that kept the stand-in gets the real module instead
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if value is stand_in:
                import functools

                setattr(module, attribute, functools)
    import _pickle  # noqa: F401, F811


_load_pickle_without_functools()

from hpcfutures.wire.frames import read_frame, take_key_from_env, write_frame  # noqa: E402
from hpcfutures.worker.directory import enter_from_environment  # noqa: E402
from hpcfutures.worker.execute import (  # noqa: E402
    adopt_driver_path,
    call,
    decode_message,
    encode_reply,
    end_own_session,
    error_reply,
    exit_with_driver,
    flush_std_streams,
)


def main(argv: list) -> int:
    """``python -m hpcfutures.worker.one_shot TASK_FD REPLY_FD`` (or ``stdio``): read
    one task, run it, write its reply, exit.

    Args:
        argv: ``sys.argv``.

    Returns:
        The process's exit status.
    """
    if argv[1] == "stdio":  # started through a launcher (srun) that carries stdin and stdout
        task_fd, reply_fd = 0, os.dup(1)
        os.dup2(2, 1)  # the function's own prints must not mix into the reply
        sys.stdout = open(1, "w", closefd=False)
    else:
        task_fd, reply_fd = int(argv[1]), int(argv[2])
    key = take_key_from_env()
    exit_with_driver()
    adopt_driver_path()
    # what the task starts is ended by the driver, before it reaps this process and before
    # the future gets its result (under srun: by this worker as it ends), and by
    # exit_with_driver's watch if the driver dies
    wrong_cwd = enter_from_environment()  # the call runs in its cwd or fails naming it
    message, problem = decode_message(read_frame(task_fd, key))
    os.close(task_fd)
    if wrong_cwd is not None:
        problem = error_reply(wrong_cwd)
    reply = encode_reply(problem or call(message, {}))
    flush_std_streams()
    write_frame(reply_fd, key, reply)
    os.close(reply_fd)
    if os.getsid(0) != os.getpid():
        # not our own session (under srun, on any node): the driver cannot end what the task
        # started, so this worker does, before it exits
        end_own_session()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
