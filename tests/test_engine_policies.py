"""The warm pool's policies, driven without processes: a fake launcher hands out fake
handles, a fake link plays the worker in the pool's own thread. Each test scripts what
each call does per attempt (reply, raise, block on a gate, kill its worker) and checks
what the pool did: which futures ended how, how many workers it started, what it sent.

Nothing here sleeps: every wait is on a condition with a timeout, so a broken policy
fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from concurrent.futures import CancelledError, Future

import pytest

from hpcfutures.errors import PoolBrokenError, UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.engines.warm_pool import WarmPool
from hpcfutures.launch.handle import MAY_QUEUE, Launcher, WorkerHandle
from hpcfutures.scheduling.task import Task
from hpcfutures.wire.frames import dumps, new_key

WAIT = 10.0  # seconds any single event may take before the test fails


class World:
    """What every fake shares: the calls' scripts, gates, and one condition on which every
    change (a send, a gate opened, a worker ended, a link shut down) is announced."""

    def __init__(self):
        self.cond = threading.Condition()
        self.scripts: dict[bytes, deque] = {}  # payload -> what each attempt does, in order
        self.gates: set[str] = set()  # opened gates
        self.links: list[FakeLink] = []
        self.init = lambda link, timeout: dumps({"result": None})  # what init_function does
        self.queued_workers = False  # workers wait in a scheduler's queue, never connecting

    def changed(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout=WAIT):
                raise AssertionError(f"never happened: {what}")

    def open(self, gate: str) -> None:
        with self.cond:
            self.gates.add(gate)
            self.cond.notify_all()


class FakeHandle(WorkerHandle):
    """A worker that is no process: it ends when told (``end``), its end is an eventfd."""

    def __init__(self, world: World, number: int):
        self.world = world
        self.label = f"fake {number}"
        self.capabilities = frozenset({MAY_QUEUE} if world.queued_workers else ())
        self.stderr_fd = None
        self.ended_fd = os.eventfd(0)
        self._ended = False
        self.killed = False
        self.closed = False

    def end(self) -> None:
        with self.world.cond:
            if not self._ended:
                self._ended = True
                os.eventfd_write(self.ended_fd, 1)
            self.world.cond.notify_all()

    @property
    def stderr_open(self) -> bool:
        return False

    def pump_stderr(self) -> None:
        pass

    def take_reports(self) -> list:
        return []

    def ended(self) -> bool:
        return self._ended

    def wait_ended(self, timeout) -> bool:
        with self.world.cond:
            return self.world.cond.wait_for(lambda: self._ended, timeout=timeout)

    def describe_exit(self) -> str:
        return f"{self.label} was killed" if self.killed else f"{self.label} ended"

    def exit_error(self) -> BaseException:
        return WorkerCrashedError(self.describe_exit())

    def stderr_tail(self) -> str:
        return ""

    def request(self) -> str:
        return "fake"

    def terminate(self, grace: float = 1.0) -> None:
        self.end()

    def kill(self) -> None:
        self.killed = True
        self.end()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.ended_fd)


class FakeLauncher(Launcher):
    """Hands out ``FakeHandle``s; ``failures`` are raised by the next starts, in order.
    With ``hold``, a start waits until the gate "start" opens (so that calls can be queued
    before the worker takes its first one: send-ahead is decided as a call is sent)."""

    name = "fake"
    capabilities = frozenset()

    def __init__(self, world: World, failures=(), hold: bool = False):
        self.world = world
        self.hold = hold
        self.failures = deque(failures)
        self.starts = 0
        self.handles: list[FakeHandle] = []

    def check(self, resources) -> None:
        pass

    def start(self, argv, resources, env, cwd=None, pass_fds=()) -> FakeHandle:
        with self.world.cond:
            if self.hold and not self.world.cond.wait_for(lambda: "start" in self.world.gates, timeout=WAIT):
                raise WorkerCrashedError("the test never let the worker start")
            self.starts += 1
            self.world.cond.notify_all()
            if self.failures:
                raise self.failures.popleft()
            handle = FakeHandle(self.world, self.starts)
            self.handles.append(handle)
            return handle


class FakeLink:
    """The pool's link to one fake worker. What was sent waits in ``inbox``; the worker
    runs a call when the pool asks for its reply, in the pool's thread, doing what the
    call's script says for this attempt."""

    def __init__(self, world: World, key: bytes):
        self.world = world
        self.key = key
        self.handle = None
        self.inbox: deque[bytes] = deque()
        self.received: list[bytes] = []  # every payload the worker got, in order
        self.shut = False
        with world.cond:
            world.links.append(self)

    def bind(self) -> str:
        return "fake:"

    def attach(self, handle):
        self.handle = handle
        return handle

    def wait_connected(self, wake_fd=None, timeout=None) -> None:
        if self.world.queued_workers:  # connects never; only the wake fd or the end stop the wait
            fds = [self.handle.ended_fd] + ([wake_fd] if wake_fd is not None else [])
            ready = select.select(fds, [], [], WAIT if timeout is None else timeout)[0]
            if wake_fd in ready:
                raise InterruptedError("wait interrupted")
            if not ready:
                raise TimeoutError("never connected")
        if self.handle.ended():
            raise self.handle.exit_error()

    def send_payload(self, payload) -> None:
        if self.handle.ended():
            raise self.handle.exit_error()
        with self.world.cond:
            self.inbox.append(bytes(payload))
            self.received.append(bytes(payload))
            self.world.cond.notify_all()

    def send_dict(self, message: dict) -> None:
        self.send_payload(b"init")

    def receive_payload(self, timeout=None, wake_fd=None):
        if not self.inbox or self.handle.ended():
            raise self.handle.exit_error()
        payload = self.inbox.popleft()
        if payload == b"init":
            return self.world.init(self, timeout)
        with self.world.cond:
            action = self.world.scripts[payload].popleft()
        return action(self, timeout)

    def shutdown(self, wait: bool = True, grace: float = 5.0) -> None:
        if self.handle is not None:
            self.handle.end()
            self.handle.close()
        with self.world.cond:
            self.shut = True
            self.world.cond.notify_all()


