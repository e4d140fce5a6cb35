"""A progress bar for any set of futures (tqdm: ``pip install "hpcfutures[progress]"``).

``progress(futures)`` draws one bar that advances as futures finish, in completion order,
whichever executor they came from; ``exe.map(fn, items, progress=True)`` does the same for
a map. ``tqdm.auto`` picks the Jupyter widget in a notebook (when ipywidgets is installed)
and the text bar in a terminal. The bar is advanced from done-callbacks, so nothing polls
and a bar over futures that are already done is full at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable


def tqdm_class():
    """``tqdm.auto.tqdm``, or an ImportError that names the extra to install.

    Raises:
        ImportError: tqdm is not installed.
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError('a progress bar needs tqdm: pip install "hpcfutures[progress]"') from None
    return tqdm


def progress(
    futures: Iterable[Future],
    *,
    desc: str | None = None,
    wait: bool = True,
    sizes: list[int] | None = None,
    **tqdm_kwargs: Any,
) -> list[Future]:
    """Draw a progress bar that advances as ``futures`` finish (succeed, fail or are
    cancelled), the way ``dask.distributed.progress`` does for dask futures.

    Args:
        futures: futures from any executor (a list, a dict's values, a generator).
        desc: text before the bar (tqdm's ``desc``).
        wait: ``True`` returns once every future is done (the bar is then full);
            ``False`` returns at once and the bar completes in the background.
        sizes: items each future stands for (a chunk of a ``map``), so the bar counts
            items rather than futures; default 1 each.
        **tqdm_kwargs: passed on to ``tqdm`` (``unit``, ``leave``, ``file``, ``ncols``, ...).

    Returns:
        The futures, as a list in the order given.

    Raises:
        ImportError: tqdm is not installed.
        ValueError: ``sizes`` does not have one entry per future.
    """
    futures = list(futures)
    all_done = attach(futures, desc, sizes, **tqdm_kwargs)
    if wait:
        all_done.wait()
    return futures


def attach(futures: list, desc: str | None = None, sizes: list[int] | None = None, **tqdm_kwargs: Any) -> threading.Event:
    """Start a bar over ``futures`` (see ``progress``) and return an event that is set once
    the bar is full and closed (``map`` waits for it before its last result, so nothing
    printed after the map lands in the middle of the bar).

    Args:
        futures: the futures the bar counts.
        desc: the bar's label.
        sizes: how many items each future stands for (a ``map`` chunk); ``None``: one each.

    Returns:
        The event set once the bar is closed.

    Raises:
        ImportError: tqdm is not installed.
        ValueError: ``sizes`` and ``futures`` differ in length.
    """
    tqdm = tqdm_class()
    if sizes is None:
        sizes = [1] * len(futures)
    elif len(sizes) != len(futures):
        raise ValueError(f"sizes has {len(sizes)} entries for {len(futures)} futures; give one per future")
    bar = tqdm(total=sum(sizes), desc=desc, **tqdm_kwargs)
    lock = threading.Lock()  # done-callbacks run in whichever thread ends a future
    left = [len(futures)]
    all_done = threading.Event()

    def advance(n: int) -> None:
        with lock:
            bar.update(n)
            left[0] -= 1
            if left[0] == 0:
                bar.close()
                all_done.set()

    if not futures:
        bar.close()
        all_done.set()
    for future, n in zip(futures, sizes):
        future.add_done_callback(lambda _f, n=n: advance(n))
    return all_done
