"""Where an executor's workers run, as one value: the ``Backend``.

``SingleNodeExecutor``, ``SlurmJobExecutor`` and pympipool's fronts share one body
(``executors/launched.py``); what sets them apart is only this value: which launcher
starts a worker, the core budget when the user sets none, the ``resource_dict`` keys it
cannot honour (with the reason), what a warm worker fixes at start, and whether the
executor hands out GPUs itself. Flux (``FLUX``) is one more ``Backend``.
"""

from __future__ import annotations

import os

from hpcfutures.scheduling import honoured

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Callable


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Backend:
    """How and where workers start; immutable, shared by every executor built on it.

    Args:
        name: a short name for messages and ``info`` (``"local"``, ``"srun"``).
        make_launcher: ``make_launcher(**options)`` -> the launcher object that starts a
            worker (``launch/``); ``options`` are the public constructor's arguments named
            in ``launcher_parameters``, as given.
        default_cores: ``default_cores()`` -> cores that running calls may occupy when the
            user sets neither ``max_cores`` nor ``max_workers`` (``None``: no bound).
        refused: ``resource_dict`` key -> (test of an accepted value, the reason and remedy
            when it fails): keys the API has but this backend cannot honour.
        worker_keys: keys a warm worker is started with, which a task cannot change.
        assigns_gpus: ``True``: the executor hands each task or worker its own GPUs
            (``CUDA_VISIBLE_DEVICES``); ``False``: the scheduler binds them.
        check_pool: ``check_pool(n_workers, resources, remedy)`` (``remedy``: what the user
            can lower, in their class's parameters) raises ``ValueError`` for a warm
            pool that cannot fit where it would run.
        local_link: ``local_link()`` -> the default of ``hostname_localhost``: ``True`` when
            workers certainly run on this machine (a Unix socket serves), else ``False``;
            ``None``: this machine. Not called in graph-only mode, which starts nothing.
        launcher_parameters: names of the public constructor's parameters that configure
            the launcher (``pmi_mode`` for srun); they go to ``make_launcher`` and into
            ``info``, and a parameter of that name is refused by backends without it.
    """

    __slots__ = (
        "name", "make_launcher", "default_cores", "refused", "worker_keys", "assigns_gpus", "check_pool", "local_link",
        "launcher_parameters",
    )

    def __init__(
        self,
        name: str,
        make_launcher: Callable,
        default_cores: Callable[[], int | None],
        refused: dict,
        worker_keys: tuple,
        assigns_gpus: bool,
        check_pool: Callable[[int, dict], None] | None = None,
        local_link: Callable[[], bool | None] | None = None,
        launcher_parameters: tuple = (),
    ):
        for slot, value in (
            ("name", name),
            ("make_launcher", make_launcher),
            ("default_cores", default_cores),
            ("refused", dict(refused)),
            ("worker_keys", tuple(worker_keys)),
            ("assigns_gpus", bool(assigns_gpus)),
            ("check_pool", check_pool or _fits_anywhere),
            ("local_link", local_link or _no_default),
            ("launcher_parameters", tuple(launcher_parameters)),
        ):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"a Backend is immutable (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


def _fits_anywhere(n_workers: int, resources: dict, remedy: str = "lower max_workers") -> None:
    """A pool on this machine: the core budget already bounds it."""


def _no_default() -> None:
    return None


# -- on this machine: python, or mpiexec for cores > 1 ----------------------------------
def _local_launcher():
    from hpcfutures.launch.local import LocalLauncher

    return LocalLauncher()


LOCAL = Backend(
    name="local",
    make_launcher=_local_launcher,
    default_cores=machine_cores,
    # its column of scheduling.honoured.HONOURED: keys refused, keys fixed per warm worker
    refused=honoured.refusals(honoured.LOCAL),
    worker_keys=honoured.worker_keys(honoured.LOCAL),
    assigns_gpus=True,
)


# -- srun steps of the current allocation (or srun jobs outside one) --------------------
def _srun_launcher(pmi_mode: str | None = None):
    from hpcfutures.launch.srun import SrunLauncher

    return SrunLauncher(pmi_mode)


def _allocation_cores() -> int | None:
    from hpcfutures.launch.srun import allocation_cores

    return allocation_cores()


def _pool_fits_allocation(n_workers: int, resources: dict, remedy: str = "lower max_workers") -> None:
    available = _allocation_cores()
    cores, threads = resources.get("cores", 1), resources.get("threads_per_core", 1)
    needed = n_workers * cores * threads
    if available is not None and needed > available:
        raise ValueError(
            f"{n_workers} warm workers x {cores} cores x {threads} threads need {needed} cores, but this "
            f"allocation has {available} (SLURM_NTASKS x SLURM_CPUS_PER_TASK); {remedy} or ask SLURM "
            "for more"
        )


def _one_node_allocation() -> bool:
    """Inside a one-node allocation every step runs on this node: a Unix socket serves
    (no zmq, no TCP port); otherwise workers connect over TCP."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_NNODES") == "1"


SRUN = Backend(
    name="srun",
    make_launcher=_srun_launcher,
    default_cores=_allocation_cores,
    # a warm worker is one srun step: its node count, exclusivity and extra srun flags are
    # fixed when it starts (the srun column of scheduling.honoured.HONOURED)
    refused=honoured.refusals(honoured.SRUN),
    worker_keys=honoured.worker_keys(honoured.SRUN),
    assigns_gpus=False,  # srun --gpus-per-task binds devices itself
    check_pool=_pool_fits_allocation,
    local_link=_one_node_allocation,
    launcher_parameters=("pmi_mode",),
)


# -- jobs of the enclosing Flux instance ------------------------------------------------
def _flux_launcher(
    pmi_mode: str | None = None, flux_executor=None, flux_executor_nesting: bool = False, flux_log_files: bool = False
):
    from hpcfutures.launch.flux import FluxLauncher

    return FluxLauncher(flux_executor, pmi_mode, flux_executor_nesting, flux_log_files)


def _instance_cores() -> int:
    from hpcfutures.launch.flux import instance_resources

    return instance_resources()["cores"]


def _pool_fits_instance(n_workers: int, resources: dict, remedy: str = "lower max_workers") -> None:
    available = _instance_cores()
    cores, threads = resources.get("cores", 1), resources.get("threads_per_core", 1)
    needed = n_workers * cores * threads
    if needed > available:
        raise ValueError(
            f"{n_workers} warm workers x {cores} cores x {threads} threads need {needed} cores, but this Flux "
            f"instance has {available}; {remedy} or start Flux on more resources"
        )


def _one_broker_instance() -> bool:
    """A one-broker instance runs every job on this machine: a Unix socket serves; an
    instance of several brokers (nodes) needs the authenticated TCP wire."""
    from hpcfutures.launch.flux import instance_resources

    return instance_resources()["size"] == 1


FLUX = Backend(
    name="flux",
    make_launcher=_flux_launcher,
    default_cores=_instance_cores,
    # a warm worker is one Flux job: its shape, nodes, exclusivity and urgency are fixed
    # when it starts (the flux column of scheduling.honoured.HONOURED)
    refused=honoured.refusals(honoured.FLUX),
    worker_keys=honoured.worker_keys(honoured.FLUX),
    assigns_gpus=False,  # the jobspec's gpus per task: Flux binds devices itself
    check_pool=_pool_fits_instance,
    local_link=_one_broker_instance,
    launcher_parameters=("pmi_mode", "flux_executor", "flux_executor_nesting", "flux_log_files"),
)
