"""Where a recorded graph goes at shutdown: a picture file, a workflow JSON file, or the
notebook the executor runs in."""

from __future__ import annotations

import sys
import warnings


def write_graph(recorder, plot: bool, plot_filename=None, workflow_filename=None) -> None:
    """Where the graph of a graph-only executor goes at shutdown.

    Args:
        recorder: the ``GraphRecorder`` (its ``nodes`` and ``edges``).
        plot: show the drawing (inline in Jupyter) when no file is asked for.
        plot_filename: write the drawing there; the suffix names the format.
        workflow_filename: write the workflow JSON there.
    """
    nodes, edges = recorder.nodes, recorder.edges
    if workflow_filename is not None:
        from hpcfutures.graph.workflow_json import write_workflow

        write_workflow(workflow_filename, nodes, edges)
    if plot_filename is not None:
        from hpcfutures.graph.draw import write_picture

        write_picture(plot_filename, nodes, edges)
    elif plot and workflow_filename is None:
        _show(nodes, edges)


def _show(nodes: list[dict], edges: list[dict]) -> None:
    """Display the SVG inline in Jupyter; elsewhere there is no screen to draw on."""
    from hpcfutures.graph.draw import to_svg

    ipython = sys.modules.get("IPython")
    if ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None:
        from IPython.display import SVG, display

        display(SVG(to_svg(nodes, edges)))
        return
    warnings.warn(
        "plot_dependency_graph=True outside a notebook: nothing to display the graph on; "
        "pass plot_dependency_graph_filename='graph.svg' (or .png, .dot) to write it to a file",
        stacklevel=3,
    )
