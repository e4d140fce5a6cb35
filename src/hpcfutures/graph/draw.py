"""Draw a recorded graph. SVG and Graphviz DOT are written here without any dependency;
PNG, PDF and the other raster/vector formats go through matplotlib (the ``graph`` extra).

The layout is layered: a call sits one row below the lowest of its sources (longest path
from the inputs), an input just above the first call it feeds, and each row is ordered by the mean position of the nodes feeding it,
which keeps chains straight and fan-ins centred. Good enough for the few hundred calls a
picture can show; for more, export the workflow JSON instead.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import escape

NATIVE = {"svg", "dot", "gv"}
_X_GAP, _Y_GAP, _CHAR_W, _BOX_H = 24.0, 70.0, 7.2, 30.0


def check_format(filename) -> str:
    """The format named by the file suffix; a clear error now rather than at exit.

    Args:
        filename: the picture's file (str or path).

    Returns:
        The suffix without its dot, lower case (``svg``, ``dot``, ``png``, ...).

    Raises:
        ValueError: no suffix, or one matplotlib cannot write.
        ImportError: a format other than .svg/.dot/.gv without matplotlib.
    """
    fmt = os.path.splitext(os.fspath(filename))[1].lstrip(".").lower()
    if fmt in NATIVE:
        return fmt
    if not fmt:
        raise ValueError(f"plot_dependency_graph_filename={filename!r} needs a suffix naming the format (.svg, .png, ...)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            f"writing .{fmt} pictures needs matplotlib: pip install 'hpcfutures[graph]' (.svg and .dot need nothing)"
        ) from None
    from matplotlib.figure import Figure

    if fmt not in Figure().canvas.get_supported_filetypes():
        raise ValueError(f"cannot draw the graph as .{fmt}: matplotlib writes {sorted(Figure().canvas.get_supported_filetypes())}")
    return fmt


def label(node: dict) -> str:
    """A node's text in a drawing: ``name=value`` for an input, the function's name
    otherwise, cut to 40 characters.
    """
    if node["type"] == "input":
        text = f"{node['name']}={_short(node['value'])}"
    else:
        text = node["name"]
    return text if len(text) <= 40 else text[:37] + "..."


def _short(value) -> str:
    text = repr(value)
    if " object at 0x" in text:
        return type(value).__qualname__ + "()"
    return text.replace("\n", " ")


def layout(nodes: list[dict], edges: list[dict]) -> dict[int, tuple[float, float, float]]:
    """Node id -> (x centre, y centre, width).

    Args:
        nodes: the graph's nodes (dicts with ``id``, ``type``, ``name``).
        edges: the graph's edges (dicts with ``source``, ``target``).
    """
    sources: dict[int, list[int]] = {n["id"]: [] for n in nodes}
    targets: dict[int, list[int]] = {n["id"]: [] for n in nodes}
    for edge in edges:
        sources[edge["target"]].append(edge["source"])
        targets[edge["source"]].append(edge["target"])
    # rows in topological order (Kahn): a node's row is one below its lowest source
    row = {i: 0 for i in sources}
    missing = {i: len(s) for i, s in sources.items()}
    ready = [i for i, n in missing.items() if n == 0]
    while ready:
        i = ready.pop()
        for t in targets[i]:
            row[t] = max(row[t], row[i] + 1)
            missing[t] -= 1
            if missing[t] == 0:
                ready.append(t)
    for i, feeds in targets.items():  # an input sits just above the first call it feeds
        if not sources[i] and feeds:
            row[i] = min(row[t] for t in feeds) - 1
    rows: dict[int, list[int]] = {}
    for node_id, r in row.items():
        rows.setdefault(r, []).append(node_id)
    width = {n["id"]: max(60.0, _CHAR_W * len(label(n)) + 20) for n in nodes}
    position: dict[int, tuple[float, float, float]] = {}
    for r in sorted(rows):
        members = sorted(rows[r])
        rows[r] = members
        if r > 0:
            members.sort(key=lambda i: sum(position[s][0] for s in sources[i]) / max(1, len(sources[i])))
        x = 0.0
        for i in members:
            position[i] = (x + width[i] / 2, r * _Y_GAP + _BOX_H, width[i])
            x += width[i] + _X_GAP
    # centre every row on the widest one
    row_width = {r: sum(width[i] for i in m) + _X_GAP * (len(m) - 1) for r, m in rows.items()}
    widest = max(row_width.values(), default=0.0)
    for r, members in rows.items():
        shift = (widest - row_width[r]) / 2
        for i in members:
            x, y, w = position[i]
            position[i] = (x + shift + 10, y, w)
    return position


def to_svg(nodes: list[dict], edges: list[dict], legend: dict[str, str] | None = None) -> str:
    """The graph as SVG text; a node's ``fill`` (a colour) overrides the default fill, and
    ``legend`` (label -> colour) adds a key in the top left corner.

    Args:
        nodes: the graph's nodes; an optional ``fill`` colour each.
        edges: the graph's edges.
        legend: label -> colour, drawn as a key; ``None``: no key.

    Returns:
        A complete SVG document.
    """
    pos = layout(nodes, edges)
    top = _BOX_H if legend else 0.0
    pos = {k: (x, y + top, w) for k, (x, y, w) in pos.items()}
    width = max(max((x + w / 2 for x, _, w in pos.values()), default=0) + 10, 130.0 * len(legend or ()))
    height = max((y for _, y, _ in pos.values()), default=0) + _BOX_H + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    half = _BOX_H / 2
    for i, (text, colour) in enumerate((legend or {}).items()):
        out.append(
            f'<rect x="{10 + 130 * i}" y="6" width="12" height="12" fill="{colour}" stroke="#555"/>'
            f'<text x="{26 + 130 * i}" y="16" font-size="10">{escape(text)}</text>'
        )
    for edge in edges:
        x1, y1, _ = pos[edge["source"]]
        x2, y2, _ = pos[edge["target"]]
        out.append(
            f'<line x1="{x1:.1f}" y1="{y1 + half:.1f}" x2="{x2:.1f}" y2="{y2 - half:.1f}" '
            'stroke="#555" marker-end="url(#arrow)"/>'
        )
        text = _edge_label(edge)
        if text:
            out.append(
                f'<text x="{(x1 + x2) / 2 + 4:.1f}" y="{(y1 + y2) / 2 + 4:.1f}" fill="#336">{escape(text)}</text>'
            )
    for node in nodes:
        x, y, w = pos[node["id"]]
        if node["type"] == "input":
            shape = f'<ellipse cx="{x:.1f}" cy="{y:.1f}" rx="{w / 2:.1f}" ry="{half:.1f}" fill="#eef" stroke="#447"/>'
        else:
            shape = (
                f'<rect x="{x - w / 2:.1f}" y="{y - half:.1f}" width="{w:.1f}" height="{_BOX_H:.1f}" rx="4" '
                f'fill="{node.get("fill", "#ffd")}" stroke="#774"/>'
            )
        out.append(shape)
        out.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{escape(label(node))}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


def to_dot(nodes: list[dict], edges: list[dict]) -> str:
    """The graph in Graphviz's dot language (no Graphviz needed to write it).

    Args:
        nodes: the graph's nodes.
        edges: the graph's edges.

    Returns:
        The dot text.
    """
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph workflow {"]
    for node in nodes:
        shape = "ellipse" if node["type"] == "input" else "box"
        fill = f', style=filled, fillcolor="{node["fill"]}"' if "fill" in node else ""
        lines.append(f"  n{node['id']} [label={quote(label(node))}, shape={shape}{fill}];")
    for edge in edges:
        lines.append(f"  n{edge['source']} -> n{edge['target']} [label={quote(_edge_label(edge))}];")
    lines.append("}\n")
    return "\n".join(lines)


def _edge_label(edge: dict) -> str:
    if edge.get("sourcePort") is not None:
        return f"[{edge['sourcePort']}] -> {edge['targetPort']}"
    return edge["targetPort"] or ""


def write_picture(filename, nodes: list[dict], edges: list[dict], legend: dict[str, str] | None = None) -> None:
    """Draw the graph into ``filename`` (atomically): SVG and dot natively, other
    formats through matplotlib.

    Args:
        filename: the file; its suffix names the format.
        nodes: the graph's nodes.
        edges: the graph's edges.
        legend: label -> colour, drawn as a key; ``None``: no key.

    Raises:
        ValueError: no or an unknown suffix.
        ImportError: a matplotlib format without matplotlib.
    """
    fmt = check_format(filename)
    path = os.fspath(filename)
    if fmt == "svg":
        _write_text(path, to_svg(nodes, edges, legend))
    elif fmt in ("dot", "gv"):
        _write_text(path, to_dot(nodes, edges))
    else:
        _draw_matplotlib(path, fmt, nodes, edges)


def _write_text(path: str, text: str) -> None:
    from hpcfutures.files import atomic_write

    atomic_write(path, text)


def _draw_matplotlib(path: str, fmt: str, nodes: list[dict], edges: list[dict]) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    pos = layout(nodes, edges)
    width = max((x + w / 2 for x, _, w in pos.values()), default=100) + 10
    height = max((y for _, y, _ in pos.values()), default=100) + _BOX_H + 10
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # rows go down, as in the SVG
    ax.axis("off")
    half = _BOX_H / 2
    for edge in edges:
        x1, y1, _ = pos[edge["source"]]
        x2, y2, _ = pos[edge["target"]]
        ax.annotate("", xy=(x2, y2 - half), xytext=(x1, y1 + half), arrowprops={"arrowstyle": "->", "color": "#555"})
        text = _edge_label(edge)
        if text:
            ax.text((x1 + x2) / 2 + 4, (y1 + y2) / 2, text, fontsize=8, color="#336")
    for node in nodes:
        x, y, w = pos[node["id"]]
        style = "round,pad=0.3" if node["type"] == "input" else "square,pad=0.3"
        colour = "#eef" if node["type"] == "input" else node.get("fill", "#ffd")
        ax.text(x, y, label(node), ha="center", va="center", fontsize=9, bbox={"boxstyle": style, "fc": colour, "ec": "#555"})
    fig.savefig(path, format=fmt)
