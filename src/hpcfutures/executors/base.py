"""``BaseExecutor``: the ``concurrent.futures.Executor`` face every executor shares.

It validates input where the user can see the error (construction and ``submit()``),
pickles the call in the caller's thread (an unpicklable argument is a ``TypeError`` right
there), holds tasks whose arguments are futures until those resolve (callbacks, no
polling), and hands ready tasks to an engine (one process per task, or a warm pool).
"""

from __future__ import annotations

import atexit
import pickle as _pickle
import sys
import threading
import time
import weakref
from concurrent.futures import Executor, Future

from hpcfutures.engines.outcome import cancel_unstarted, fail_unstarted, settle
from hpcfutures.executors.mapping import ItemCosts, auto_chunksize, check_chunksize, ordered_results, submit_chunks
from hpcfutures.scheduling.dependencies import find_futures, propagate, substitute, when_all_done
from hpcfutures.scheduling.futures import TaskFuture
from hpcfutures.scheduling.resources import check_seconds, merge, validate
from hpcfutures.scheduling.task import Task

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

_live: "weakref.WeakSet[BaseExecutor]" = weakref.WeakSet()


def _at_exit() -> None:
    """An executor left open when the interpreter exits: its queued work is finished as
    ``concurrent.futures`` does, unless the exit is a Ctrl-C, which stops everything."""
    interrupted = getattr(sys, "last_type", None) is KeyboardInterrupt
    for executor in list(_live):
        try:
            if interrupted:
                executor._terminate()
            else:
                executor._at_interpreter_exit()
        except BaseException:
            executor._terminate()


atexit.register(_at_exit)

_SIGNATURE_OK: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _check_function(fn) -> None:
    if not callable(fn):
        raise TypeError(f"submit() needs a callable, got {type(fn).__qualname__}")
    try:
        if _SIGNATURE_OK.get(fn):
            return
    except TypeError:  # not weak-referenceable
        pass
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "resource_dict" in params:
        raise ValueError(
            f"{getattr(fn, '__qualname__', fn)!r} has a parameter named 'resource_dict', which submit() "
            "reserves for the task's resources; rename the parameter"
        )
    try:
        _SIGNATURE_OK[fn] = True
    except TypeError:
        pass


def graph_mode(plot: bool, plot_filename, workflow_filename) -> dict | None:
    """Graph-only mode when any of the three is set: checked now (a bad suffix or a missing
    matplotlib is an error at construction, not at exit).

    Args:
        plot: draw the graph at shutdown (``plot_dependency_graph``).
        plot_filename: write the drawing there (the suffix names the format).
        workflow_filename: write the graph as workflow JSON there.

    Returns:
        The three as keyword arguments of ``GraphRecorder``, or ``None`` (run the calls).

    Raises:
        ValueError: a file name without a known format suffix.
        ImportError: a format that needs matplotlib, which is missing.
    """
    if not (plot or plot_filename or workflow_filename):
        return None
    if plot_filename is not None:
        from hpcfutures.graph.draw import check_format

        check_format(plot_filename)
    return {"plot": bool(plot), "plot_filename": plot_filename, "workflow_filename": workflow_filename}


def refuse_unsupported(resources: dict, where: str, refused: dict) -> None:
    """Raise ``ValueError`` for a key this executor cannot honour (``refused``: key ->
    (test of an accepted value, reason)).

    Args:
        resources: the call's merged ``resource_dict``.
        where: where the error points to (``submit()``, ``Cls(resource_dict=...)``).
        refused: key -> (accepts(value) -> bool, the reason given when it does not).

    Raises:
        ValueError: a refused value, naming the key, the value and the reason.
    """
    for key, value in resources.items():
        rule = refused.get(key)
        if rule is not None and not rule[0](value):
            raise ValueError(f"{where}: resource_dict[{key!r}]={value!r} is not supported: {rule[1]}")


