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


# -- leak check ------------------------------------------------------------------------
LEAK_GRACE = float(os.environ.get("HPCF_LEAK_GRACE", "10"))
"""Seconds a module's threads and child processes get to end after its last test: idle
helper threads linger a moment by design (the cache writer waits 2 s for more entries)."""

# threads and children that serve the whole driver process, not any one executor: the
# guardian (launch.guardian) is one process per driver, started with the first launch
# (and third-party ones: tqdm's monitor, which wakes every 10 s and ends once no bar is
# left; pyzmq's garbage collector of zero-copy sends, one per process); names or classes
_PROCESS_WIDE_THREADS = ("pytest_timeout", "tqdm_monitor", "GarbageCollectorThread")
_PROCESS_WIDE_CHILDREN = ("hpcfutures/launch/guardian.py",)


def _children() -> dict:
    """pid -> (state, command) of this process's direct children, zombies included."""
    me = str(os.getpid())
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me:
            found[int(entry)] = (fields[0], command)  # whole: a long venv path must not hide the guardian
    return found


def _target(thread) -> str:
    """What a thread runs, to find who started it (threading keeps it in ``_target``)."""
    target = getattr(thread, "_target", None) or getattr(thread, "function", None) or type(thread).run
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def _leftovers(threads_before: set, children_before: set) -> list[str]:
    import threading

    left = [
        f"thread {t.name!r} ({_target(t)})"
        for t in threading.enumerate()
        if t.ident not in threads_before and t.is_alive() and not {t.name, type(t).__name__} & set(_PROCESS_WIDE_THREADS)
    ]
    for pid, (state, command) in _children().items():
        if pid not in children_before and not any(name in command for name in _PROCESS_WIDE_CHILDREN):
            left.append(f"{'zombie (never waited for) ' if state == 'Z' else ''}child process {pid}: {command[:300]}")
    return left


@pytest.fixture(scope="module", autouse=True)
def no_leftovers(request):
    """After each test module: no thread and no child process that the module started is
    left (after ``LEAK_GRACE`` seconds). Set HPCF_LEAK_CHECK=0 to switch it off."""
    import threading

    if os.environ.get("HPCF_LEAK_CHECK", "1") == "0":
        yield
        return
    threads_before = {t.ident for t in threading.enumerate()}
    children_before = set(_children())
    yield
    deadline = time.monotonic() + LEAK_GRACE
    left = _leftovers(threads_before, children_before)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _leftovers(threads_before, children_before)
    if left:
        pytest.fail(f"{request.module.__name__} left behind: " + "; ".join(left), pytrace=False)
