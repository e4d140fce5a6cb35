"""``SingleNodeExecutor``: run functions on this machine, serial or MPI-parallel."""

from __future__ import annotations

import numbers
import os

from hpcfutures.executors.base import BaseExecutor
from hpcfutures.scheduling.honoured import LOCAL, refuse_unhonoured, worker_keys
from hpcfutures.scheduling.render import LAUNCH_KEYS
from hpcfutures.scheduling.resources import DEFAULTS, KEYS, check_combination, check_seconds, validate

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Callable


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_count(name: str, value, minimum: int = 1):
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or None, got {value!r}")
    return int(value)


# the keys that shape a launch (the mpiexec or srun command line); every new combination is
# checked once at submit(), so a task that differs from the defaults only in, say, its
# gpus_per_core is checked too (srun --test-only), not only one with a new core count
_SHAPE_KEYS = LAUNCH_KEYS


def _launch_shape(resources: dict) -> tuple:
    """A hashable summary of what ``launcher.check`` looks at."""
    shape = []
    for key in _SHAPE_KEYS:
        value = resources.get(key)
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        shape.append(value)
    return tuple(shape)


def _same(value, default) -> bool:
    """A task's value equals the executor's (None, False and an empty list all mean unset)."""
    return value == default or (not value and not default)


def _launch_key(launcher, resources: dict) -> bytes:
    """Check the launcher can start such workers; the key that authenticates them.
    launch/ and wire/ load here, not at import: ``from hpcfutures import ...`` stays cheap."""
    from hpcfutures.wire.frames import new_key

    launcher.check(resources)
    return new_key()


def graph_mode(plot: bool, plot_filename, workflow_filename) -> dict | None:
    """Graph-only mode when any of the three is set: checked now (a bad suffix or a missing
    matplotlib is an error at construction, not at exit)."""
    if not (plot or plot_filename or workflow_filename):
        return None
    if plot_filename is not None:
        from hpcfutures.graph.draw import check_format

        check_format(plot_filename)
    return {"plot": bool(plot), "plot_filename": plot_filename, "workflow_filename": workflow_filename}


