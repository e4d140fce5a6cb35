"""Graph-only mode: nothing runs, the picture and the workflow JSON describe the calls."""

import json
import xml.etree.ElementTree as ET

import pytest

import funcs
from hpcfutures import SingleNodeExecutor, get_item_from_future, split_future


def _submit_workflow(exe, marker):
    a = exe.submit(funcs.add, 1, 2)
    b = exe.submit(funcs.add, a, b=3)
    c = exe.submit(funcs.mark_and_add, marker, b, get_item_from_future(exe.submit(dict, x=a), "x"))
    first, second = split_future(exe.submit(tuple, [a, b]), 2)
    d = exe.submit(funcs.identity, {"sum": c, "parts": [first, second]})
    return a, b, c, d


@pytest.mark.parametrize("block", [False, True])
def test_graph_mode_runs_nothing_and_exports_the_workflow(tmp_path, block):
    marker = str(tmp_path / "ran")
    out = tmp_path / "workflow.json"
    with SingleNodeExecutor(export_workflow_filename=str(out), block_allocation=block) as exe:
        futures = _submit_workflow(exe, marker)
        assert all(f.done() and f.result() is None for f in futures)
        assert not out.exists()  # written at shutdown
    assert not (tmp_path / "ran").exists()
    doc = json.loads(out.read_text())
    assert doc["version"] and set(doc) == {"version", "nodes", "edges"}
    nodes = {n["id"]: n for n in doc["nodes"]}
    functions = [n["value"] for n in doc["nodes"] if n["type"] == "function"]
    assert functions.count("funcs.add") == 2
    assert "funcs.mark_and_add" in functions and "python_workflow_definition.shared.get_dict" in functions
    inputs = {(n["name"], json.dumps(n["value"])) for n in doc["nodes"] if n["type"] == "input"}
    assert ("a", "1") in inputs and ("b", "3") in inputs
    [output] = [n for n in doc["nodes"] if n["type"] == "output"]
    edges = doc["edges"]
    # add(a, b=3) takes its 'a' from the first add
    first_add, second_add = [n["id"] for n in doc["nodes"] if n.get("value") == "funcs.add"]
    assert {"source": first_add, "sourcePort": None, "target": second_add, "targetPort": "a"} in edges
    # get_item_from_future and split_future appear as ports of the source call
    assert any(e["sourcePort"] == "x" and e["targetPort"] == "y" for e in edges)
    assert {e["sourcePort"] for e in edges if e["sourcePort"] is not None} == {"x", "0", "1"}
    # the last call feeds the output
    identity = next(n["id"] for n in doc["nodes"] if n.get("value") == "funcs.identity")
    assert {"source": identity, "sourcePort": None, "target": output["id"], "targetPort": None} in edges
    for e in edges:
        assert e["source"] in nodes and e["target"] in nodes


def test_map_with_a_chunksize_records_one_call_per_item(tmp_path):
    """Review: an explicit chunksize in graph-only mode gave TypeError (a chunk's future has
    no list to flatten). Every item is one call of the graph."""
    out = tmp_path / "workflow.json"
    with SingleNodeExecutor(export_workflow_filename=str(out), block_allocation=True) as exe:
        assert list(exe.map(funcs.add, range(4), range(4), chunksize=2)) == [None] * 4
    functions = [n["value"] for n in json.loads(out.read_text())["nodes"] if n["type"] == "function"]
    assert functions.count("funcs.add") == 4


def test_svg_and_dot_need_no_extra(tmp_path):
    svg, dot = tmp_path / "g.svg", tmp_path / "g.dot"
    for path in (svg, dot):
        with SingleNodeExecutor(plot_dependency_graph_filename=str(path)) as exe:
            _submit_workflow(exe, str(tmp_path / "ran"))
    root = ET.fromstring(svg.read_text())
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts.count("add") == 2 and "mark_and_add" in texts and "a=1" in texts
    text = dot.read_text()
    assert text.startswith("digraph") and text.count("->") >= 10
    assert not (tmp_path / "ran").exists()


def test_png_through_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "g.png"
    with SingleNodeExecutor(plot_dependency_graph_filename=str(png)) as exe:
        fut = exe.submit(funcs.add, 1, 1)
        exe.submit(funcs.add, fut, 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_large_chain_draws(tmp_path):
    svg = tmp_path / "chain.svg"
    with SingleNodeExecutor(plot_dependency_graph_filename=str(svg)) as exe:
        fut = exe.submit(funcs.add, 0, 1)
        for _ in range(500):
            fut = exe.submit(funcs.add, fut, 1)
    assert ET.fromstring(svg.read_text()).tag.endswith("svg")


def test_bad_picture_format_is_an_error_at_construction(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        SingleNodeExecutor(plot_dependency_graph_filename=str(tmp_path / "graph"))


def test_plot_without_a_notebook_or_file_warns():
    with pytest.warns(UserWarning, match="plot_dependency_graph_filename"):
        with SingleNodeExecutor(plot_dependency_graph=True) as exe:
            exe.submit(funcs.add, 1, 1)
