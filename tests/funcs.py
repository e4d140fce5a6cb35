"""Functions the tests submit (importable by workers: the tests directory is on sys.path
of the workers through the driver's cwd and PYTHONPATH)."""

import os
import signal
import sys
import time


def add(a, b=0):
    return a + b


def identity(x):
    return x


def boom(msg="boom"):
    raise ValueError(msg)


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def my_pid():
    return os.getpid()


def write_pid_then_sleep(path, seconds):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "finished"


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def exit_hard(code):
    os._exit(code)


def call_sys_exit(code):
    sys.exit(code)


def unpicklable_result():
    import threading

    return threading.Lock()


def env(name):
    return os.environ.get(name)


def cwd():
    return os.getcwd()


def worker_modules():
    return sorted(m for m in sys.modules if m == "hpcfutures" or m.startswith("hpcfutures.")), "zmq" in sys.modules


def mpi_ranks(i):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return i, comm.Get_size(), comm.Get_rank()


def mpi_fail_on_rank(rank_to_fail):
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == rank_to_fail:
        raise KeyError(f"rank {rank_to_fail}")
    return MPI.COMM_WORLD.Get_rank()


def uses_store(i, j, k):
    return i + j + k


def init_store():
    return {"j": 4, "k": 3, "l": 2}


def init_with_id(executorlib_worker_id):
    return {"wid": executorlib_worker_id}


def get_wid(wid):
    return wid


def wid_after_sleep(seconds, wid):
    time.sleep(seconds)
    return wid


