"""pympipool's ``Pool`` and ``MPISpawnPool``: the ``multiprocessing.pool.Pool`` interface
(``map``, ``starmap``, ``map_async``, ``starmap_async``, ``imap``, ``imap_unordered``,
``apply``, ``apply_async``) over warm workers. Results come back in input order
(``imap_unordered``: as they finish); the first failing call's exception is raised by
``map``/``starmap``, as multiprocessing does; a wait that runs out raises
``multiprocessing.TimeoutError`` (``PoolTimeoutError``, also a builtin ``TimeoutError``)."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, as_completed
from concurrent.futures import wait as wait_futures

from hpcfutures.compat.backend_switches import refuse_missing_backends, warm_pool_class
from hpcfutures.executors.mapping import auto_chunksize, check_chunksize, submit_chunks, take_partial
from hpcfutures.worker.pool_calls import call_with_comm, run_chunk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator


class PoolTimeoutError(multiprocessing.TimeoutError, TimeoutError):
    """A result not there in time: ``multiprocessing.TimeoutError``, as a ``Pool`` of
    ``multiprocessing`` raises it, and a builtin ``TimeoutError`` as futures raise it."""


class AsyncResult:
    """What ``apply_async`` returns, as in ``multiprocessing``: ``get``, ``wait``,
    ``ready``, ``successful``.

    Args:
        future: the future behind the result.
        callback: called with the value once it succeeded (``multiprocessing``'s ``callback``).
        error_callback: called with the exception once it failed or was cancelled.
    """

    def __init__(self, future, callback=None, error_callback=None):
        self._future = future
        if callback is not None or error_callback is not None:

            def done(fut):
                if fut.cancelled():
                    return
                if fut.exception() is None:
                    if callback is not None:
                        callback(fut.result())
                elif error_callback is not None:
                    error_callback(fut.exception())

            future.add_done_callback(done)

    def get(self, timeout: float | None = None):
        """The result (or raise the call's exception).

        Args:
            timeout: seconds to wait; ``None``: as long as it takes.

        Returns:
            The call's result (``map_async``: the list of results in input order).

        Raises:
            PoolTimeoutError: not there in time (``multiprocessing.TimeoutError``).
            Exception: the call's exception.
        """
        wait_futures([self._future], timeout)
        if not self._future.done():
            raise PoolTimeoutError(f"no result within {timeout} s")
        return self._future.result()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the call ended, at most ``timeout`` seconds (``None``: no limit)."""
        from concurrent.futures import wait

        wait([self._future], timeout)

    def ready(self) -> bool:
        """Whether the call ended."""
        return self._future.done()

    def successful(self) -> bool:
        """Whether the call ended with a result (``multiprocessing``'s ``AsyncResult.successful``).

        Raises:
            ValueError: the call has not ended yet.
        """
        if not self._future.done():
            raise ValueError(f"{self!r} not ready")
        return not self._future.cancelled() and self._future.exception() is None


class IMapIterator:
    """What ``imap`` and ``imap_unordered`` return, as in ``multiprocessing``: an iterator
    whose ``next(timeout)`` raises ``PoolTimeoutError`` (``multiprocessing.TimeoutError``)
    when the next result is not there in time. A failing call raises its exception where
    its result would be; iterating on goes on with the calls after it (the items after the
    failing one in its chunk are lost, as in ``multiprocessing`` with ``chunksize > 1``).

    Args:
        futures: one future per chunk, in input order.
        items_of: a done chunk future -> (its results, its exception or None).
        ordered: results in input order (``imap``) or as chunks finish (``imap_unordered``).
    """

    def __init__(self, futures: list, items_of, ordered: bool):
        self._items_of = items_of
        self._buffer: deque = deque()
        self._error: BaseException | None = None
        self._left = len(futures)
        self._lock = threading.Lock()
        self._pending: deque = deque(futures) if ordered else deque()
        self._done: queue.Queue | None = None
        if not ordered:
            self._done = queue.Queue()
            for future in futures:
                future.add_done_callback(self._done.put)

    def __iter__(self) -> "IMapIterator":
        return self

    def __next__(self):
        return self.next()

    def next(self, timeout: float | None = None):
        """The next result.

        Args:
            timeout: seconds to wait for it; ``None``: as long as it takes.

        Returns:
            The next result.

        Raises:
            PoolTimeoutError: it is not there in time (the iterator stays usable).
            StopIteration: no results left.
            Exception: the exception of the call whose result is next.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        # another thread inside next() holds the lock while it waits: our timeout counts there too
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise PoolTimeoutError(f"no result within {timeout} s")
        try:
            while True:
                if self._buffer:
                    return self._buffer.popleft()
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                if self._left == 0:
                    raise StopIteration
                future = self._next_done(None if deadline is None else max(0.0, deadline - time.monotonic()))
                self._left -= 1
                items, self._error = self._items_of(future)
                self._buffer.extend(items)
        finally:
            self._lock.release()

    def _next_done(self, timeout: float | None):
        if self._done is None:
            future = self._pending[0]
            wait_futures([future], timeout)
            if not future.done():
                raise PoolTimeoutError(f"no result within {timeout} s")
            return self._pending.popleft()
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            raise PoolTimeoutError(f"no result within {timeout} s") from None


class Pool:
    """``max_workers`` warm serial workers behind the ``multiprocessing.pool.Pool`` API.

    ``chunksize`` (default: about four chunks per worker, as multiprocessing chooses) sends
    several items per message; ``progress=True`` shows a tqdm bar for ``map``/``starmap``
    (``pip install "hpcfutures[progress]"``).

    Args:
        max_workers: warm serial workers (>= 1).
        enable_flux_backend: ``True``: each worker is a job of the enclosing Flux instance
            (``FluxJobExecutor``'s warm workers: run inside ``flux start`` or ``flux alloc``,
            so that ``FLUX_URI`` is set); not together with ``enable_slurm_backend`` or a
            queue adapter (``ValueError``).
        enable_slurm_backend: ``True``: the workers are ``srun`` steps (``SlurmJobExecutor``'s).
        oversubscribe: let Open MPI place more ranks than cores (``--oversubscribe``).
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``): warm workers
            through a pysqa queue adapter are not built; ``SlurmClusterExecutor`` submits one
            job per call.
        cwd: the workers' working directory (created if missing); ``None``: the driver's.
        progress: draw a tqdm bar for ``map``/``starmap`` (``pip install
            "hpcfutures[progress]"``); each call may override it.

    Raises:
        ValueError: a count below 1; ``enable_flux_backend`` together with
            ``enable_slurm_backend``; either of them together with a queue adapter; a pool
            larger than the allocation (srun) or the Flux instance; under Flux,
            ``oversubscribe=True`` (Flux gives every rank a core of its own).
        NotImplementedError: a queue adapter without a backend switch.
        ImportError: ``progress=True`` without tqdm; ``enable_flux_backend`` without Flux's
            Python bindings.
        RuntimeError: ``enable_flux_backend`` outside a Flux instance (``FLUX_URI`` unset).
    """

    def __init__(
        self,
        max_workers: int = 1,
        oversubscribe: bool = False,
        enable_flux_backend: bool = False,
        enable_slurm_backend: bool = False,
        queue_adapter=None,
        queue_adapter_kwargs: dict | None = None,
        cwd: str | None = None,
        progress: bool = False,
    ):
        self._backend = refuse_missing_backends(
            type(self).__name__, enable_flux_backend, enable_slurm_backend, queue_adapter, queue_adapter_kwargs
        )
        if self._backend == "flux":  # outside Flux: the message names Pool, not FluxJobExecutor
            from hpcfutures.launch.flux import require_flux

            require_flux(type(self).__name__)
        if progress:
            _tqdm()  # missing extra: say so now, not in the middle of a map
        self._progress = progress
        self._executor = self._make_executor(max_workers, oversubscribe, cwd)
        self._workers = self._executor.max_workers

    def _make_executor(self, max_workers: int, oversubscribe: bool, cwd):
        return warm_pool_class(self._backend)(
            max_workers=max_workers,
            block_allocation=True,
            resource_dict={"cwd": cwd} if cwd is not None else None,
            openmpi_oversubscribe=oversubscribe,
        )

    # -- the multiprocessing API ------------------------------------------------------
    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None, progress: bool | None = None) -> list:
        """``[func(x) for x in iterable]``, run on the workers.

        Args:
            func: a function of one argument.
            iterable: its arguments.
            chunksize: items per message (default: about four chunks per worker).
            progress: draw a tqdm bar (``None``: the pool's setting).

        Returns:
            The results in input order.

        Raises:
            ValueError: a ``chunksize`` below 1.
            Exception: the first failing call's exception.
        """
        return self._ordered(func, list(iterable), chunksize, star=False, progress=progress)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None, progress: bool | None = None) -> list:
        """``[func(*args) for args in iterable]``, run on the workers.

        Args:
            func: the function.
            iterable: tuples of its arguments.
            chunksize: items per message (default: about four chunks per worker).
            progress: draw a tqdm bar (``None``: the pool's setting).

        Returns:
            The results in input order.

        Raises:
            ValueError: a ``chunksize`` below 1.
            Exception: the first failing call's exception.
        """
        return self._ordered(func, [tuple(args) for args in iterable], chunksize, star=True, progress=progress)

    def map_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None, callback=None, error_callback=None) -> AsyncResult:
        """As ``map``, without waiting (``multiprocessing``'s ``map_async``).

        Args:
            func: a function of one argument.
            iterable: its arguments.
            chunksize: items per message (default: about four chunks per worker).
            callback: called with the list of results once every call succeeded.
            error_callback: called with the first failing call's exception.

        Returns:
            An ``AsyncResult``; ``get()`` gives the results in input order.

        Raises:
            ValueError: a ``chunksize`` that is not None or an int >= 1.
        """
        return self._async(func, list(iterable), chunksize, False, callback, error_callback)

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None, callback=None, error_callback=None) -> AsyncResult:
        """As ``starmap``, without waiting (``multiprocessing``'s ``starmap_async``).

        Args:
            func: the function.
            iterable: tuples of its arguments.
            chunksize: items per message (default: about four chunks per worker).
            callback: called with the list of results once every call succeeded.
            error_callback: called with the first failing call's exception.

        Returns:
            An ``AsyncResult``; ``get()`` gives the results in input order.

        Raises:
            ValueError: a ``chunksize`` that is not None or an int >= 1.
        """
        return self._async(func, [tuple(args) for args in iterable], chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """As ``map``, lazily: an iterator of the results in input order (all calls are
        submitted at once).

        Args:
            func: a function of one argument.
            iterable: its arguments.
            chunksize: items per message.

        Returns:
            An ``IMapIterator`` (``next(timeout)`` as in ``multiprocessing``); it raises a
            failing call's exception when it reaches that call.

        Raises:
            ValueError: a ``chunksize`` that is not an int >= 1.
        """
        return IMapIterator(self._submit_chunks(func, list(iterable), chunksize, star=False), self._items_of, ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """As ``imap``, the results in the order they finish (per chunk).

        Args:
            func: a function of one argument.
            iterable: its arguments.
            chunksize: items per message.

        Returns:
            An ``IMapIterator`` of the results as they finish.

        Raises:
            ValueError: a ``chunksize`` that is not an int >= 1.
        """
        return IMapIterator(self._submit_chunks(func, list(iterable), chunksize, star=False), self._items_of, ordered=False)

    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None) -> Any:
        """``func(*args, **kwds)`` on a worker, waiting for its result.

        Args:
            func: the function.
            args: its positional arguments.
            kwds: its keyword arguments.

        Returns:
            Its result; its exception is raised here.
        """
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None, callback=None, error_callback=None) -> AsyncResult:
        """``func(*args, **kwds)`` on a worker, without waiting.

        Args:
            func: the function.
            args: its positional arguments.
            kwds: its keyword arguments.
            callback: called with the result when it succeeds (in the thread that ends it).
            error_callback: called with the exception when it fails.

        Returns:
            An ``AsyncResult``.
        """
        return AsyncResult(self._executor.submit(func, *args, **(kwds or {})), callback, error_callback)

    def close(self) -> None:
        """No more work; ``join()`` then waits for what was submitted."""
        self._executor.shutdown(wait=False)

    def join(self) -> None:
        """Wait until everything submitted has ended and the workers stopped."""
        self._executor.shutdown(wait=True)

    def terminate(self) -> None:
        """Stop now: pending calls are cancelled, running ones killed."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self._executor.__exit__(*exc)

    # -- internals ------------------------------------------------------------------
    def _submit_chunks(self, func, items: list, chunksize: int | None, star: bool) -> list:
        check_chunksize(chunksize)
        size = chunksize or auto_chunksize(len(items), self._workers)
        return submit_chunks(self._executor.submit, run_chunk, func, items, size, star)[0]

    def _chunk_results(self, future) -> Iterator:
        """A chunk's results; a failing item's exception after the results before it."""
        try:
            result = future.result()
        except BaseException as exc:
            yield from take_partial(exc)
            raise
        yield from self._unwrap(result)

    def _unwrap(self, chunk_result) -> list:
        return chunk_result

    def _items_of(self, future) -> tuple:
        """(the results, the exception or None) of a done chunk future."""
        try:
            result = future.result()
        except BaseException as exc:
            return list(take_partial(exc)), exc
        return list(self._unwrap(result)), None

    def _async(self, func, items: list, chunksize, star: bool, callback, error_callback) -> AsyncResult:
        futures = self._submit_chunks(func, items, chunksize, star)
        whole: Future = Future()
        whole.set_running_or_notify_cancel()
        left = [len(futures)]
        lock = threading.Lock()

        def one_done(done: Future) -> None:
            # only the chunk that just ended is looked at (a rescan of all of them made
            # thousands of chunks quadratic); the results are joined once, at the last
            with lock:
                left[0] -= 1
                if whole.done():
                    return
                error = None if done.cancelled() else done.exception()
                if done.cancelled() or error is not None:  # the first failure ends it, as in multiprocessing
                    whole.set_exception(self._items_of(done)[1])
                    return
                if left[0] == 0:
                    whole.set_result([item for f in futures for item in self._items_of(f)[0]])

        if not futures:
            whole.set_result([])
        for future in futures:
            future.add_done_callback(one_done)
        return AsyncResult(whole, callback, error_callback)

    def _ordered(self, func, items: list, chunksize: int | None, star: bool, progress: bool | None) -> list:
        futures = self._submit_chunks(func, items, chunksize, star)
        show = self._progress if progress is None else progress
        if show:
            bar = _tqdm()(total=len(items))
            for future in as_completed(futures):
                if future.exception() is None:
                    bar.update(len(future.result()))
            bar.close()
        results: list = []
        for future in futures:
            results.extend(self._chunk_results(future))  # raises the first failing item's error
        return results


class MPISpawnPool(Pool):
    """``map``/``starmap`` of MPI-parallel functions: each call runs on ``ranks_per_task``
    ranks and receives a ``comm`` keyword, its own communicator; ``max_ranks //
    ranks_per_task`` calls run at once; each call's result is its rank 0's.

    Built from fixed groups of ranks rather than ``MPI_Comm_spawn``: every worker is one
    ``mpiexec -n ranks_per_task`` and ``comm`` is its ``COMM_WORLD``. Spawning is fragile
    on the stacks users have (Open MPI 5 singletons, MPICH as root, PMIx inside batch
    jobs); fixed groups behave the same everywhere and need no MPI in the driver.

    Args:
        max_ranks: ranks of all workers together; ``max_ranks // ranks_per_task`` workers.
        ranks_per_task: ranks of each call (each worker is one ``mpiexec`` of that size).
        oversubscribe: let Open MPI place more ranks than cores (``--oversubscribe``).
        queue_adapter, queue_adapter_kwargs: refused (``NotImplementedError``): warm workers
            through a pysqa queue adapter are not built; ``SlurmClusterExecutor`` submits one
            job per call.
        cwd: the workers' working directory (created if missing); ``None``: the driver's.
        progress: draw a tqdm bar for ``map``/``starmap`` (``pip install
            "hpcfutures[progress]"``); each call may override it.

    Raises:
        ValueError: ``ranks_per_task`` below 1 or ``max_ranks`` below it.
        NotImplementedError: a queue adapter.
        ImportError: ``progress=True`` without tqdm.
    """

    def __init__(
        self,
        max_ranks: int = 1,
        ranks_per_task: int = 1,
        oversubscribe: bool = False,
        queue_adapter=None,
        queue_adapter_kwargs: dict | None = None,
        cwd: str | None = None,
        progress: bool = False,
    ):
        if not isinstance(ranks_per_task, int) or ranks_per_task < 1:
            raise ValueError(f"ranks_per_task must be an int >= 1, got {ranks_per_task!r}")
        if not isinstance(max_ranks, int) or max_ranks < ranks_per_task:
            raise ValueError(f"max_ranks={max_ranks!r} must be an int >= ranks_per_task={ranks_per_task}")
        self._ranks_per_task = ranks_per_task
        super().__init__(
            max_workers=max_ranks // ranks_per_task,
            oversubscribe=oversubscribe,
            queue_adapter=queue_adapter,
            queue_adapter_kwargs=queue_adapter_kwargs,
            cwd=cwd,
            progress=progress,
        )

    def _make_executor(self, max_workers: int, oversubscribe: bool, cwd):
        resources: dict = {"cores": self._ranks_per_task}
        if cwd is not None:
            resources["cwd"] = cwd
        return warm_pool_class(self._backend)(
            max_workers=max_workers, block_allocation=True, resource_dict=resources, openmpi_oversubscribe=oversubscribe
        )

    def _submit_chunks(self, func, items: list, chunksize: int | None, star: bool) -> list:
        # one call per item: a call occupies all ranks of its worker
        return [self._executor.submit(call_with_comm, func, tuple(item) if star else (item,)) for item in items]

    def _unwrap(self, result) -> list:
        return [result[0] if self._ranks_per_task > 1 else result]


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError('a progress bar needs tqdm: pip install "hpcfutures[progress]"') from None
    return tqdm
