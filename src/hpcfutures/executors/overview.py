"""The task overview of a running executor: what waits, is queued, runs, or has ended.

Every executor keeps a ``TaskBook``: the tasks not finished yet (by number), and a short
record of each finished one (no result kept: the book must not hold a long run's results
alive), the last ``HISTORY`` of them. ``rows()`` is the live counterpart of
``get_cache_data``: one dict per task that ``pandas.DataFrame`` turns into a table, and
``graph()`` the dependency graph coloured by state.

Cost per task: one dict insert and one done-callback (a few microseconds), nothing when
nobody asks for the overview.
"""

from __future__ import annotations

import itertools
import threading
import time
import datetime
from collections import deque
from concurrent.futures import CancelledError, Future

from hpcfutures.scheduling.task import Task

HISTORY = 100_000  # finished tasks the overview remembers (oldest forgotten first)

STATES = ("waiting-for-dependencies", "queued", "running", "done", "failed", "cancelled")

# fill colours of the graph picture, by state
COLOURS = {
    "waiting-for-dependencies": "#e0e0e0",
    "queued": "#fff3b0",
    "running": "#9fd3ff",
    "done": "#b6f2b6",
    "failed": "#ffb3b3",
    "cancelled": "#d9b3ff",
}

_MARK = "_hpcfutures_task"  # attribute on a future: (book id, task number)


class TaskBook:
    """Tasks of one executor, for ``BaseExecutor.task_overview`` and ``task_graph``."""

    def __init__(self, history: int = HISTORY):
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._live: dict[int, Task] = {}
        self._upstream: dict[int, list] = {}  # task number -> numbers of its upstream tasks
        self._ended: deque = deque(maxlen=history)
        self._on_done = self._future_done  # one bound method, made once, shared by every future
        self._id = id(self)  # one int object shared by every task's mark, not one each

    def add(self, task: Task, upstream: list | None = None) -> None:
        """Register a task at ``submit()``; ``upstream``: the futures among its arguments.

        Args:
            task: the submitted task; it gets its number and submit time here.
            upstream: the futures among its arguments (edges of ``task_graph``).
        """
        number = next(self._numbers)  # itertools.count is atomic under the GIL
        task.number = number
        task.submitted_at = task.queued_at = time.time()
        future = task.future
        setattr(future, _MARK, (self._id, number))
        with self._lock:
            if upstream:
                mine = self._id
                self._upstream[number] = [
                    mark[1] for mark in (_mark_of(f) for f in upstream) if mark is not None and mark[0] == mine
                ]
            self._live[number] = task
        # the callback finds the task by the number marked on the future, not by reference: no
        # cycle future -> callback -> task -> future, so a finished task and its arguments are
        # freed at once; and one callback object serves every task (a partial per task cost
        # ~250 bytes per pending task, issue 15)
        future.add_done_callback(self._on_done)

    def _future_done(self, future: Future) -> None:
        mark = getattr(future, _MARK, None)
        if mark is not None:
            self._ended_now(mark[1], future)

    def _ended_now(self, number: int, future: Future) -> None:
        """Done-callback: keep a small record, drop the task (and with it its arguments).
        Runs once per task in the thread that ended it, so it does no more than that."""
        ended_at = time.time()
        with self._lock:
            task = self._live.pop(number, None)
            if task is None:
                return
            self._ended.append(
                (number, task.name, _end_state(future), task.worker, ended_at, task.submitted_at,
                 task.attempt, task.cores, self._upstream.pop(number, None) or [])
            )  # fmt: skip

    def rows(self, waiting: set, queued=None) -> list[dict]:
        """One dict per task, by number (submission order).

        Args:
            waiting: the tasks the executor holds for their dependencies.
            queued: the engine's test for a started task that still waits in a queue (a
                batch job the scheduler has not started), or None.
        """
        now_wall, now_mono = time.time(), time.monotonic()
        with self._lock:  # one snapshot: a task that ends meanwhile is in exactly one list
            rows = [dict(zip(_FIELDS, record)) for record in self._ended]
            live = [(t, list(self._upstream.get(t.number, ()))) for t in self._live.values()]
        for row in rows:
            row["depends_on"] = list(row["depends_on"])
        for task, upstream in live:
            # done but its callback not run yet: shown with its end state already
            ended_at = now_wall if task.future.done() else None
            row = _row(task, task in waiting, ended_at, now_wall - now_mono)
            if row["state"] == "running" and queued is not None and queued(task):
                row["state"] = "queued"
            row["depends_on"] = upstream
            rows.append(row)
        rows.sort(key=lambda r: r["id"])
        stamp = datetime.datetime.fromtimestamp  # made here, not in the done-callback
        for row in rows:
            row["since"], row["submitted"] = stamp(row["since"]), stamp(row["submitted"])
        return rows