def rank_pid_files_then_sleep(folder, seconds):
    from mpi4py import MPI

    with open(os.path.join(folder, f"rank{MPI.COMM_WORLD.Get_rank()}"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def get_executorlib_worker_id(executorlib_worker_id):
    return executorlib_worker_id


def init_fails():
    raise RuntimeError("init went wrong")


class TwoArgError(Exception):
    """Pickles in the worker but cannot be rebuilt by unpickling (its __init__ needs two args)."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_two_arg_error():
    raise TwoArgError("first", "second")


def _count_attempt(path):
    """How many times this was called with ``path`` (1 on the first call), across processes."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


def die_until_attempt(path, good_attempt, value):
    """SIGKILL itself on every call before the ``good_attempt``-th."""
    if _count_attempt(path) < good_attempt:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def hang_until_attempt(path, good_attempt, value):
    if _count_attempt(path) < good_attempt:
        time.sleep(600)
    return value


def raise_until_attempt(path, good_attempt, value):
    attempt = _count_attempt(path)
    if attempt < good_attempt:
        raise ValueError(f"attempt {attempt} failed")
    return value


def raise_at(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x + 1


def mark_and_add(path, x, y):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x + y


def big_bytes(n):
    return b"x" * n


def count_call(path, x):
    """Append a line per call, so a test can count how often the function really ran."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x * 2


def count_then_fail(path, x):
    count_call(path, x)
    raise ValueError(f"failing on {x}")


def runs(path):
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def count_call_list(path, n):
    count_call(path, n)
    return list(range(n))


def visible_devices(seconds=0.0):
    time.sleep(seconds)
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def pid_and_devices(seconds):
    time.sleep(seconds)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def where_and_size(i):
    from mpi4py import MPI

    return i, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()


def chatty(x):
    print("a line on stdout that must not disturb the reply", flush=True)
    return x * 3


def init_fails_once(path):
    """An init_function that fails the first time it runs (a flaky start)."""

    def init():
        if _count_attempt(path) == 1:
            raise RuntimeError("first start fails")
        return {"ready": True}

    return init


def is_ready(ready=False):
    return ready


def wait_for_file(path, value=None, timeout=60.0):
    """Return ``value`` once ``path`` exists (a test's way to hold a task running until it
    says go; bounded, so a broken test cannot hang a worker for ever)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return value


def mpi_fail_then_others_wait(rank_to_fail, x):
    """Raises on one rank while the others wait for it in a collective (issue 12)."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == rank_to_fail:
        raise ValueError(f"rank {rank_to_fail} failed on {x}")
    MPI.COMM_WORLD.Barrier()
    return x


def mpi_raise_two_arg_error(x):
    raise TwoArgError(f"failed on {x}", "detail")


def mpi_unpicklable_on_rank(rank):
    """Rank ``rank`` returns a lock (cannot be pickled), then every rank meets in a barrier."""
    import threading

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return threading.Lock() if comm.Get_rank() == rank else comm.Get_rank()


def mpi_break_worker_loop_on_rank(rank):
    """Makes the worker's own loop fail on one rank after this call returns: its reply
    encoder (in the worker's entry module, imported by name or run as ``__main__``) raises there."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == rank:
        def broken(reply):
            raise OSError("the worker loop broke")

        for name in ("__main__", "hpcfutures.worker.interactive", "hpcfutures.worker.one_shot", "hpcfutures.worker.file_task"):
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "encode"):
                module.encode = broken
    return MPI.COMM_WORLD.Get_rank()


def mpi_die_then_others_wait(rank_to_die):
    """One rank's process ends (no exception, no MPI_Finalize) while the others wait for it."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == rank_to_die:
        os._exit(3)
    MPI.COMM_WORLD.Barrier()
    return MPI.COMM_WORLD.Get_rank()


def start_child(how="popen", seconds=120):
    """Start a process that would outlive the task, and return its pid: ``popen``
    (``subprocess.Popen``), ``fork``, ``own_group`` (a process group of its own) or
    ``own_session`` (a session of its own: the documented way to start a daemon that stays)."""
    import subprocess

    if how == "fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(seconds)
            os._exit(0)
        return pid
    extra = {"own_group": {"preexec_fn": os.setpgrp}, "own_session": {"start_new_session": True}}.get(how, {})
    argv = [sys.executable, "-c", f"import time; time.sleep({seconds})"]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **extra).pid


def mpi_start_child(i, seconds=120):
    """Every MPI rank starts a child; returns the children's pids (rank 0 gets the list)."""
    return start_child("popen", seconds)


def wait_for_gate(path, timeout):
    """Block until ``path`` exists (a gate the test opens), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.path.exists(path)


def start_environment_key_like():
    """Values that look like an executor's key (64 hex digits, the form it travels in) in the
    environment this process started with or its command line: none should be there."""
    import re

    with open("/proc/self/environ", "rb") as f:
        environ = f.read()
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read()
    return sorted({m.decode() for m in re.findall(rb"(?:^|[=\0 ])([0-9a-f]{64})(?=\0|$| )", environ + b"\0" + cmdline)})


def start_environment_has(text):
    """Whether ``text`` is in the environment this process started with (/proc/self/environ,
    which removing a variable later does not change) or in its command line."""
    with open("/proc/self/environ", "rb") as f:
        environ = f.read()
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read()
    return text.encode() in environ or text.encode() in cmdline


def cwd_after(_upstream):
    """The working directory, once an upstream result is there."""
    return os.getcwd()


def meet_then_pid(folder, n, timeout=60.0):
    """A barrier across processes: mark arrival in ``folder``, wait until ``n`` calls have
    arrived, return this process's pid. Only ``n`` calls running at once get past it, so a
    test proves concurrency by an event, not by timing; bounded, so a broken test fails.
    Submit no more such calls than workers to a warm pool: with a backlog it may send a
    call ahead to a busy worker, where it would wait behind one at the barrier."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{os.getpid()}-{os.urandom(4).hex()}"), "w"):
        pass
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {n} calls ran at once")
        time.sleep(0.01)
    return os.getpid()


def devices_at_barrier(folder, n, timeout=60.0):
    """``(pid, CUDA_VISIBLE_DEVICES)`` once ``n`` calls are running at once (``meet_then_pid``)."""
    return meet_then_pid(folder, n, timeout), os.environ.get("CUDA_VISIBLE_DEVICES")


class Token:
    """A small argument the driver can watch (weak references) while its call is queued."""

    def __init__(self, value):
        self.value = value


def token_value(token):
    return token.value


def array_memory(a):
    """How a numpy argument arrived: the type of what holds its memory, whether it is
    writable, and its sum (to check the bytes)."""
    base = a.base
    while getattr(base, "base", None) is not None and not isinstance(base, memoryview):
        base = base.base
    return type(base).__name__, bool(a.flags.writeable), float(a.sum())


def runpy_and_first_path_entry():
    """Whether this worker process loaded runpy (``python -m``), and its ``sys.path[0]``."""
    import sys

    return "runpy" in sys.modules, sys.path[0]


def mpi_rank_and_sum(a):
    """Each MPI rank's rank and the sum of the array it received."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), float(a.sum())


def mpi_late_exit(directory, tag):
    """Every rank registers an atexit handler that writes ``atexit_TAG_RANK`` in ``directory``;
    rank 1's takes a second first (closing a file, flushing a log). Returns the rank."""
    import atexit

    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()

    def done():
        if rank == 1:
            time.sleep(1.0)
        with open(os.path.join(directory, f"atexit_{tag}_{rank}"), "w") as f:
            f.write("x")

    atexit.register(done)
    return rank


def mark_then_fail_at_three_exit_at_five(path, x):
    """Record that item ``x`` ran; item 3 raises ValueError, item 5 SystemExit."""
    count_call(path, x)
    if x == 3:
        raise ValueError("three")
    if x == 5:
        raise SystemExit(5)
    return x


def two_arg_error_at(x, bad):
    """Raise an exception that cannot be rebuilt from its pickle on item ``bad``."""
    if x == bad:
        raise_two_arg_error()
    return x
