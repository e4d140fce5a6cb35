"""``LaunchedExecutor``: the one body of every executor whose workers a launcher starts —
``SingleNodeExecutor``, ``SlurmJobExecutor``, pympipool's fronts and the warm workers of
``SlurmClusterExecutor(block_allocation=True)``. Each of those is this class plus a
``Backend`` (``executors/backends.py``) and its own explicit signature."""

from __future__ import annotations

import numbers
import os

from hpcfutures.executors.base import BaseExecutor, graph_mode, refuse_unsupported
from hpcfutures.scheduling.render import LAUNCH_KEYS
from hpcfutures.scheduling.resources import DEFAULTS, KEYS, check_combination, check_seconds, validate

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Callable

    from hpcfutures.executors.backends import Backend


def given(values: dict) -> dict:
    """A public ``__init__``'s ``locals()`` (taken before anything else is assigned) as
    keyword arguments of ``LaunchedExecutor._open``."""
    return {name: value for name, value in values.items() if name not in ("self", "__class__")}


def _check_count(name: str, value, minimum: int = 1):
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or None, got {value!r}")
    return int(value)


# the keys that shape a launch (the mpiexec or srun command line); every new combination is
# checked once at submit(), so a task that differs from the defaults only in, say, its
# gpus_per_core is checked too (srun --test-only), not only one with a new core count
_SHAPE_KEYS = (*LAUNCH_KEYS, "priority")  # priority: Flux checks its urgency range


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


# what SingleNodeExecutor's subclasses overrode before the Backend value replaced them
_OLD_HOOKS = frozenset(
    {"_make_launcher", "_default_cores", "_check_warm_pool", "_assigns_gpus", "_refused", "_worker_keys", "_public_name"}
)


# the executor whose jobs outlive the driver (wait=False), per backend
_CLUSTER_TWIN = {"flux": "FluxClusterExecutor", "srun": "SlurmClusterExecutor", "local": "SlurmClusterExecutor"}