class SingleNodeExecutor(BaseExecutor):
    """Run Python functions on this machine.

    Without ``block_allocation`` every call gets a fresh process shaped by its own
    ``resource_dict`` (``cores > 1``: ``mpiexec -n cores``); at most ``max_workers`` calls
    (or ``max_cores`` cores) run at once — and when neither is given, as many cores as this
    machine has, where executorlib starts every call at once. With ``block_allocation=True``
    a pool of warm workers (optionally MPI-parallel, set up once by ``init_function``) runs
    the calls, which removes the process start from every call.

    Args:
        max_workers: calls running at once (fresh processes), or the number of warm workers
            (``block_allocation=True``; default: cores // cores per worker).
        cache_directory: store every result there and answer repeated calls from it (see
            ``get_cache_data``); ``None``: no cache.
        max_cores: cores that running calls may occupy together (``cores x
            threads_per_core`` per call); default: this machine's cores.
        resource_dict: default resources of every call (``cores``, ``threads_per_core``,
            ``gpus_per_core``, ``cwd``, ``run_time_max`` in seconds, ``retries``, ...); a
            call's own ``resource_dict`` is merged over it.
        hostname_localhost: ``True``: workers connect over this machine's Unix socket;
            ``False``: over TCP (workers on other nodes); ``None``: this machine, so a Unix socket.
        block_allocation: ``True`` starts warm workers once and sends every call to them.
        init_function: (warm workers only) runs once per worker and returns a dict whose
            entries calls receive by parameter name.
        disable_dependencies: ``True`` refuses futures as arguments (``TypeError``).
        refresh_rate: accepted for executorlib compatibility; nothing polls (seconds >= 0,
            finite: NaN and infinity are refused).
        plot_dependency_graph: ``True`` records the calls instead of running them and draws
            their graph at shutdown (inline in Jupyter).
        plot_dependency_graph_filename: graph-only mode, writing the picture to this file
            (``.svg``, ``.dot``; ``.png``/``.pdf`` need matplotlib).
        export_workflow_filename: graph-only mode, writing a Python Workflow Definition JSON.
        log_obj_size: log the size of each message sent to and from workers (bytes).
        restart_limit: how often a warm worker that died is restarted before it is given up.
        openmpi_oversubscribe: let Open MPI place more ranks than cores.
    Raises:
        ValueError: a count below 1, an unknown ``resource_dict`` key, a key this executor
            cannot honour (with the reason), a value outside its range (``run_time_max`` NaN
            or infinite, a ``cwd`` that is a file, ...), a ``refresh_rate`` that is negative,
            NaN or infinite, a warm pool larger than the core budget.
        TypeError: a ``resource_dict`` value of the wrong type, an ``init_function`` that is
            not callable.
    """

    _task_keys = frozenset(KEYS)
    _backend = LOCAL  # its column of scheduling.honoured.HONOURED: keys refused, keys fixed per warm worker
    _assigns_gpus = True  # hand out CUDA_VISIBLE_DEVICES itself (a scheduler does it under SLURM)

    @property
    def _display_name(self) -> str:
        """The class the user built, for error messages (a front may name another)."""
        return getattr(self, "_public_name", None) or type(self).__name__

    def _make_launcher(self):
        from hpcfutures.launch.local import LocalLauncher

        return LocalLauncher()

    def _check_warm_pool(self, n_workers: int, resources: dict) -> None:
        """Subclass hook: refuse a pool that cannot fit where it would run."""

    def _default_cores(self) -> int | None:
        """The core budget when the user set none."""
        return machine_cores()

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: dict | None = None,
        hostname_localhost: bool | None = None,
        block_allocation: bool = False,
        init_function: Callable | None = None,
        disable_dependencies: bool = False,
        refresh_rate: float = 0.01,
        plot_dependency_graph: bool = False,
        plot_dependency_graph_filename: str | None = None,
        export_workflow_filename: str | None = None,
        log_obj_size: bool = False,
        wait: bool = True,
        restart_limit: int = 0,
        openmpi_oversubscribe: bool = False,
    ):
        if not wait:
            raise ValueError(
                f"{self._display_name}(wait=False) is not supported: its workers are processes of this Python "
                "session and cannot outlive it; SlurmClusterExecutor(wait=False) submits jobs that run on"
            )
        max_workers = _check_count("max_workers", max_workers)
        max_cores = _check_count("max_cores", max_cores)
        restart_limit = _check_count("restart_limit", restart_limit, minimum=0)
        check_seconds(refresh_rate, f"{self._display_name}(refresh_rate=...)")
        if init_function is not None and not block_allocation:
            raise ValueError("init_function needs block_allocation=True: only warm workers keep its state between calls")
        if init_function is not None and not callable(init_function):
            raise TypeError(f"init_function must be callable, got {type(init_function).__qualname__}")
        user_defaults = validate(resource_dict, f"{self._display_name}(resource_dict=...)", self._task_keys)
        refuse_unhonoured(user_defaults, f"{self._display_name}(resource_dict=...)", self._backend)
        defaults = dict(DEFAULTS)
        defaults["openmpi_oversubscribe"] = bool(openmpi_oversubscribe)
        if cache_directory is not None:
            defaults.update(validate({"cache_directory": cache_directory}, f"{self._display_name}(cache_directory=...)"))
        defaults.update(user_defaults)
        check_combination(defaults, f"{self._display_name}(resource_dict=...)")
        slots = defaults["cores"] * defaults["threads_per_core"]
        if max_cores is not None and slots > max_cores:
            raise ValueError(
                f"resource_dict cores={defaults['cores']} x threads_per_core={defaults['threads_per_core']} "
                f"= {slots} cores exceeds max_cores={max_cores}"
            )

        self._block_allocation = bool(block_allocation)
        launcher = self._make_launcher()
        self._visible_gpus: list | None = None  # looked up when a task first asks for GPUs
        graph_output = graph_mode(plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename)
        if graph_output is not None:  # nothing will run: no worker, no launcher needed
            from hpcfutures.graph.record import GraphRecorder

            engine = GraphRecorder()
        elif block_allocation:
            n = max_workers or max(1, (max_cores or self._default_cores() or slots) // slots)
            if max_cores is not None and max_workers is not None:
                n = max(1, min(max_workers, max_cores // slots))
            self._check_warm_pool(n, defaults)
            from hpcfutures.executors.warm_pool import WarmPool
            from hpcfutures.launch.gpus import gpus_needed, visible_gpus

            key = _launch_key(launcher, defaults)
            per_worker = gpus_needed(defaults, f"{self._display_name}(resource_dict=...)") if self._assigns_gpus else 0
            engine = WarmPool(
                key,
                n,
                defaults,
                init_function=init_function,
                restart_limit=restart_limit,
                hostname_localhost=hostname_localhost,
                log_obj_size=log_obj_size,
                gpus=visible_gpus() if per_worker else [],
                gpus_per_worker=per_worker,
                launcher=launcher,
            )
        else:
            from hpcfutures.executors.one_process import OneProcessPerTask

            # the user's limits only: max_workers alone counts tasks, max_cores alone counts
            # cores, neither means this machine's cores
            budget = max_cores if (max_cores is not None or max_workers is not None) else self._default_cores()
            engine = OneProcessPerTask(
                _launch_key(launcher, defaults),
                max_cores=budget,
                max_running=max_workers or budget or 1 << 30,
                hostname_localhost=hostname_localhost,
                log_obj_size=log_obj_size,
                launcher=launcher,
            )
        info = {
            "max_workers": max_workers,
            "cache_directory": cache_directory,
            "max_cores": max_cores,
            "resource_dict": dict(defaults),
            "block_allocation": bool(block_allocation),
            "init_function": init_function,
            "restart_limit": restart_limit,
            "hostname_localhost": hostname_localhost,
            "disable_dependencies": disable_dependencies,
            "refresh_rate": refresh_rate,
            "log_obj_size": log_obj_size,
            "wait": True,
            "openmpi_oversubscribe": bool(openmpi_oversubscribe),
        }
        info.update(
            plot_dependency_graph=plot_dependency_graph,
            plot_dependency_graph_filename=plot_dependency_graph_filename,
            export_workflow_filename=export_workflow_filename,
        )
        super().__init__(
            engine, defaults, max_cores, info, disable_dependencies=disable_dependencies, graph_output=graph_output
        )
        self._launcher = launcher
        if not block_allocation and graph_output is None:
            self._check_gpus(defaults, f"{self._display_name}(resource_dict=...)")
        self._checked = {_launch_shape(defaults)}  # launch shapes checked so far (launcher.check)

    def _check_task_resources(self, task_resources: dict) -> dict:
        if not task_resources:
            return task_resources
        refuse_unhonoured(task_resources, "submit()", self._backend)
        if self._block_allocation:
            changed = [
                k for k in worker_keys(self._backend) if k in task_resources and not _same(task_resources[k], self._defaults.get(k))
            ]
            if changed:
                raise ValueError(
                    f"submit(): with block_allocation=True the workers are started once with the executor's "
                    f"resource_dict; a task cannot change {changed}. Set them on the executor instead."
                )
            return task_resources
        cores = task_resources.get("cores", self._defaults["cores"])
        if self._graph_output is None and ("gpus_per_core" in task_resources or "cores" in task_resources):
            self._check_gpus({**self._defaults, **task_resources}, "submit()")
        threads = task_resources.get("threads_per_core", self._defaults.get("threads_per_core", 1))
        if self._max_cores is not None and cores * threads > self._max_cores:
            raise ValueError(
                f"submit(): resource_dict cores={cores} x threads_per_core={threads} = {cores * threads} cores "
                f"exceeds max_cores={self._max_cores}"
            )
        if self._graph_output is None:
            merged = {**self._defaults, **task_resources}
            check_combination(merged, "submit()")  # before asking SLURM about it
            shape = _launch_shape(merged)
            if shape not in self._checked:
                self._launcher.check(merged)
                if len(self._checked) >= 4096:  # a run of ever-new shapes must not grow it without end
                    self._checked.clear()
                self._checked.add(shape)
        return task_resources

    def _check_gpus(self, resources: dict, where: str) -> None:
        """Whole GPUs only, no more than this machine shows; the devices are listed (and
        handed to the engine) the first time a task asks for any."""
        from hpcfutures.launch.gpus import check_enough, gpus_needed, visible_gpus

        needed = gpus_needed(resources, where)
        if not needed or not self._assigns_gpus:
            return
        if self._visible_gpus is None:
            self._visible_gpus = visible_gpus()
            self._engine.provide_gpus(self._visible_gpus)
        check_enough(needed, self._visible_gpus, where)
