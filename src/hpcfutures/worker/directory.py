"""The ``cwd`` resource: a call's working directory, created if missing.

Used by the driver before it starts a process or submits a job there, and by the workers,
which enter the directory themselves (the batch job's from its entry, the others from
``HPCFUTURES_CWD``): SLURM runs a job or step whose ``--chdir`` fails in ``/tmp`` instead,
and the call must never run anywhere else.
Standard library only, like every worker module.
"""

from __future__ import annotations

import os

# the driver names a worker's cwd here as well: a launcher may start the worker elsewhere
# (srun -D on a node that cannot enter the directory starts it in /tmp)
CWD_ENV = "HPCFUTURES_CWD"


def make_working_directory(cwd) -> str:
    """Create ``cwd`` (and its parents) if missing.

    Args:
        cwd: the ``cwd`` resource (str or path-like; relative to this process's directory).

    Returns:
        Its absolute path.

    Raises:
        OSError: (the subclass of the cause: ``NotADirectoryError``, ``PermissionError``,
            ...) it is not a directory and cannot be made one; the message names ``cwd``.
    """
    path = os.path.abspath(os.fsdecode(os.fspath(cwd)))
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:  # makedirs' word for "a file is there"
        raise NotADirectoryError(f"resource_dict['cwd']={path!r} exists and is not a directory") from None
    except OSError as exc:
        raise type(exc)(exc.errno, f"resource_dict['cwd']={path!r} cannot be created: {exc.strerror}") from None
    return path


def enter_working_directory(cwd) -> str:
    """Create ``cwd`` if missing and make it this process's working directory.

    Args:
        cwd: the ``cwd`` resource (an absolute path where it comes from the driver).

    Returns:
        Its absolute path.

    Raises:
        OSError: it cannot be created or entered; the message names ``cwd``.
    """
    path = make_working_directory(cwd)
    try:
        os.chdir(path)
    except OSError as exc:
        raise type(exc)(exc.errno, f"resource_dict['cwd']={path!r} cannot be entered: {exc.strerror}") from None
    return path


def enter_from_environment() -> OSError | None:
    """Enter the directory the driver named in ``HPCFUTURES_CWD`` (removed from the
    environment, so that processes the task starts do not inherit it), if any.

    Returns:
        None, or the error every call of this worker must fail with (it names ``cwd``).
    """
    cwd = os.environ.pop(CWD_ENV, None)
    if not cwd:
        return None
    try:
        enter_working_directory(cwd)
    except OSError as exc:
        return exc
    return None
