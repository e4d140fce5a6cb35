"""Export a recorded graph as Python Workflow Definition JSON: ``{"version", "nodes",
"edges"}`` with function, input and output nodes, so other workflow tools (aiida, jobflow,
pyiron) can load what was submitted here."""

from __future__ import annotations

import json

VERSION = "0.1.0"


def workflow_dict(nodes: list[dict], edges: list[dict]) -> dict:
    """The PWD document: function nodes carry ``module.function`` as their value, input
    nodes a name and a JSON value, and every call whose result nothing consumes feeds an
    output node (``result``, or ``result_<n>`` when there are several).

    Args:
        nodes: the recorded nodes.
        edges: the recorded edges.

    Returns:
        A JSON-ready dict with ``nodes`` and ``edges``.
    """
    out_nodes = []
    for node in nodes:
        if node["type"] == "function":
            out_nodes.append({"id": node["id"], "type": "function", "value": node["value"]})
        else:
            out_nodes.append({"id": node["id"], "type": "input", "name": node["name"], "value": _jsonable(node["value"])})
    consumed = {edge["source"] for edge in edges}
    sinks = [n["id"] for n in nodes if n["type"] == "function" and n["id"] not in consumed]
    out_edges = [dict(edge) for edge in edges]
    next_id = len(nodes)
    for i, sink in enumerate(sinks):
        name = "result" if len(sinks) == 1 else f"result_{i}"
        out_nodes.append({"id": next_id, "type": "output", "name": name})
        out_edges.append({"source": sink, "sourcePort": None, "target": next_id, "targetPort": None})
        next_id += 1
    return {"version": VERSION, "nodes": out_nodes, "edges": out_edges}


def write_workflow(path, nodes: list[dict], edges: list[dict]) -> None:
    """Write ``workflow_dict`` as indented JSON, atomically (a value JSON cannot hold
    is written as its ``repr``).

    Args:
        path: the file.
        nodes: the recorded nodes.
        edges: the recorded edges.
    """
    text = json.dumps(workflow_dict(nodes, edges), indent=2, default=_fallback)
    from hpcfutures.files import atomic_write

    atomic_write(path, text)


def _jsonable(value):
    """Values as JSON can hold them: numpy arrays and scalars through ``tolist``, other
    objects by their repr (marked as such: they cannot be read back as values)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return _fallback(value)


def _fallback(value) -> str:
    return f"<repr> {value!r}"
