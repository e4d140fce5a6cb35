"""How an engine starts a worker through a launcher that starts workers itself."""

from __future__ import annotations


def starter_for(launcher, resources: dict):
    """``start(argv, env, cwd)`` for a launcher with its own ``start`` (a Flux job: a
    handle, not a local process), bound to the resources of the task or worker.

    Args:
        launcher: the executor's launcher.
        resources: the merged ``resource_dict`` the worker is shaped by.

    Returns:
        A callable, or None when the launcher only makes command lines (then the engine
        starts a local process of that command line).
    """
    start = getattr(launcher, "start", None)
    if start is None:
        return None
    return lambda argv, env, cwd: start(argv, resources, env, cwd)