# -- what a call does on one attempt ----------------------------------------------------
def ok(value):
    return lambda link, timeout: dumps({"result": value})


def raises(exc: BaseException):
    return lambda link, timeout: dumps({"error": exc, "traceback": ""})


def dies(link, timeout):
    """The worker dies in the middle of the call."""
    link.handle.end()
    raise link.handle.exit_error()


def blocks(gate: str, value):
    """Runs until ``gate`` opens (or its worker is killed; or ``timeout`` passes)."""

    def action(link, timeout):
        world = link.world
        with world.cond:
            world.cond.wait_for(lambda: gate in world.gates or link.handle.ended(), timeout=timeout or WAIT)
            if link.handle.ended():
                raise link.handle.exit_error()
            if gate not in world.gates:
                raise TimeoutError("no reply in time")
        return dumps({"result": value})

    return action


# -- helpers ----------------------------------------------------------------------------
def make_pool(world: World, n_workers: int = 1, failures=(), hold: bool = False, **kwargs):
    launcher = FakeLauncher(world, failures, hold)
    pool = WarmPool(new_key(), n_workers, {}, launcher=launcher, link_factory=lambda key: FakeLink(world, key), **kwargs)
    return pool, launcher


def submit(pool: WarmPool, world: World, name: str, *attempts, **resources) -> Future:
    payload = name.encode()
    with world.cond:
        world.scripts[payload] = deque(attempts)
    future = Future()
    pool.enqueue(Task(future, _named(name), (), {}, resources, payload))
    return future


def _named(name: str):
    def fn():
        pass

    fn.__qualname__ = name
    return fn


def sent(world: World) -> list[bytes]:
    return [p for link in world.links for p in link.received if p != b"init"]


@pytest.fixture
def world():
    return World()


