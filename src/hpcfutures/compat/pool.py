"""pympipool's ``Pool`` and ``MPISpawnPool``: the ``multiprocessing.pool.Pool`` interface
(``map``, ``starmap``, ``imap``, ``imap_unordered``, ``apply``, ``apply_async``) over warm
workers. Results come back in input order (``imap_unordered``: as they finish); the first
failing call's exception is raised by ``map``/``starmap``, as multiprocessing does."""

from __future__ import annotations

import itertools
from concurrent.futures import as_completed

from hpcfutures.compat.backends import refuse_missing_backends, warm_pool_class
from hpcfutures.worker.adapters import call_with_comm, run_chunk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator


class AsyncResult:
    """What ``apply_async`` returns, as in ``multiprocessing``: ``get``, ``wait``,
    ``ready``, ``successful``."""

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
        return self._future.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        from concurrent.futures import wait

        wait([self._future], timeout)

    def ready(self) -> bool:
        return self._future.done()

    def successful(self) -> bool:
        if not self._future.done():
            raise ValueError(f"{self!r} not ready")
        return not self._future.cancelled() and self._future.exception() is None


class Pool:
    """``max_workers`` warm serial workers behind the ``multiprocessing.pool.Pool`` API.

    ``chunksize`` (default: about four chunks per worker, as multiprocessing chooses) sends
    several items per message; ``progress=True`` shows a tqdm bar for ``map``/``starmap``
    (``pip install "hpcfutures[progress]"``)."""

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
        return self._ordered(func, list(iterable), chunksize, star=False, progress=progress)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None, progress: bool | None = None) -> list:
        return self._ordered(func, [tuple(args) for args in iterable], chunksize, star=True, progress=progress)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> Iterator:
        for future in self._submit_chunks(func, list(iterable), chunksize, star=False):
            yield from self._unwrap(future.result())

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> Iterator:
        for future in as_completed(self._submit_chunks(func, list(iterable), chunksize, star=False)):
            yield from self._unwrap(future.result())

    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None) -> Any:
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None, callback=None, error_callback=None) -> AsyncResult:
        return AsyncResult(self._executor.submit(func, *args, **(kwds or {})), callback, error_callback)

    def close(self) -> None:
        """No more work; ``join()`` then waits for what was submitted."""
        self._executor.shutdown(wait=False)

    def join(self) -> None:
        self._executor.shutdown(wait=True)

    def terminate(self) -> None:
        """Stop now: pending calls are cancelled, running ones killed."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self._executor.__exit__(*exc)

    # -- internals ------------------------------------------------------------------
    def _auto_chunksize(self, n: int) -> int:
        chunks, extra = divmod(n, self._workers * 4)
        return max(1, chunks + bool(extra))

    def _submit_chunks(self, func, items: list, chunksize: int | None, star: bool) -> list:
        size = chunksize or self._auto_chunksize(len(items))
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}")
        it = iter(items)
        chunks = iter(lambda: list(itertools.islice(it, size)), [])
        return [self._executor.submit(run_chunk, func, chunk, star) for chunk in chunks]

    def _unwrap(self, chunk_result) -> list:
        return chunk_result

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
            results.extend(self._unwrap(future.result()))
        return results


class MPISpawnPool(Pool):
    """``map``/``starmap`` of MPI-parallel functions: each call runs on ``ranks_per_task``
    ranks and receives a ``comm`` keyword, its own communicator; ``max_ranks //
    ranks_per_task`` calls run at once; each call's result is its rank 0's.

    Built from fixed groups of ranks rather than ``MPI_Comm_spawn``: every worker is one
    ``mpiexec -n ranks_per_task`` and ``comm`` is its ``COMM_WORLD``. Spawning is fragile
    on the stacks users have (Open MPI 5 singletons, MPICH as root, PMIx inside batch
    jobs); fixed groups behave the same everywhere and need no MPI in the driver."""

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