class LaunchedExecutor(BaseExecutor):
    """Fresh processes or warm workers, started by its backend's launcher. Not built
    directly: the public classes call ``_open`` from their explicit ``__init__``."""

    # what a pool larger than the machine/allocation/instance should lower (the fronts say
    # their own parameters)
    _pool_remedy = "lower max_workers"
    _task_keys = frozenset(KEYS)

    def __init_subclass__(cls, **kwargs):
        # the hooks these classes once overrode are gone: a subclass still defining one
        # would be silently ignored (its workers started by the wrong launcher), so say so
        super().__init_subclass__(**kwargs)
        stale = sorted(_OLD_HOOKS.intersection(vars(cls)))
        if stale:
            raise TypeError(
                f"{cls.__qualname__} defines {stale}, hooks that no longer exist: describe where workers run "
                "as a Backend (hpcfutures.executors.backends) and pass it to self._open(...) from __init__"
            )

    def _open(
        self,
        backend: Backend,
        name: str,
        max_workers: int | None,
        cache_directory: str | None,
        max_cores: int | None,
        resource_dict: dict | None,
        hostname_localhost: bool | None,
        block_allocation: bool,
        init_function: Callable | None,
        disable_dependencies: bool,
        refresh_rate: float,
        plot_dependency_graph: bool,
        plot_dependency_graph_filename: str | None,
        export_workflow_filename: str | None,
        log_obj_size: bool,
        wait: bool,
        restart_limit: int,
        openmpi_oversubscribe: bool,
        **launcher_options,
    ) -> None:
        """Check the parameters (see the public classes' docstrings) and start the engine.
        ``name``: the class the user built, for error messages; ``launcher_options``: the
        parameters of ``backend.launcher_parameters`` (``pmi_mode``, ...), for its launcher
        and ``info``."""
        unknown = sorted(set(launcher_options) - set(backend.launcher_parameters))
        if unknown:  # a programming error of the class, not of its user
            raise TypeError(f"{name}: the {backend.name} backend takes no {unknown}")
        self._backend = backend
        self._display_name = name
        if not wait:
            raise ValueError(
                f"{name}(wait=False) is not supported: its workers are processes of this Python "
                f"session and cannot outlive it; {_CLUSTER_TWIN.get(backend.name, 'SlurmClusterExecutor')}(wait=False) "
                "submits jobs that run on"
            )
        max_workers = _check_count("max_workers", max_workers)
        max_cores = _check_count("max_cores", max_cores)
        restart_limit = _check_count("restart_limit", restart_limit, minimum=0)
        check_seconds(refresh_rate, f"{name}(refresh_rate=...)")
        if init_function is not None and not block_allocation:
            raise ValueError("init_function needs block_allocation=True: only warm workers keep its state between calls")
        if init_function is not None and not callable(init_function):
            raise TypeError(f"init_function must be callable, got {type(init_function).__qualname__}")
        where = f"{name}(resource_dict=...)"
        user_defaults = validate(resource_dict, where, self._task_keys)
        refuse_unsupported(user_defaults, where, backend.refused)
        defaults = dict(DEFAULTS)
        defaults["openmpi_oversubscribe"] = bool(openmpi_oversubscribe)
        if cache_directory is not None:
            defaults.update(validate({"cache_directory": cache_directory}, f"{name}(cache_directory=...)"))
        defaults.update(user_defaults)
        check_combination(defaults, where)
        slots = defaults["cores"] * defaults["threads_per_core"]
        if max_cores is not None and slots > max_cores:
            raise ValueError(
                f"resource_dict cores={defaults['cores']} x threads_per_core={defaults['threads_per_core']} "
                f"= {slots} cores exceeds max_cores={max_cores}"
            )

        self._block_allocation = bool(block_allocation)
        if backend.name == "flux":  # outside Flux: the message names the class the user built
            from hpcfutures.launch.flux import require_flux

            require_flux(name)
        launcher = backend.make_launcher(**launcher_options)
        self._visible_gpus: list | None = None  # looked up when a task first asks for GPUs
        graph_output = graph_mode(plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename)
        if hostname_localhost is None and graph_output is None:
            hostname_localhost = backend.local_link()
        if graph_output is not None:  # nothing will run: no worker, no launcher needed
            from hpcfutures.graph.record import GraphRecorder

            engine = GraphRecorder(**graph_output)
        elif block_allocation:
            n = max_workers or max(1, (max_cores or backend.default_cores() or slots) // slots)
            if max_cores is not None and max_workers is not None:
                n = max(1, min(max_workers, max_cores // slots))
            backend.check_pool(n, defaults, self._pool_remedy)
            # no reference to self: an executor dropped without shutdown is still freed at once
            self._pool_check = lambda size, check=backend.check_pool, d=defaults, r=self._pool_remedy: check(size, d, r)
            from hpcfutures.engines.warm_pool import WarmPool
            from hpcfutures.launch.gpus import gpus_needed, visible_gpus

            key = _launch_key(launcher, defaults)
            per_worker = gpus_needed(defaults, where) if backend.assigns_gpus else 0
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
            from hpcfutures.engines.one_process import OneProcessPerTask

            # the user's limits only: max_workers alone counts tasks, max_cores alone counts
            # cores, neither means the backend's cores (this machine's, the allocation's)
            budget = max_cores if (max_cores is not None or max_workers is not None) else backend.default_cores()
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
            "plot_dependency_graph": plot_dependency_graph,
            "plot_dependency_graph_filename": plot_dependency_graph_filename,
            "export_workflow_filename": export_workflow_filename,
            **launcher_options,
        }
        if backend.name == "srun":  # executorlib's SlurmJobExecutor lists its srun arguments
            info["slurm_cmd_args"] = list(defaults.get("slurm_cmd_args") or [])
        super().__init__(engine, defaults, max_cores, info, disable_dependencies=disable_dependencies)
        self._launcher = launcher
        self._unclosed = launcher  # closed at shutdown, once
        self._records = graph_output is not None
        if not block_allocation and not self._records:
            self._check_gpus(defaults, where)
        self._checked = {_launch_shape(defaults)}  # launch shapes checked so far (launcher.check)

    def _drain_and_stop(self) -> None:
        try:
            super()._drain_and_stop()
        finally:
            # a launcher that holds something of its own (a Flux executor's thread) may have
            # close(): called once, by the first shutdown that gets here, after every task ended
            with self._lock:
                launcher, self._unclosed = getattr(self, "_unclosed", None), None
            close = getattr(launcher, "close", None)
            if close is not None:
                close()

    def _check_task_resources(self, task_resources: dict) -> dict:
        if not task_resources:
            return task_resources
        refuse_unsupported(task_resources, "submit()", self._backend.refused)
        if self._block_allocation:
            changed = [
                k for k in self._backend.worker_keys if k in task_resources and not _same(task_resources[k], self._defaults.get(k))
            ]
            if changed:
                raise ValueError(
                    f"submit(): with block_allocation=True the workers are started once with the executor's "
                    f"resource_dict; a task cannot change {changed}. Set them on the executor instead."
                )
            return task_resources
        cores = task_resources.get("cores", self._defaults["cores"])
        if not self._records and ("gpus_per_core" in task_resources or "cores" in task_resources):
            self._check_gpus({**self._defaults, **task_resources}, "submit()")
        threads = task_resources.get("threads_per_core", self._defaults.get("threads_per_core", 1))
        if self._max_cores is not None and cores * threads > self._max_cores:
            raise ValueError(
                f"submit(): resource_dict cores={cores} x threads_per_core={threads} = {cores * threads} cores "
                f"exceeds max_cores={self._max_cores}"
            )
        if not self._records:
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
        if not needed or not self._backend.assigns_gpus:
            return
        if self._visible_gpus is None:
            self._visible_gpus = visible_gpus()
            self._engine.provide_gpus(self._visible_gpus)
        check_enough(needed, self._visible_gpus, where)