# -- send-ahead -------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_busy_worker_gets_the_next_call_sent_ahead_but_no_more(world):
    pool, launcher = make_pool(world, 1, hold=True)
    try:
        first = submit(pool, world, "a", blocks("a", 1))
        second = submit(pool, world, "b", ok(2))
        third = submit(pool, world, "c", ok(3))
        world.open("start")
        world.wait_for(lambda: sent(world) == [b"a", b"b"], "b sent ahead while a runs")
        assert pool.queued() == 2  # b waits on the worker, c in the queue
        assert not (first.done() or second.done() or third.done())
        world.open("a")
        assert [f.result(WAIT) for f in (first, second, third)] == [1, 2, 3]
        assert sent(world) == [b"a", b"b", b"c"]
        assert launcher.starts == 1
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_nothing_is_sent_ahead_while_another_worker_is_idle(world):
    pool, launcher = make_pool(world, 2)
    try:
        world.wait_for(lambda: launcher.starts == 2, "both workers started")
        slow = submit(pool, world, "slow", blocks("slow", "s"))
        world.wait_for(lambda: b"slow" in sent(world), "slow sent")
        quick = submit(pool, world, "quick", ok("q"))
        assert quick.result(WAIT) == "q"  # ran on the idle worker, not behind slow
        assert not slow.done()
        links = [link for link in world.links if link.received]
        assert sorted(len(link.received) for link in links) == [1, 1]
        world.open("slow")
        assert slow.result(WAIT) == "s"
    finally:
        pool.stop(wait=True)


def _queue_at_once(pool: WarmPool, world: World, calls: list) -> list:
    """Enqueue ``(name, *attempts)`` calls while no worker thread can take one: each
    thread then sees the whole backlog when it decides what to send ahead."""
    with pool._cond:
        return [submit(pool, world, name, *attempts) for name, *attempts in calls]


@pytest.mark.timeout(30)
def test_a_large_call_is_not_sent_ahead(world):
    """F08: a call sent ahead is written while the worker runs the one before, and read only
    once the worker's reply is written: a large one and a large reply would deadlock the
    link. Calls above _AHEAD_BYTES wait for the worker to be free."""
    from hpcfutures.engines.warm_pool import _AHEAD_BYTES

    pool, _ = make_pool(world, 1)
    big = "big" + "x" * _AHEAD_BYTES
    try:
        gate = blocks("g", "G")

        def announced_gate(link, timeout):
            world.open("running")  # the pool waits for this reply: it has sent all it will
            return gate(link, timeout)

        futures = _queue_at_once(pool, world, [("gate", announced_gate), (big, ok("B")), ("small", ok("S"))])
        world.wait_for(lambda: "running" in world.gates, "the first call runs")
        assert sent(world) == [b"gate"]  # the large call waits while the gate runs
        assert pool.queued() == 2
        world.open("g")
        assert [f.result(WAIT) for f in futures] == ["G", "B", "S"]
        assert sent(world) == [b"gate", big.encode(), b"small"]
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_a_large_call_behind_a_cancelled_one_is_not_sent_ahead_either(world):
    """Review G3: the size was checked on the head of the queue only; a cancelled call there
    let the large one behind it be sent ahead."""
    from hpcfutures.engines.warm_pool import _AHEAD_BYTES

    pool, _ = make_pool(world, 1)
    big = "big" + "x" * _AHEAD_BYTES
    try:
        gate = blocks("g", "G")

        def announced_gate(link, timeout):
            world.open("running")
            return gate(link, timeout)

        with pool._cond:  # the worker thread sees the whole queue, the cancelled call first
            futures = _queue_at_once(pool, world, [("gate", announced_gate), ("tiny", ok("T")), (big, ok("B"))])
            assert futures[1].cancel()
        world.wait_for(lambda: "running" in world.gates, "the first call runs")
        assert sent(world) == [b"gate"]
        world.open("g")
        assert futures[0].result(WAIT) == "G" and futures[2].result(WAIT) == "B"
        assert sent(world) == [b"gate", big.encode()]
    finally:
        pool.stop(wait=True)


