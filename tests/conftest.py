import importlib.util
import os
import shutil
import sys
import time

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HERE = os.path.dirname(os.path.abspath(__file__))
# workers import the test helper functions (tests/funcs.py) by name, as a user's workers
# import the user's modules: make this folder importable for them
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)


def _mpi_missing() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if shutil.which("mpiexec", path=path) is None:
        return "no mpiexec on PATH"
    return None


def _slurm_missing() -> str | None:
    import subprocess

    if shutil.which("sinfo") is None or shutil.which("srun") is None:
        return "no SLURM client tools (sinfo, srun) on PATH; bash scripts/slurm.sh start sets one up"
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping failed: {exc}"
    if "is UP" not in out.stdout:
        return "no SLURM controller answers (bash scripts/slurm.sh start)"
    return None


def _flux_missing() -> str | None:
    if importlib.util.find_spec("flux") is None:
        return "no Flux Python bindings (bash scripts/flux.sh install)"
    if "FLUX_URI" not in os.environ:
        return "not inside a Flux instance: run the flux tests under bash scripts/flux.sh run -- python -m pytest -m flux"
    return None


def _flux_multinode_missing() -> str | None:
    missing = _flux_missing()
    if missing is not None:
        return missing
    try:
        from hpcfutures.launch.flux import instance_resources

        nodes = instance_resources()["nodes"]
    except Exception as exc:  # the instance does not answer
        return f"the Flux instance does not answer: {exc}"
    if nodes < 2:
        return f"this Flux instance has {nodes} node; run under bash scripts/flux.sh run -s 2 -- ..."
    return None


_MISSING = {"mpi": _mpi_missing, "slurm": _slurm_missing, "flux": _flux_missing, "flux_multinode": _flux_multinode_missing}
_REASONS: dict = {}


def _reason(marker: str):
    if marker not in _REASONS:
        _REASONS[marker] = _MISSING[marker]()
    return _REASONS[marker]


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in _MISSING:
            if marker in item.keywords and _reason(marker) is not None:
                reason = _reason(marker)
                item.add_marker(pytest.mark.skip(reason=f"CI needs {marker} but {reason}" if IN_CI else reason))


def pytest_sessionfinish(session, exitstatus):
    for marker in _MISSING:
        if IN_CI and any(marker in i.keywords for i in session.items) and _reason(marker) is not None:
            session.exitstatus = 1
            print(f"\nCI=true but the {marker} tests could not run: {_reason(marker)}", file=sys.stderr)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def helpers():
    class H:
        alive = staticmethod(pid_alive)
        until = staticmethod(wait_until)

    return H
