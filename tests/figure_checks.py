"""Checks on matplotlib Figure objects (not PNGs): legend entries against drawn artists, model colours,
text boxes against markers. Independent of the report's own plotting helpers, so they can judge any figure."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

NEUTRAL = "#777777"  # grey legend glyphs that explain a fill style, not a model


def _hex(c: Any) -> str | None:
    try:
        arr = np.asarray(c)
        if arr.ndim == 2:
            if not len(arr):
                return None
            c = arr[0]
        return to_hex(c, keep_alpha=False)
    except (ValueError, TypeError):
        return None


def _no_marker(m: Any) -> bool:
    return m in (None, "None", "none", "", " ")


def legend_entries(fig: Any) -> list[tuple[str, Any]]:
    """(text, handle) of every legend of the figure and of its axes."""
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    out = []
    for leg in legends:
        for text, handle in zip(leg.get_texts(), leg.legend_handles):
            out.append((text.get_text(), handle))
    return out


def _line_sig(line: Line2D) -> dict[str, Any]:
    return {"kind": "line", "color": _hex(line.get_color()), "marker": None if _no_marker(line.get_marker()) else
            str(line.get_marker()), "ls": None if line.get_linestyle() in ("None", "none", "", " ") else
            line.get_linestyle(), "fill": line.get_fillstyle() if not _no_marker(line.get_marker()) else None,
            "mfc": _hex(line.get_markerfacecolor()) if not _no_marker(line.get_marker()) else None}


def drawn_signatures(fig: Any) -> list[dict[str, Any]]:
    """Styles of the visible artists that actually show data in the figure's axes."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for line in ax.get_lines():
            xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
            if line.get_visible() and len(xy) and np.isfinite(xy).all(axis=1).any():
                out.append(_line_sig(line))
        for coll in ax.collections:
            if isinstance(coll, PathCollection) and coll.get_visible() and len(coll.get_offsets()):
                out.append({"kind": "scatter", "color": _hex(coll.get_facecolor()) or _hex(coll.get_edgecolor()),
                            "edge": _hex(coll.get_edgecolor())})
        for p in ax.patches:
            bb = p.get_extents()
            if p.get_visible() and bb.width > 0 and bb.height > 0:
                out.append({"kind": "patch", "color": _hex(p.get_facecolor()), "hatch": p.get_hatch()})
    return out


def handle_matches(handle: Any, drawn: list[dict[str, Any]]) -> bool:
    """Whether some drawn artist looks like this legend handle."""
    if isinstance(handle, Line2D):
        h = _line_sig(handle)
        if h["color"] == NEUTRAL:  # explains a marker fill: any drawn marker with that fill style
            return any(d["kind"] == "line" and d["fill"] == h["fill"] and d["marker"] for d in drawn)
        for d in drawn:
            if d["kind"] == "scatter" and d["color"] == h["color"] and h["ls"] is None:
                return True
            if d["kind"] != "line" or d["color"] != h["color"]:
                continue
            if h["marker"] and d["marker"] != h["marker"]:
                continue
            if h["ls"] and d["ls"] != h["ls"]:
                continue
            return True
        return False
    if isinstance(handle, PathCollection):
        c = _hex(handle.get_facecolor()) or _hex(handle.get_edgecolor())
        return any(d["kind"] == "scatter" and d["color"] == c for d in drawn)
    if isinstance(handle, Patch):
        c = _hex(handle.get_facecolor())
        return any(d["kind"] == "patch" and d["color"] == c and d["hatch"] == handle.get_hatch() for d in drawn)
    return True  # other handle kinds are not judged


def unmatched_legend_entries(fig: Any) -> list[str]:
    """Legend texts whose handle matches no drawn artist (a legend promising what is not drawn)."""
    drawn = drawn_signatures(fig)
    return [text for text, h in legend_entries(fig) if not handle_matches(h, drawn)]


def model_colors(fig: Any, labels: set[str]) -> dict[str, str]:
    """Colour of each model in a figure, read from its legend entries named after `labels`."""
    out = {}
    for text, h in legend_entries(fig):
        if text in labels:
            c = _hex(h.get_color()) if isinstance(h, Line2D) else _hex(h.get_facecolor())
            out[text] = c
    return out


def _marker_boxes(ax: Any, renderer: Any) -> list[np.ndarray]:
    scale = ax.figure.dpi / 72.0
    boxes = []
    for line in ax.get_lines():
        if not line.get_visible() or _no_marker(line.get_marker()) or line.get_markersize() < 5:
            continue
        r = line.get_markersize() / 2 * scale
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        for x, y in ax.transData.transform(xy[np.isfinite(xy).all(axis=1)]):
            boxes.append(np.array([x - r, y - r, x + r, y + r]))
    for coll in ax.collections:
        if not isinstance(coll, PathCollection) or not coll.get_visible():
            continue
        sizes = np.resize(np.asarray(coll.get_sizes(), float), len(coll.get_offsets()))
        for (x, y), s in zip(ax.transData.transform(np.asarray(coll.get_offsets(), float)), sizes):
            if s >= 30:  # our models' markers; the testbed's small reference dots are not judged
                r = np.sqrt(s) / 2 * scale
                boxes.append(np.array([x - r, y - r, x + r, y + r]))
    return boxes


def label_marker_overlaps(fig: Any) -> list[str]:
    """Texts inside the axes whose box overlaps a marker (tolerance 0.5 px)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        boxes = _marker_boxes(ax, renderer)
        for t in ax.texts:
            if not t.get_visible() or not t.get_text():
                continue
            bb = t.get_window_extent(renderer)
            for b in boxes:
                if min(bb.x1, b[2]) - max(bb.x0, b[0]) > 0.5 and min(bb.y1, b[3]) - max(bb.y0, b[1]) > 0.5:
                    bad.append(f"{ax.get_title()}: {t.get_text()!r}")
                    break
    return bad
