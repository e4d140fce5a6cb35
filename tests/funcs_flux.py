"""Functions the Flux tests submit (workers import them by name)."""

import os
import time


def job_id_then_wait(path, gate, timeout=60.0):
    """Write this job's Flux id to ``path``, then hold until ``gate`` exists."""
    with open(path + ".tmp", "w") as f:
        f.write(os.environ.get("FLUX_JOB_ID", ""))
    os.replace(path + ".tmp", path)
    deadline = time.monotonic() + timeout
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    return "finished"


def job_env():
    """What Flux set for this job: its id, the broker it runs on, the urgency it asked for."""
    return {k: os.environ.get(k) for k in ("FLUX_JOB_ID", "FLUX_URI", "FLUX_TASK_RANK", "FLUX_JOB_SIZE")}


def rank_broker(i):
    """(rank, world size, the URI of the Flux broker this rank runs under)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size(), os.environ.get("FLUX_URI")


def broker(i=None):
    return os.environ.get("FLUX_URI")


def say_and_return(x):
    import sys

    print(f"stdout of the task {x}", flush=True)
    print(f"stderr of the task {x}", file=sys.stderr, flush=True)
    return x


def nested_uri():
    """The URI of the instance this task runs in, its size, and its parent's URI (set only
    in a nested instance, as under flux_executor_nesting)."""
    import flux

    h = flux.Flux()
    try:
        parent = h.attr_get("parent-uri")
    except OSError:
        parent = None
    return os.environ.get("FLUX_URI"), int(h.attr_get("size")), parent


def meet_then_broker(folder, n, timeout=60.0):
    """Wait until ``n`` calls have arrived here (each on its own worker), then return the
    URI of the broker this one runs under."""
    import uuid

    open(os.path.join(folder, uuid.uuid4().hex), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {n} calls met")
        time.sleep(0.01)
    return os.environ.get("FLUX_URI")


def say_then_exit(message, code):
    """Write ``message`` on stderr (and this broker's URI), then die with exit ``code``."""
    import sys

    print(f"{message} under {os.environ.get('FLUX_URI')}", file=sys.stderr, flush=True)
    os._exit(code)


def return_then_hold_exit(gate: str, value):
    """Return ``value`` at once, but keep the worker process from exiting until ``gate``
    exists (a non-daemon thread: interpreter exit waits for it), at most 120 s; a worker
    that saw the gate open writes ``gate + ".seen"`` (one stopped before does not)."""
    import os
    import threading
    import time

    def hold():
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(gate):
            open(gate + ".seen", "w").close()

    threading.Thread(target=hold, daemon=False).start()
    return value


def run_own_job(timeout=30.0):
    """Run a Flux job of this task's own (``flux run -n1 hostname``) in the instance the task
    runs in; its exit code (TimeoutExpired when it never started)."""
    import subprocess

    return subprocess.run(["flux", "run", "-n1", "hostname"], capture_output=True, text=True, timeout=timeout).returncode