# -- a worker that dies -----------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_worker_dying_mid_call_fails_only_that_call_and_runs_the_one_sent_ahead_elsewhere(world):
    pool, launcher = make_pool(world, 1, restart_limit=1, hold=True)
    try:
        first = submit(pool, world, "a", blocks("a", 1))
        second = submit(pool, world, "b", ok(2))
        world.open("start")
        world.wait_for(lambda: sent(world) == [b"a", b"b"], "b sent ahead")
        launcher.handles[0].end()  # the worker dies while a runs
        with pytest.raises(WorkerCrashedError, match="fake 1 ended"):
            first.result(WAIT)
        assert second.result(WAIT) == 2  # never started on the dead worker: run on its replacement
        assert launcher.starts == 2
        assert sent(world) == [b"a", b"b", b"b"]
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_a_worker_that_died_while_idle_costs_no_call(world):
    pool, launcher = make_pool(world, 1, restart_limit=1)
    try:
        assert submit(pool, world, "a", ok(1)).result(WAIT) == 1
        launcher.handles[0].end()
        assert submit(pool, world, "b", ok(2)).result(WAIT) == 2
        assert launcher.starts == 2
    finally:
        pool.stop(wait=True)


# -- restart counting and the broken pool -----------------------------------------------
@pytest.mark.timeout(30)
def test_restart_limit_counts_crashes_and_then_the_pool_is_broken(world):
    pool, launcher = make_pool(world, 1, restart_limit=1)
    try:
        with pytest.raises(WorkerCrashedError):
            submit(pool, world, "a", dies).result(WAIT)
        with pytest.raises(WorkerCrashedError):
            submit(pool, world, "b", dies).result(WAIT)
        with pytest.raises(PoolBrokenError, match="no worker is left") as broken:
            submit(pool, world, "c", ok(3)).result(WAIT)
        assert isinstance(broken.value.__cause__, WorkerCrashedError)
        assert launcher.starts == 2  # the first worker and one restart
        assert b"c" not in sent(world)
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_failed_starts_use_up_restart_limit_too(world):
    failures = [WorkerCrashedError("mpiexec failed"), WorkerCrashedError("mpiexec failed again")]
    pool, launcher = make_pool(world, 1, failures=failures, restart_limit=2)
    try:
        assert submit(pool, world, "a", ok(1)).result(WAIT) == 1
        assert launcher.starts == 3
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_too_many_failed_starts_break_the_pool(world):
    pool, launcher = make_pool(world, 1, failures=[WorkerCrashedError("no")] * 2, restart_limit=1)
    try:
        with pytest.raises(PoolBrokenError, match="no worker is left"):
            submit(pool, world, "a", ok(1)).result(WAIT)
        assert launcher.starts == 2
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_a_request_the_scheduler_refuses_is_not_restarted(world):
    refused = UnsatisfiableRequestError("SLURM will never start it: PartitionConfig")
    pool, launcher = make_pool(world, 1, failures=[refused], restart_limit=5)
    try:
        with pytest.raises(PoolBrokenError, match="PartitionConfig") as broken:
            submit(pool, world, "a", ok(1)).result(WAIT)
        assert broken.value.__cause__ is refused
        assert launcher.starts == 1  # hopeless: no restart tried
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_a_failing_init_function_is_a_failed_start(world):
    world.init = raises(ValueError("no database"))
    pool, launcher = make_pool(world, 1, restart_limit=1, init_function=lambda: None)
    try:
        with pytest.raises(PoolBrokenError, match="init_function failed in worker 0") as broken:
            submit(pool, world, "a", ok(1)).result(WAIT)
        assert isinstance(broken.value.__cause__.__cause__, ValueError)
        assert launcher.starts == 2
        assert sent(world) == []  # the call never reached a worker
    finally:
        pool.stop(wait=True)


