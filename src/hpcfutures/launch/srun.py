"""Workers as ``srun`` job steps, inside a SLURM allocation.

Each task (or warm worker) is one step: ``srun -n cores`` starts its ranks wherever the
allocation has room, on this node or another, so the worker always talks back over a
socket (TCP across nodes), authenticated as on one machine. ``resource_dict`` maps onto
srun's flags in ``scheduling.render`` (``SLURM_OPTIONS``, beside the ``#SBATCH`` lines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

from hpcfutures.launch.handle import ONE_SHOT_PIPES, Launcher
from hpcfutures.launch.local import ONE_SHOT, interactive_worker
from hpcfutures.launch.mpi import default_pmi_mode, require_mpi4py
from hpcfutures.launch.process import LocalProcessHandle, python_command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence
from hpcfutures.launch.slurm_reasons import explain_refusal, srun_refusal
from hpcfutures.launch.spawn import run_command
from hpcfutures.scheduling.render import srun_args
from hpcfutures.scheduling.resources import Resources

PMI_MODES = ("pmix", "pmi1", "pmi2", "none", "cray_shasta")


def find_srun() -> str:
    """The ``srun`` on PATH.

    Returns:
        Its absolute path.

    Raises:
        FileNotFoundError: no ``srun``; the message says where one is found.
    """
    path = shutil.which("srun")
    if path is None:
        raise FileNotFoundError(
            "SlurmJobExecutor starts every task with 'srun', but no 'srun' is on PATH; run inside a SLURM "
            "allocation (salloc, sbatch) on a machine with the SLURM client tools"
        )
    return path


def srun_command(resources: dict, pmi_mode: str | None = None) -> list[str]:
    """srun and its flags for one task or worker (``scheduling.render.srun_args``).

    Args:
        resources: the merged, validated ``resource_dict``.
        pmi_mode: the ``--mpi`` plugin (None: no ``--mpi`` flag).

    Returns:
        argv up to the command srun runs.

    Raises:
        FileNotFoundError: no ``srun`` on ``PATH``.
        ValueError: a value srun cannot express (GPUs per rank that are not whole).
    """
    return [find_srun(), *srun_args(Resources.of(resources, pmi_mode))]


_tested: dict[tuple, str | None] = {}  # srun flags -> SLURM's refusal (None: it can start)
_tested_lock = threading.Lock()


def test_request(flags: list[str]) -> None:
    """Ask SLURM whether it could ever start a job with these srun flags (``srun
    --test-only``: nothing is submitted), once per distinct flags. Only outside an
    allocation: inside one, srun starts steps, and a step that cannot fit fails at once.

    Raises:
        UnsatisfiableRequestError: SLURM refuses the request as it stands.
    """
    if "SLURM_JOB_ID" in os.environ:
        return
    key = tuple(flags)
    with _tested_lock:
        known = key in _tested
        refusal = _tested.get(key)
    if not known:
        refusal = None
        try:
            out = run_command([*flags, "--test-only", "true"], capture_output=True, text=True, timeout=30)
            # only SLURM's own verdict counts; a failure to ask (no controller...) shows later
            if out.returncode != 0:
                refusal = srun_refusal(out.stderr + out.stdout, verdict=True)
        except (OSError, subprocess.SubprocessError):
            pass
        with _tested_lock:
            _tested[key] = refusal
    if refusal is not None:
        from hpcfutures.errors import UnsatisfiableRequestError

        raise UnsatisfiableRequestError(explain_refusal(refusal, " ".join(flags)))


def check_in_allocation(resources: dict) -> None:
    """Inside an allocation, refuse a step that can never fit it: more CPUs than the
    allocation holds (``cores x threads_per_core``; srun would answer "More processors
    requested than permitted"), or more nodes than it spans. Nothing is asked of SLURM:
    the allocation's size is in the environment. ``--overcommit`` in ``slurm_cmd_args``
    lets steps share CPUs, so the CPU count is then not checked.

    Raises:
        UnsatisfiableRequestError: naming the request, the allocation's size and the remedy.
    """
    if "SLURM_JOB_ID" not in os.environ:
        return
    from hpcfutures.errors import UnsatisfiableRequestError

    cores, threads = resources.get("cores", 1), resources.get("threads_per_core", 1)
    extra = list(resources.get("slurm_cmd_args") or ())
    overcommit = any(a in ("-O", "--overcommit") for a in extra)
    cpus = allocation_cpus()
    if cpus is not None and cores * threads > cpus and not overcommit:
        raise UnsatisfiableRequestError(
            f"cores={cores} x threads_per_core={threads} = {cores * threads} CPUs asked for one srun step, but this "
            f"allocation (job {os.environ['SLURM_JOB_ID']}) holds {cpus} (SLURM_JOB_CPUS_PER_NODE); srun would refuse "
            "it (\"More processors requested than permitted\"). Ask for fewer cores, or for a larger allocation"
        )
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES")
    if resources.get("num_nodes") and nodes and nodes.isdigit() and resources["num_nodes"] > int(nodes):
        raise UnsatisfiableRequestError(
            f"num_nodes={resources['num_nodes']} asked for one srun step, but this allocation (job "
            f"{os.environ['SLURM_JOB_ID']}) spans {nodes} node(s); ask for fewer nodes, or for a larger allocation"
        )


def check_pmi_mode(pmi_mode: str | None) -> None:
    """Refuse a ``pmi_mode`` srun does not know.

    Args:
        pmi_mode: ``srun --mpi`` plugin name, or ``None`` (chosen per step).

    Raises:
        ValueError: naming the accepted values.
    """
    if pmi_mode is not None and pmi_mode not in PMI_MODES:
        raise ValueError(f"pmi_mode={pmi_mode!r}: srun --mpi takes one of {PMI_MODES}")


def pmi_for(cores: int, pmi_mode: str | None) -> str | None:
    """The ``--mpi`` plugin for one step.

    Args:
        cores: MPI ranks of the step.
        pmi_mode: the user's choice; ``None`` lets an MPI step get the plugin this
            environment's MPI needs (``default_pmi_mode``), and a serial step the site's default.

    Returns:
        The plugin name, or ``None`` for no ``--mpi`` flag.
    """
    if pmi_mode is not None or cores <= 1:
        return pmi_mode
    return default_pmi_mode()


class SrunLauncher(Launcher):
    """Workers as srun steps (or, outside an allocation, as srun jobs of their own). The
    handle is the local ``srun`` process (``LocalProcessHandle``): its end is the step's,
    its stderr says when the job waits in the queue (``launch.pending`` watches it then).

    Args:
        pmi_mode: srun's ``--mpi`` (one of ``PMI_MODES``); None: the site default.

    Raises:
        ValueError: an unknown ``pmi_mode``.
    """

    name = "srun"
    capabilities = frozenset({ONE_SHOT_PIPES})

    def __init__(self, pmi_mode: str | None = None):
        check_pmi_mode(pmi_mode)
        self.pmi_mode = pmi_mode

    def check(self, resources: dict) -> None:
        """Raise now what would fail later: no srun, no mpi4py for several ranks, a step
        larger than the allocation it would run in, or (outside an allocation) a request
        SLURM says it can never start.

        Args:
            resources: the merged ``resource_dict`` of a task or warm worker.

        Raises:
            FileNotFoundError: no ``srun`` on ``PATH``.
            ImportError: ``cores > 1`` without mpi4py.
            UnsatisfiableRequestError: SLURM can never start this request (with its reason).
        """
        find_srun()
        check_in_allocation(resources)
        if resources.get("cores", 1) > 1:
            require_mpi4py()
            pmi_for(resources["cores"], self.pmi_mode)  # learnt now (cached), not in a worker thread
        test_request(srun_command(resources, pmi_for(resources.get("cores", 1), self.pmi_mode)))

    def prefix(self, resources: Mapping) -> list[str]:
        """``srun`` and its flags for one task or worker."""
        return srun_command(resources, pmi_for(resources.get("cores", 1), self.pmi_mode))

    def start(self, argv: Sequence[str], resources: Mapping, env: Mapping[str, str], cwd: str | None = None,
              pass_fds: Sequence[int] = ()) -> LocalProcessHandle:
        """Start ``argv`` as one srun step of ``cores`` ranks; see ``Launcher.start``.

        Args:
            argv: the worker's command line.
            resources: its merged ``resource_dict`` (rendered as srun flags).
            env: its full environment.
            cwd: its working directory (``srun --chdir``); ``None``: the driver's.
            pass_fds: must be empty.

        Raises:
            ValueError: ``pass_fds`` given: srun does not carry descriptors to its tasks.
        """
        if pass_fds:
            raise ValueError("srun cannot pass descriptors to its tasks; use start_one_shot (stdin/stdout)")
        return LocalProcessHandle(self.prefix(resources) + list(argv), env, cwd=cwd)

    def start_one_shot(self, task_r: int, reply_w: int, resources: Mapping, env: Mapping[str, str],
                       cwd: str | None = None) -> LocalProcessHandle:
        """A serial one-shot worker through srun: srun carries its stdin and stdout, which
        become the task and reply pipes (the worker moves the function's own prints to
        stderr). No socket, no zmq: the step costs little more than srun itself.

        Args:
            task_r: the read end of the task pipe: srun's stdin.
            reply_w: the write end of the reply pipe: srun's stdout.
            resources: the task's merged ``resource_dict``.
            env: the worker's full environment.
            cwd: its working directory; ``None``: the driver's.
        """
        argv = self.prefix(resources) + python_command(ONE_SHOT, "stdio")
        return LocalProcessHandle(argv, env, cwd=cwd, stdin=task_r, stdout=reply_w)

    def worker_command(self, address: str, resources: Mapping) -> list[str]:
        """The interactive worker's full command line (srun included).

        Args:
            address: where the worker connects (``unix:<path>`` or ``tcp://host:port``).
            resources: its merged ``resource_dict`` (rendered as srun flags).
        """
        return self.prefix(resources) + interactive_worker(address, resources.get("cores", 1))


def allocation_cores() -> int | None:
    """Cores of the allocation this process runs in (``None`` outside one)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    tasks = os.environ.get("SLURM_NTASKS")
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "1")
    if tasks and tasks.isdigit() and per_task.isdigit():
        return int(tasks) * int(per_task)
    cpus = os.environ.get("SLURM_JOB_CPUS_PER_NODE", "")
    total = 0
    for part in cpus.split(","):  # "4" or "4(x2),2"
        count, _, repeat = part.partition("(x")
        if count.isdigit():
            total += int(count) * (int(repeat.rstrip(")")) if repeat else 1)
    return total or None


def allocation_cpus() -> int | None:
    """CPUs SLURM gave the allocation this process runs in, on all its nodes together
    (``SLURM_JOB_CPUS_PER_NODE``, e.g. ``"4(x2),2"``); ``allocation_cores()`` when that is
    not set; ``None`` outside an allocation. This is the bound srun checks a step against."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    total = 0
    for part in os.environ.get("SLURM_JOB_CPUS_PER_NODE", "").split(","):
        count, _, repeat = part.partition("(x")
        if count.isdigit():
            total += int(count) * (int(repeat.rstrip(")")) if repeat.rstrip(")").isdigit() else 1)
    return total or allocation_cores()
