"""Record submitted calls as a graph of nodes and edges — the engine of graph-only mode.

With ``plot_dependency_graph=True`` (or a plot or export file name) an executor runs
nothing: each ``submit`` adds a function node, an input node per plain argument, and an
edge from the producing call for each future argument (through a collector node for a
list or dict that holds futures, labelled with the key for ``get_item_from_future`` and
``split_future``). Every returned future is already done with ``None``, so code that
waits on results goes on; the picture and/or JSON is written at ``shutdown()``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from hpcfutures.engines.interface import EngineDefaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

GET_LIST = "python_workflow_definition.shared.get_list"
GET_DICT = "python_workflow_definition.shared.get_dict"


class GraphRecorder(EngineDefaults):
    """The engine of graph-only mode: collects ``nodes`` (dicts with id, type, name,
    value) and ``edges`` (dicts with source, sourcePort, target, targetPort) — the Python
    Workflow Definition's own terms — and writes or shows them at ``stop()``.

    Args:
        plot: show the graph inline in Jupyter at stop (when no file is named).
        plot_filename: write the picture to this file (``.svg``, ``.dot``, ``.png``, ``.pdf``).
        workflow_filename: write a Python Workflow Definition JSON file.
    """

    max_workers = 1
    records_calls = True  # submit() hands over each task as submitted, futures unresolved

    def __init__(self, plot: bool = False, plot_filename=None, workflow_filename=None):
        self.nodes: list[dict] = []
        self.edges: list[dict] = []
        self._made_by: dict[int, tuple[Future, int]] = {}  # id(future) -> (future, node id)
        self._inputs: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self._output: dict | None = {"plot": bool(plot), "plot_filename": plot_filename, "workflow_filename": workflow_filename}

    # -- recording ----------------------------------------------------------------
    def record(self, fn, args: tuple, kwargs: dict, future: Future | None = None) -> Future:
        """Add a call to the graph; ``future`` is its node's future (``None``: a new
        one, already done with ``None``).

        Args:
            fn: the called function (its name labels the node).
            args: its positional arguments; futures among them become edges.
            kwargs: its keyword arguments, likewise.
            future: the future the node answers for; ``None``: a new one.

        Returns:
            The call's future.
        """
        with self._lock:
            node = self._add_node("function", getattr(fn, "__name__", repr(fn)), _qualified_name(fn))
            for port, value in _bind(fn, args, kwargs):
                self._link(value, node, port)
            if future is None:
                future = Future()
                future.set_result(None)
            self._made_by[id(future)] = (future, node)  # the future is kept alive: ids stay unique
        return future

    def _add_node(self, kind: str, name: str, value: Any = None) -> int:
        node = {"id": len(self.nodes), "type": kind, "name": name}
        if value is not None or kind == "input":
            node["value"] = value
        self.nodes.append(node)
        return node["id"]

    def _edge(self, source: int, target: int, target_port, source_port=None) -> None:
        self.edges.append(
            {
                "source": source,
                "sourcePort": None if source_port is None else str(source_port),
                "target": target,
                "targetPort": None if target_port is None else str(target_port),
            }
        )

    def _link(self, value: Any, target: int, port) -> None:
        if isinstance(value, Future):
            self._link_future(value, target, port)
        elif isinstance(value, (list, tuple)) and _holds_future(value):
            collector = self._add_node("function", "list", GET_LIST)
            self._edge(collector, target, port)
            for i, item in enumerate(value):
                self._link(item, collector, i)
        elif isinstance(value, dict) and _holds_future(value.values()):
            collector = self._add_node("function", "dict", GET_DICT)
            self._edge(collector, target, port)
            for key, item in value.items():
                self._link(item, collector, key)
        else:
            key = (str(port), _value_key(value))
            node = self._inputs.get(key)
            if node is None:
                node = self._inputs[key] = self._add_node("input", str(port), value)
            self._edge(node, target, port)

    def _link_future(self, future: Future, target: int, port) -> None:
        from hpcfutures.scheduling.derived_futures import DERIVED

        selector = None
        derived = DERIVED.get(future)
        if derived is not None:
            future, selector = derived
        made = self._made_by.get(id(future))
        if made is None or made[0] is not future:  # a future from outside this executor
            source = self._add_node("input", str(port), repr(future))
        else:
            source = made[1]
        self._edge(source, target, port, selector)

    # -- the engine interface: every task is recorded, nothing runs ----------------
    def enqueue(self, task) -> None:
        """Record the task's call (its arguments may still hold futures: they become edges)."""
        from hpcfutures.engines.outcome import settle

        self.record(task.fn, task.args, task.kwargs, task.future)
        if task.start():  # done with None, so code that waits on results goes on
            settle(task, {"result": None})

    def queued(self) -> int:
        """Nothing waits: every call is recorded at once."""
        return 0

    def resize(self, n: int) -> None:
        """Nothing runs: there is no concurrency to change."""
        pass

    def cancel_queued(self) -> None:
        """Nothing is queued: nothing to cancel."""
        pass

    def stop(self, wait: bool) -> None:
        """Write (or show) the graph, once, however often ``stop`` is called."""
        with self._lock:
            output, self._output = self._output, None
        if output is not None:
            from hpcfutures.graph.show_or_save import write_graph

            write_graph(self, **output)

    def kill_all(self) -> None:
        """Nothing runs: nothing to kill (the graph is still written at ``stop``)."""
        pass


def _bind(fn, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(parameter name, value) pairs; positions stand in where the signature is unknown."""
    import inspect

    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [(str(i), a) for i, a in enumerate(args)] + list(kwargs.items())
    pairs = []
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            pairs += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            pairs += list(value.items())
        else:
            pairs.append((name, value))
    return pairs


def _holds_future(values) -> bool:
    from hpcfutures.scheduling.dependencies import find_futures

    return bool(find_futures(list(values)))


def _qualified_name(fn) -> str:
    return f"{getattr(fn, '__module__', None) or '__main__'}.{getattr(fn, '__qualname__', None) or repr(fn)}"


def _value_key(value: Any) -> str:
    try:
        return f"{type(value).__qualname__}:{value!r}"
    except Exception:
        return f"id:{id(value)}"
