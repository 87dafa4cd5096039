"""One colour and one marker per model, fixed once from all rows and used by every figure and table."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from clip_bench.results.rows import display_name, labelled, shown_name

#: Colours for evaluated models (tab10 without its grey, which is reserved for reference points).
MODEL_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
#: Markers, cycled at a different period than the colours so (colour, marker) pairs stay unique for 90 models.
MODEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h", "<", ">"]


@dataclass(frozen=True)
class ModelStyle:
    """How one model is drawn everywhere: its colour, marker and legend label."""

    color: str
    marker: str
    label: str


def model_styles(rows: list[dict[str, Any]]) -> dict[tuple[str, str], ModelStyle]:
    """(model, pretrained) as tables show them (:func:`clip_bench.results.rows.shown_name`: one per model
    fingerprint and variant) -> style, in order of each model's earliest row (so adding a model later
    leaves the colours of the others unchanged), ties broken by name."""
    first: dict[tuple[str, str], str] = {}
    for r in labelled(rows):
        key = shown_name(r)
        date = str(r.get("date") or "")
        if key not in first or date < first[key]:
            first[key] = date
    order = sorted(first, key=lambda k: (first[k], k))
    return {
        key: ModelStyle(MODEL_COLORS[i % len(MODEL_COLORS)], MODEL_MARKERS[i % len(MODEL_MARKERS)], display_name(*key))
        for i, key in enumerate(order)
    }


def _polygon(points: list[tuple[float, float]], color: str) -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polygon points="{pts}" fill="{color}" stroke="#222" stroke-width="0.6"/>'


def _shape(marker: str, color: str) -> str:
    c, r = 7.0, 5.2
    if marker == "o":
        return f'<circle cx="{c}" cy="{c}" r="{r}" fill="{color}" stroke="#222" stroke-width="0.6"/>'
    if marker == "s":
        return _polygon([(c - r, c - r), (c + r, c - r), (c + r, c + r), (c - r, c + r)], color)
    if marker == "D":
        return _polygon([(c, c - r - 1), (c + r, c), (c, c + r + 1), (c - r, c)], color)
    tri = {"^": [(c, c - r - 1), (c + r + 1, c + r), (c - r - 1, c + r)],
           "v": [(c, c + r + 1), (c + r + 1, c - r), (c - r - 1, c - r)],
           "<": [(c - r - 1, c), (c + r, c - r - 1), (c + r, c + r + 1)],
           ">": [(c + r + 1, c), (c - r, c - r - 1), (c - r, c + r + 1)]}
    if marker in tri:
        return _polygon(tri[marker], color)
    if marker == "h":
        import math

        return _polygon([(c + r * math.sin(a * math.pi / 3), c - r * math.cos(a * math.pi / 3)) for a in range(6)],
                        color)
    w = 2.0  # plus and X: a cross of two bars
    plus = [(c - w, c - r), (c + w, c - r), (c + w, c - w), (c + r, c - w), (c + r, c + w), (c + w, c + w),
            (c + w, c + r), (c - w, c + r), (c - w, c + w), (c - r, c + w), (c - r, c - w), (c - w, c - w)]
    if marker == "X":
        import math

        a = math.pi / 4
        plus = [(c + (x - c) * math.cos(a) - (y - c) * math.sin(a), c + (x - c) * math.sin(a) + (y - c) * math.cos(a))
                for x, y in plus]
    return _polygon(plus, color)


def swatch_svg(style: ModelStyle) -> str:
    """A small inline SVG of the model's marker in its colour, for HTML tables."""
    return (f'<svg class="swatch" width="14" height="14" viewBox="0 0 14 14" role="img" '
            f'aria-label="{html.escape(style.label)}">{_shape(style.marker, style.color)}</svg>')