# -- retries ----------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_retried_call_restarts_its_worker_without_using_restart_limit(world):
    pool, launcher = make_pool(world, 1, restart_limit=0)
    try:
        future = submit(pool, world, "a", dies, dies, ok("third time"), retries=2)
        assert future.result(WAIT) == "third time"
        assert launcher.starts == 3
        assert submit(pool, world, "b", ok(2)).result(WAIT) == 2  # the pool is not broken
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_retries_run_out_and_the_last_error_is_the_futures(world):
    pool, launcher = make_pool(world, 1, restart_limit=5)
    try:
        with pytest.raises(WorkerCrashedError, match="fake 2 ended"):
            submit(pool, world, "a", dies, dies, ok("never"), retries=1).result(WAIT)
        assert launcher.starts >= 2
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_retry_on_reruns_a_listed_exception_on_the_same_worker(world):
    pool, launcher = make_pool(world, 1)
    try:
        future = submit(pool, world, "a", raises(KeyError("flaky")), ok("fine"), retries=1, retry_on=(KeyError,))
        assert future.result(WAIT) == "fine"
        unlisted = submit(pool, world, "b", raises(ValueError("bad")), ok("never"), retries=1, retry_on=(KeyError,))
        with pytest.raises(ValueError, match="bad"):
            unlisted.result(WAIT)
        assert launcher.starts == 1  # a function's exception is no reason to replace its worker
        assert sent(world) == [b"a", b"a", b"b"]
    finally:
        pool.stop(wait=True)


@pytest.mark.timeout(30)
def test_run_time_max_replaces_the_worker_and_fails_the_call(world):
    pool, launcher = make_pool(world, 1)
    try:
        future = submit(pool, world, "slow", blocks("never", 1), run_time_max=0.01)
        with pytest.raises(TimeoutError, match="run_time_max=0.01"):
            future.result(WAIT)
        assert submit(pool, world, "b", ok(2)).result(WAIT) == 2
        assert launcher.starts == 2  # a timeout is not a crash: restart_limit=0 still restarts
    finally:
        pool.stop(wait=True)


# -- resize -----------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_resize_up_starts_workers_and_down_retires_them(world):
    pool, launcher = make_pool(world, 1)
    try:
        pool.resize(3)
        assert pool.max_workers == 3
        futures = [submit(pool, world, name, blocks(name, name)) for name in ("a", "b", "c")]
        world.wait_for(lambda: sorted(sent(world)) == [b"a", b"b", b"c"], "three calls running at once")
        assert launcher.starts == 3
        pool.resize(1)
        assert pool.max_workers == 1
        for name in ("a", "b", "c"):
            world.open(name)
        assert [f.result(WAIT) for f in futures] == ["a", "b", "c"]  # retiring lets a call finish
        world.wait_for(lambda: sum(link.shut for link in world.links) == 2, "two workers retired")
        assert submit(pool, world, "d", ok("d")).result(WAIT) == "d"
        assert launcher.starts == 3
    finally:
        pool.stop(wait=True)


# -- shutdown ---------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_kill_all_kills_the_workers_and_cancels_every_call(world):
    pool, launcher = make_pool(world, 1)
    running = submit(pool, world, "a", blocks("a", 1))
    world.wait_for(lambda: sent(world) == [b"a"], "a running")
    queued = submit(pool, world, "b", ok(2))
    pool.kill_all()
    with pytest.raises(CancelledError):
        running.result(WAIT)
    assert queued.cancelled() or isinstance(queued.exception(WAIT), CancelledError)
    assert all(handle.killed and handle.closed for handle in launcher.handles)


@pytest.mark.timeout(30)
def test_a_graceful_shutdown_does_not_wait_for_a_worker_still_in_a_queue(world):
    world.queued_workers = True
    pool, launcher = make_pool(world, 2)
    world.wait_for(lambda: launcher.starts == 2, "both workers launched")
    pool.stop(wait=True)  # returns: the wake fd ends the wait for the workers to connect
    assert len(launcher.handles) == 2
    assert all(handle.closed for handle in launcher.handles)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.resize(3)
