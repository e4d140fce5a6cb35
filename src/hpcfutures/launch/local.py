"""Command lines for workers on this machine: a plain interpreter, or ``mpiexec`` when a
task or warm worker needs several MPI ranks."""

from __future__ import annotations

from hpcfutures.launch.mpi import mpiexec_command, require_mpi4py
from hpcfutures.launch.process import python_command

ONE_SHOT = "hpcfutures.worker.one_shot"
INTERACTIVE = "hpcfutures.worker.interactive"


def check_can_launch(cores: int) -> None:
    """Raise now (at submit or construction) what would otherwise fail inside a thread."""
    if cores > 1:
        require_mpi4py()
        mpiexec_command(cores, False)


def one_shot_command(task_fd: int, reply_fd: int) -> list[str]:
    return python_command(ONE_SHOT, str(task_fd), str(reply_fd))


def interactive_command(address: str, cores: int, oversubscribe: bool) -> list[str]:
    if cores > 1:
        return mpiexec_command(cores, oversubscribe) + python_command(INTERACTIVE, address, f"--mpi={cores}")
    return python_command(INTERACTIVE, address)


class LocalLauncher:
    """Workers on this machine: serial one-shot tasks over inherited pipes, everything else
    as ``python -m hpcfutures.worker.interactive`` (under ``mpiexec`` for several ranks)."""

    name = "this machine"

    def check(self, resources: dict) -> None:
        check_can_launch(resources.get("cores", 1))

    def one_shot(self, task_r: int, reply_w: int, resources: dict) -> dict:
        """How to start a serial one-shot worker: it inherits the two pipe ends."""
        return {"argv": one_shot_command(task_r, reply_w), "pass_fds": (task_r, reply_w)}

    def worker_command(self, address: str, resources: dict) -> list[str]:
        return interactive_command(address, resources.get("cores", 1), resources.get("openmpi_oversubscribe", False))
