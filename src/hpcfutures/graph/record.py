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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

GET_LIST = "python_workflow_definition.shared.get_list"
GET_DICT = "python_workflow_definition.shared.get_dict"


class GraphRecorder:
    """Collects ``nodes`` (dicts with id, type, name, value) and ``edges`` (dicts with
    source, sourcePort, target, targetPort) — the Python Workflow Definition's own terms."""

    max_workers = 1

    def __init__(self):
        self.nodes: list[dict] = []
        self.edges: list[dict] = []
        self._made_by: dict[int, tuple[Future, int]] = {}  # id(future) -> (future, node id)
        self._inputs: dict[tuple, int] = {}
        self._lock = threading.Lock()

    # -- recording ----------------------------------------------------------------
    def record(self, fn, args: tuple, kwargs: dict) -> Future:
        with self._lock:
            node = self._add_node("function", getattr(fn, "__name__", repr(fn)), _qualified_name(fn))
            for port, value in _bind(fn, args, kwargs):
                self._link(value, node, port)
            future: Future = Future()
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
        from hpcfutures.scheduling.derived import DERIVED

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

    # -- the engine interface: nothing is queued, nothing runs ----------------------
    def enqueue(self, task) -> None:  # pragma: no cover - submit() records instead
        raise RuntimeError("graph-only mode runs nothing")

    def queued(self) -> int:
        return 0

    def resize(self, n: int) -> None:
        pass

    def cancel_queued(self) -> None:
        pass

    def stop(self, wait: bool) -> None:
        pass

    def kill_all(self) -> None:
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