_FIELDS = ("id", "function", "state", "worker", "since", "submitted", "attempt", "cores", "depends_on")


def _mark_of(future: Future):
    """(book id, number) of the task that makes ``future``, following futures derived by
    ``get_item_from_future``/``split_future`` back to their source."""
    mark = getattr(future, _MARK, None)
    if mark is None:
        from hpcfutures.scheduling.derived_futures import DERIVED

        for _ in range(100):  # derived from derived ...; bounded
            source = DERIVED.get(future)
            if source is None:
                break
            future = source[0]
            mark = getattr(future, _MARK, None)
            if mark is not None:
                break
    return mark


def _row(task: Task, waiting, ended_at, mono_to_wall: float = 0.0) -> dict:
    future = task.future
    since = task.queued_at
    if ended_at is not None:
        state, since = _end_state(future), ended_at
    elif waiting:
        state, since = "waiting-for-dependencies", task.submitted_at
    elif task.running:
        state = "running"
        if task.started_at:
            since = task.started_at + mono_to_wall
    else:
        state = "queued"
    return {
        "id": task.number,
        "function": task.name,
        "state": state,
        "worker": task.worker,
        "since": since,  # wall-clock seconds; rows() turns them into datetimes
        "submitted": task.submitted_at,
        "attempt": task.attempt,
        "cores": task.cores,
    }


def _end_state(future: Future) -> str:
    """How a done future ended. Reads the state the Future keeps rather than calling
    ``cancelled()``/``exception()``, which take its lock: this runs in every task's
    done-callback, and a done future's state no longer changes."""
    state = getattr(future, "_state", None)
    if state is None:  # not CPython's Future: the public, locking way
        if future.cancelled():
            return "cancelled"
        exc = future.exception()
    elif state.startswith("CANCELLED"):
        return "cancelled"
    else:
        exc = future._exception
    if exc is None:
        return "done"
    # a running task stopped by shutdown(cancel_futures=True) ends with CancelledError
    return "cancelled" if isinstance(exc, CancelledError) else "failed"


def graph_of(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Nodes and edges (the shapes ``hpcfutures.graph.draw`` draws) of the overview rows:
    one box per task, labelled ``function #id``, filled by its state."""
    ids = {row["id"] for row in rows}
    nodes = [
        {"id": row["id"], "type": "function", "name": f"{row['function']} #{row['id']}", "fill": COLOURS[row["state"]]}
        for row in rows
    ]
    edges = [
        {"source": up, "sourcePort": None, "target": row["id"], "targetPort": None}
        for row in rows
        for up in row["depends_on"]
        if up in ids
    ]
    return nodes, edges


class TaskGraph:
    """A picture of an executor's tasks and their dependencies, coloured by state.

    Shown inline by Jupyter (it has ``_repr_svg_``); ``save()`` writes it to a file.
    Colours: grey waiting for dependencies, yellow queued, blue running, green done,
    red failed, violet cancelled.

    Args:
        nodes: one dict per task or input (``id``, ``type``, ``name``, ...).
        edges: one dict per dependency (``source``, ``target``, ``targetPort``).
    """

    def __init__(self, nodes: list[dict], edges: list[dict]):
        self.nodes = nodes
        self.edges = edges

    def to_svg(self) -> str:
        """Returns:
            The picture as SVG text (with a legend of the state colours)."""
        from hpcfutures.graph.draw import to_svg

        return to_svg(self.nodes, self.edges, legend=COLOURS)

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def save(self, filename) -> None:
        """Write the picture.

        Args:
            filename: ``.svg`` or ``.dot`` (no dependency), or any format matplotlib
                writes (``.png``, ``.pdf``; ``pip install "hpcfutures[graph]"``).

        Raises:
            ValueError: the file name has no suffix, or one matplotlib cannot write.
            ImportError: a matplotlib format without matplotlib installed.
        """
        from hpcfutures.graph.draw import write_picture

        write_picture(filename, self.nodes, self.edges, legend=COLOURS)