class BaseExecutor(Executor):
    """Shared behaviour; subclasses choose the engine and the accepted resource keys.

    Args:
        engine: any ``engines.interface.Engine``; a recording one (graph-only mode) runs nothing.
        defaults: the executor's ``resource_dict``, merged under each call's.
        max_cores: the core budget ``submit()`` checks a call against (``None``: no check).
        info: what ``executor.info`` shows.
        disable_dependencies: refuse futures as arguments instead of waiting for them.
    """

    _task_keys: frozenset = frozenset()
    _pass_unknown_keys = False  # queued-job executors hand unknown keys to the queue adapter

    def __init__(
        self,
        engine,
        defaults: dict,
        max_cores: int | None,
        info: dict,
        disable_dependencies: bool = False,
    ):
        # any engines.interface.Engine; a recording one (graph-only mode) runs nothing
        self._engine = engine
        self._defaults = defaults
        self._max_cores = max_cores
        self._info = info
        self._disable_dependencies = disable_dependencies
        self._lock = threading.Lock()
        self._shutdown = False
        self._waiting: set[Task] = set()  # held for their dependencies; shutdown waits for them
        self._released = threading.Condition(self._lock)
        self._stores: dict = {}  # cache directory -> CacheStore
        from hpcfutures.executors.overview import TaskBook

        self._book = TaskBook()  # for task_overview() and task_graph()
        self._item_costs = ItemCosts()  # what an item of each mapped function cost (map's chunk sizes)
        _live.add(self)

    # -- submit -------------------------------------------------------------------
    def submit(self, fn: Callable, /, *args: Any, resource_dict: dict | None = None, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` and return its future.

        Futures anywhere in ``args``/``kwargs`` (lists, tuples, dict values) make the call wait
        for them and receive their results.

        Args:
            fn: the function; it must not have a parameter named ``resource_dict``.
            *args: its positional arguments.
            resource_dict: this call's resources, merged over the executor's.
            **kwargs: its keyword arguments.

        Returns:
            A ``concurrent.futures.Future`` of the result (the list of rank results for
            ``cores > 1``).

        Raises:
            RuntimeError: the executor was shut down.
            ValueError: a bad ``resource_dict`` (unknown key, a key this executor cannot
                honour, more cores than ``max_cores``, ``num_nodes`` above ``cores``, a number
                outside its range such as a NaN or infinite ``run_time_max``, a ``cwd`` that
                cannot be a directory), an invalid ``cache_key``.
            UnsatisfiableRequestError: (SLURM executors) a request SLURM can never start.
            TypeError: ``fn`` is not callable, a value of the wrong type, an argument that
                cannot be pickled, a future argument with ``disable_dependencies=True``.
        """
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor after shutdown()")
        _check_function(fn)
        task_resources = self._check_task_resources(
            validate(resource_dict, "submit()", self._task_keys, self._pass_unknown_keys)
        )
        resources = merge(self._defaults, task_resources) if task_resources else self._defaults
        future: Future = TaskFuture()
        task = Task(future, fn, args, kwargs, resources)
        upstream = find_futures(args) + find_futures(kwargs) if (args or kwargs) else []
        self._book.add(task, upstream)
        if self._engine.records_calls:  # graph-only mode: the call as written, futures and all
            self._engine.enqueue(task)
        elif upstream:
            if self._disable_dependencies:
                raise TypeError(
                    "an argument of this call is a Future, but the executor was created with "
                    "disable_dependencies=True; pass results, or enable dependencies"
                )
            self._with_upstream(task, upstream)
        else:
            task.payload = self._pickle_call(task)
            self._dispatch(task)
        return future

    def _pickle_call(self, task: Task) -> bytes:
        """The call's pickle: large buffers out of band where the engine sends frames and no
        cache entry will store it (an entry's input is a plain pickle)."""
        return task.pickle(out_of_band=self._engine.sends_frames and not task.resources.get("cache_directory"))

    def _submit_plain_chunk(self, run_chunk: Callable, fn, chunk: list, star: bool) -> Future:
        """``submit(run_chunk, fn, chunk, star)`` for ``map``'s own chunks whose items are
        plain values (``mapping.ItemList``) and whose ``fn`` is already pickled
        (``Prepickled``): nothing in it can be a future or need cloudpickle, and the executor's
        own resources apply, so the checks of ``submit`` are skipped and the call is pickled
        in one C-level ``pickle.dumps`` (~40 us less per chunk; issue 15)."""
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor after shutdown()")
        future: Future = TaskFuture()
        task = Task(future, run_chunk, (fn, chunk, star), {}, self._defaults)
        self._book.add(task)
        try:
            task.payload = _pickle.dumps({"fn": run_chunk, "args": task.args, "kwargs": {}}, protocol=_pickle.HIGHEST_PROTOCOL)
        except Exception:  # cloudpickle's turn; an error names the call
            task.payload = task.pickle()
        self._dispatch(task)
        return future

    def _with_upstream(self, task: Task, upstream: list) -> None:
        """A call with futures among its arguments: run it once they have results."""
        if all(_succeeded(f) for f in upstream):  # nothing to wait for
            task.args = substitute(task.args)
            task.kwargs = substitute(task.kwargs)
            task.payload = self._pickle_call(task)
            self._dispatch(task)
        else:
            self._hold(task, upstream)

    def _dispatch(self, task: Task) -> None:
        """Answer from the cache if it holds the result, otherwise hand to the engine."""
        directory = task.resources.get("cache_directory")
        if directory is None or not self._answered_from_cache(task, directory):
            task.compact()  # the cache key is made: a small call's pickle is all it needs now
            self._engine.enqueue(task)

    def _cache_slot(self, task: Task, directory) -> tuple:
        """(store, key) of a task's cache entry."""
        store = self._stores.get(directory)
        if store is None:
            from hpcfutures.cache.store import CacheStore

            store = self._stores[directory] = CacheStore(directory)
        return store, task.resources.get("cache_key") or store.default_key(task.fn, task.args, task.kwargs)

    def _answered_from_cache(self, task: Task, directory) -> bool:
        store, key = self._cache_slot(task, directory)
        reply = store.lookup(key)
        if reply is None:
            task.cache = (store, key)  # store the result when it comes
            return False
        if task.start():
            settle(task, reply)
        return True

    def _check_task_resources(self, task_resources: dict) -> dict:
        """Subclass hook: refuse what this executor cannot honour, with the reason."""
        return task_resources

    def _hold(self, task: Task, upstream: list) -> None:
        """Wait for every upstream future by callback, then enqueue (or propagate failure)."""
        with self._lock:
            self._waiting.add(task)
        # cancelled while waiting: release it now, even if an upstream never finishes
        task.future.add_done_callback(lambda _: self._cancelled_while_held(task))

        def ready() -> None:
            if task.future.done():  # cancelled while it waited
                self._release(task)
                return
            try:
                task.queued_at = time.time()
                task.args = substitute(task.args)
                task.kwargs = substitute(task.kwargs)
                task.payload = self._pickle_call(task)
                self._dispatch(task)
            except BaseException as exc:
                fail_unstarted(task, exc)
            self._release(task)  # only now: shutdown must not stop the engine before the enqueue

        def failed(bad: Future) -> None:
            propagate(bad, task.future, task.name)
            self._release(task)

        when_all_done(upstream, ready, failed)

    def _cancelled_while_held(self, task: Task) -> None:
        if task.future.cancelled():
            task.start()  # wakes concurrent.futures.wait()/as_completed() on it
        self._release(task)

    def _release(self, task: Task) -> None:
        with self._lock:
            self._waiting.discard(task)
            self._released.notify_all()

    # -- map ----------------------------------------------------------------------
    def map(
        self,
        fn: Callable,
        *iterables: Iterable,
        timeout: float | None = None,
        chunksize: int | None = None,
        progress: bool | str = False,
    ) -> Iterator:
        """As ``Executor.map``: submit ``fn`` for every item now, return an iterator of the
        results in input order.

        An iterable that is itself a Future is resolved first. Items travel in chunks, one
        message each (see ``hpcfutures.executors.mapping``): by default, on warm workers
        (``block_allocation=True``), ``ceil(items / (4 * max_workers))`` items per chunk, as
        ``multiprocessing.Pool`` chooses, or up to one chunk per worker once an earlier map
        of ``fn`` showed its items to take well under a millisecond; elsewhere one item per
        call, each in its own process or job (and with a ``cache_directory``, so that each
        item is cached alone). A failing item's exception is raised where its result is
        reached, after the results before it; the items after it in its chunk do not run.

        Args:
            fn: the function to call on each item (pickled once for the whole map).
            *iterables: as many iterables as ``fn`` takes arguments.
            timeout: seconds from this call after which a result not yet there raises
                ``TimeoutError`` (``None``: wait as long as it takes).
            chunksize: items per message: ``None`` (default) for the policy above, or an
                int >= 1 (``1``: one call per item). In graph-only mode
                (``plot_dependency_graph``) every item is one call of the graph.
            progress: ``True`` (or a description text) draws a progress bar of the items
                as they finish, in a terminal or Jupyter; needs
                ``pip install "hpcfutures[progress]"`` (tqdm).

        Returns:
            An iterator over the results; leaving it early cancels what has not started (a
            call already sent ahead to a warm worker counts as started).

        Raises:
            ValueError: ``chunksize`` is neither None nor an int >= 1, or above 1 where each call runs
                on several MPI ranks (``cores`` > 1); ``timeout`` is NaN, infinite or
                longer than 100 years (before anything is submitted).
            TypeError: ``timeout`` is not a number or None.
            ImportError: ``progress`` without tqdm installed (before anything is submitted).
            MemoryError: the items (and so their results) cannot fit in memory (before
                anything is submitted).
        """
        check_chunksize(chunksize)
        if self._engine.records_calls:
            chunksize = 1  # graph-only mode: each item is one call of the graph, as written
        cores = self._defaults.get("cores", 1)
        if cores > 1:
            # a call on MPI ranks returns one result per rank: a chunk's would be each rank's
            # list of the chunk's results, not the items' (review F04)
            if chunksize is not None and chunksize > 1:
                raise ValueError(
                    f"chunksize={chunksize}: this executor runs each call on cores={cores} MPI ranks and a call "
                    "returns the list of its ranks' results, so map sends one item per call; leave chunksize "
                    "out or pass 1"
                )
            chunksize = 1
        # a negative timeout is already over, as in concurrent.futures; NaN or infinity would
        # fail only when the first result is awaited, after every call was submitted
        check_seconds(timeout, "map(timeout=...)", lowest=None, none_ok=True)
        if progress:
            from hpcfutures.progress_bar import tqdm_class

            tqdm_class()  # a missing extra is an error now, before anything is submitted
        if not self._engine.records_calls:
            _check_function(fn)  # now, not inside the first chunk in a worker
        iterables = tuple(it.result() if isinstance(it, Future) else it for it in iterables)
        name = getattr(fn, "__name__", "map")
        user_fn = fn
        if not self._engine.records_calls and callable(fn):
            from hpcfutures.wire.prepickled import Prepickled

            fn = Prepickled.of(fn)  # pickled once for the whole map, not once per item
        end_time = None if timeout is None else timeout + time.monotonic()
        star = len(iterables) != 1  # one iterable: its values are the arguments, no tuples
        if star:
            items = list(zip(*iterables))
        elif type(iterables[0]) is range and len(iterables[0]) <= _LAZY_RANGE:
            items = iterables[0]  # its chunks are ranges: no 20,000 ints to build and check
        else:  # a larger range is built as any iterable is: a map whose results cannot fit fails here
            items = list(iterables[0])
        on_complete = None
        if chunksize is None:
            workers = self._map_workers()
            chunksize = auto_chunksize(len(items), workers, self._item_costs.get(user_fn)) if workers else 1
            if workers and items:
                on_complete = _cost_recorder(self._item_costs, user_fn, len(items), workers)
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in items] if star else [self.submit(fn, item) for item in items]
            sizes = None
        else:
            from hpcfutures.worker.pool_calls import run_chunk

            from hpcfutures.wire.prepickled import Prepickled

            # the cheaper submit only where the call as a whole is plain data: fn pickled
            # already, no graph recording, no cache key (which names the call as submit makes it)
            plain_ok = isinstance(fn, Prepickled) and not self._engine.records_calls and not self._defaults.get("cache_directory")
            submit_plain = self._submit_plain_chunk if plain_ok else None
            futures, sizes = submit_chunks(self.submit, run_chunk, fn, items, chunksize, star, submit_plain)
        del items
        bar_closed = None
        if progress:
            from hpcfutures.progress_bar import attach

            bar_closed = attach(futures, progress if isinstance(progress, str) else name, sizes)
        return ordered_results(futures, end_time, chunked=sizes is not None, bar_closed=bar_closed, on_complete=on_complete)

    def _map_workers(self) -> int:
        """Warm workers ``map`` spreads its items over (chunking policy, see
        ``hpcfutures.executors.mapping``); 0 where every call gets a fresh process or job,
        which ``map`` keeps, and where results are cached or each call has a ``run_time_max``
        or ``retries``: one item per call."""
        if self._engine.records_calls or not self._info.get("block_allocation"):
            return 0
        if self._defaults.get("cache_directory"):  # each item its own cache entry, as before
            return 0
        if self._defaults.get("run_time_max") or self._defaults.get("retries"):
            return 0  # both are per call: a chunk's would limit (or rerun) several items at once
        return self._engine.max_workers or 1

    def batched(self, iterable, n: int) -> list:
        """Futures of the results of ``iterable`` in groups of ``n``, in completion order.

        Args:
            iterable: futures (of this executor or any other).
            n: the batch size (an int >= 1).

        Returns:
            ``ceil(len(iterable) / n)`` futures, each of a list of up to ``n`` results; a
            batch holding a failed or cancelled future gets that exception.

        Raises:
            ValueError: ``n`` is not an int >= 1, or a warm pool of ``n`` workers does not fit
                the machine, allocation or Flux instance (as at construction).
        """
        from hpcfutures.scheduling.derived_futures import batched

        return batched(iterable, n)

    # -- shutdown -----------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``; ``cancel_futures=True`` goes further than the standard
        library: it also stops the tasks that are running (their processes are killed, their
        futures raise ``CancelledError``), where ``concurrent.futures`` lets them finish.

        Args:
            wait: return only when everything submitted has ended (also calls still waiting
                for their dependencies); ``False`` returns at once.
            cancel_futures: cancel what has not started and stop what runs.
        """
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            waiting = list(self._waiting) if cancel_futures else []
        for task in waiting:
            cancel_unstarted(task)  # its dependency callback then releases it
        stop = self._terminate if cancel_futures else self._drain_and_stop
        if wait:
            stop()
        elif first or cancel_futures:
            threading.Thread(target=stop, name="hpcfutures-shutdown", daemon=True).start()

    def _at_interpreter_exit(self) -> None:
        """Left open at interpreter exit: finish the queued work (subclasses whose work
        outlives this process need not)."""
        self.shutdown(wait=True)

    def _drain_and_stop(self) -> None:
        with self._lock:
            while self._waiting:
                self._released.wait()
        self._engine.stop(wait=True)
        for store in list(self._stores.values()):
            store.flush()  # every cache entry on disk before shutdown returns
        _live.discard(self)

    def _terminate(self) -> None:
        """Stop now: cancel what waits and what is queued, kill what runs (also Ctrl-C and
        interpreter exit)."""
        with self._lock:
            self._shutdown = True
            waiting = list(self._waiting)
        for task in waiting:
            cancel_unstarted(task)
        self._engine.kill_all()
        self._drain_and_stop()

    def __exit__(self, exc_type, exc_val, exc_tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._terminate()  # Ctrl-C means stop: do not wait for running work
        else:
            self.shutdown(wait=True)
        return False

    # -- introspection ------------------------------------------------------------
    def task_overview(self) -> list[dict]:
        """What this executor's tasks are doing now, one dict per task in submission order
        (``pandas.DataFrame(exe.task_overview())`` makes it a table).

        Keys: ``id`` (1, 2, ... in submission order), ``function``, ``state``
        (``waiting-for-dependencies``, ``queued``, ``running``, ``done``, ``failed`` or
        ``cancelled``), ``worker`` (where it runs: ``"worker 0"`` for a warm worker,
        ``"pid 4711"`` for a fresh process, ``"job 123"`` for a batch job; ``None`` before it
        starts), ``since`` (when it
        entered its state, a ``datetime``), ``submitted`` (``datetime``), ``attempt`` (runs
        so far, with ``retries``), ``cores`` and ``depends_on`` (ids of the tasks of this
        executor among its arguments). Finished tasks are remembered without their results,
        the last 100,000 of them.

        Returns:
            A list of dicts, a snapshot: call it again to see progress.
        """
        with self._lock:
            waiting = set(self._waiting)
        return self._book.rows(waiting, self._engine.still_queued)

    def task_graph(self):
        """The dependency graph of this executor's tasks, each box filled by its state
        (grey waiting for dependencies, yellow queued, blue running, green done, red
        failed, violet cancelled).

        Returns:
            A ``hpcfutures.executors.overview.TaskGraph``: Jupyter shows it inline;
            ``.save("graph.svg")`` (or ``.dot``; ``.png``/``.pdf`` with matplotlib) writes
            it, ``.to_svg()`` gives the SVG text.
        """
        from hpcfutures.executors.overview import TaskGraph, graph_of

        return TaskGraph(*graph_of(self.task_overview()))

    def __len__(self) -> int:
        """Tasks not yet started: queued, or waiting for their dependencies."""
        return self._engine.queued() + len(self._waiting)

    def __bool__(self) -> bool:
        """Always True, as for executorlib's and the standard library's executors: without
        it ``__len__`` (queued tasks) would make an idle executor falsy, and ``if exe:`` or
        ``exe or default`` would go wrong."""
        return True

    @property
    def info(self) -> dict | None:
        """The executor's settings (``max_workers`` as it is now), or ``None`` once
        ``shutdown()`` was called, as in executorlib.

        Returns:
            A new dict: the constructor's parameters, ``resource_dict`` (the executor-level
            defaults), and, as executorlib has them, those defaults' keys at the top level
            too (``cores``, ``cwd``, ``threads_per_core``, ...; a parameter of the same name wins).
        """
        if self._shutdown:
            return None
        return flat_info(dict(self._info, max_workers=self.max_workers))

    @property
    def max_workers(self) -> int | None:
        """How many tasks may run at once (warm pool: its workers; one process per task:
        the count or core budget that bounds them). It keeps its value after shutdown, as in
        executorlib."""
        return self._engine.max_workers

    @max_workers.setter
    def max_workers(self, n: int) -> None:
        """Resize: a warm pool starts or retires workers, one process per task admits more
        or fewer at once.

        Raises:
            ValueError: ``n`` is not an int >= 1.
            RuntimeError: the executor was shut down.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {n!r}")
        if self._shutdown:
            raise RuntimeError(f"cannot change max_workers of a {type(self).__name__} after shutdown()")
        check = getattr(self, "_pool_check", None)
        if check is not None:  # a warm pool: the constructor's size check applies to a resize too
            check(n)
        self._engine.resize(n)
        self._info["max_workers"] = n


def flat_info(info: dict) -> dict:
    """``info`` with its ``resource_dict``'s keys also at the top level, as executorlib's
    ``exe.info`` has them (``exe.info["cores"]``); a top-level key of the same name wins.

    Args:
        info: the executor's settings, with ``resource_dict``.

    Returns:
        A new dict.
    """
    return {**(info.get("resource_dict") or {}), **info}


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None




_LAZY_RANGE = 1_000_000
"""Items of a ``range`` that ``map`` chunks without building its list first (the list of a
larger one costs little beside the map; building it refuses at once, with ``MemoryError``,
a map whose results could never fit: review G5)."""


def _cost_recorder(costs: ItemCosts, fn, n_items: int, workers: int) -> Callable[[], None]:
    """The ``on_complete`` of a chunked map started now: tells ``costs`` how long it took."""
    started = time.monotonic()

    def record() -> None:
        costs.record(fn, time.monotonic() - started, n_items, workers)

    return record
