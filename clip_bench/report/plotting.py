"""Shared plot plumbing: Agg figures without pyplot, style kept local (``rc_context``), atomic PNG writes,
label placement that keeps text off markers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from matplotlib.transforms import Bbox

from clip_bench.util.io import atomic_path

DPI = 110
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}
LOGIT_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9]
F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    """Run a figure-building function under the report's style, restoring matplotlib's settings after."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Figure:
    """A Figure bound to the Agg canvas (no pyplot, so no global state or GUI backend)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return path


def plain(text: Any) -> str:
    """Text from the data, shown literally by matplotlib (a ``$`` would start mathtext)."""
    return str(text).replace("$", r"\$")


def figure_legend(fig: Figure, handles: list[Any], labels: list[str], loc: str, ncols: int) -> Any:
    """A figure legend no wider than the figure: fewer columns first, then long labels wrapped onto more
    lines (legend entries come from the data, and a long model name must not run off the page)."""
    import textwrap

    room = fig.bbox.width * 0.96
    renderer = fig.canvas.get_renderer()
    legend = None
    for width in (None, 48, 32, 22, 14):
        texts = labels if width is None else [
            "\n".join(textwrap.wrap(t, width, break_on_hyphens=False)) or t for t in labels]
        for n in range(max(ncols, 1), 0, -1):
            if legend is not None:
                legend.remove()
            legend = fig.legend(handles, texts, loc=loc, ncols=n, frameon=False)
            if legend.get_window_extent(renderer).width <= room:
                return legend
    return legend


def freeze_layout(fig: Figure) -> Any:
    """Run the constrained layout once and keep it, so text placed afterwards sees final positions."""
    fig.canvas.draw()
    fig.set_layout_engine("none")
    return fig.canvas.get_renderer()


def percent_label(value: float) -> str:
    """Tick label: 5 -> "5%", 99.5 -> "99.5%"."""
    return f"{value:g}%"


def _logit(pct: float) -> float:
    return float(np.log(pct / (100 - pct)))


def logit_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Round percent ticks inside [lo, hi], thinned so neighbours are evenly far apart in logit space."""
    gap = (_logit(hi) - _logit(lo)) / max_ticks
    ticks: list[float] = []
    for t in (t for t in LOGIT_TICKS if lo <= t <= hi):
        if not ticks or _logit(t) - _logit(ticks[-1]) >= gap:
            ticks.append(t)
    return ticks


def logit_percent_axes(ax: Axes, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    """Logit-scaled axes over the given percent ranges (data plotted as fractions), ticks labelled in %."""
    for axis, set_scale, set_lim, (lo, hi) in (
        (ax.xaxis, ax.set_xscale, ax.set_xlim, x_range), (ax.yaxis, ax.set_yscale, ax.set_ylim, y_range)
    ):
        set_scale("logit")
        set_lim(lo / 100, hi / 100)
        axis.set_major_locator(FixedLocator([t / 100 for t in logit_ticks(lo, hi)]))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: percent_label(round(v * 100, 3))))
        axis.set_minor_locator(NullLocator())
    ax.grid(True, color="#dddddd", linewidth=0.6)


#: The nearest a point on a logit axis comes to 0 % or 100 % (percent): values beyond are drawn here, marked.
LOGIT_EDGE = 0.1


def logit_clip(pct: float) -> float:
    """`pct` (percent) clipped to [LOGIT_EDGE, 100 - LOGIT_EDGE], where a logit axis can show it."""
    return float(min(max(pct, LOGIT_EDGE), 100 - LOGIT_EDGE))


def padded_logit_range(values: Any, pad: float = 0.25) -> tuple[float, float]:
    """Axis limits in percent enclosing `values` with a margin measured in logit units."""
    v = np.asarray([logit_clip(x) for x in values if np.isfinite(x)], dtype=float) / 100
    z = np.log(v / (1 - v))
    lo, hi = z.min() - pad, z.max() + pad
    return 100 / (1 + np.exp(-lo)), 100 / (1 + np.exp(-hi))


# --- label placement -------------------------------------------------------------------------------


def marker_boxes(ax: Axes, renderer: Any, min_size_pt: float = 5.0) -> list[Bbox]:
    """Display-space boxes of the markers drawn in `ax` (Line2D markers and scatter points of at least
    `min_size_pt` points across); small reference dots are left out."""
    boxes = []
    scale = ax.figure.dpi / 72.0
    for line in ax.get_lines():
        marker = line.get_marker()
        if not line.get_visible() or marker in (None, "None", "none", "", " ") or line.get_markersize() < min_size_pt:
            continue
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        r = (line.get_markersize() / 2 + line.get_markeredgewidth()) * scale
        for x, y in ax.transData.transform(xy[np.isfinite(xy).all(axis=1)]):
            boxes.append(Bbox([[x - r, y - r], [x + r, y + r]]))
    for coll in ax.collections:
        if not hasattr(coll, "get_sizes"):  # line collections (segments, error bars) are not markers
            continue
        sizes = np.asarray(coll.get_sizes(), float)
        offsets = np.asarray(coll.get_offsets(), float)
        if not coll.get_visible() or not len(sizes) or not len(offsets) or np.sqrt(sizes.max()) < min_size_pt:
            continue
        sizes = np.resize(sizes, len(offsets))
        for (x, y), s in zip(ax.transData.transform(offsets), sizes):
            r = (np.sqrt(s) / 2 + 0.6) * scale
            boxes.append(Bbox([[x - r, y - r], [x + r, y + r]]))
    return boxes


@dataclass
class Label:
    """Text to put next to the point (x, y) in data coordinates."""

    x: float
    y: float
    text: str
    color: str


#: Offsets (points) tried in order: close to the point first, then further out with a leader line.
_DIRECTIONS = [(1, 0.4), (-1, 0.4), (1, -0.4), (-1, -0.4), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)]
_DISTANCES = [8, 15, 24, 36, 52]


def _overlaps(box: Bbox, others: np.ndarray) -> float:
    """Total overlap area of `box` with each row (x0, y0, x1, y1) of `others`."""
    if not len(others):
        return 0.0
    w = np.minimum(box.x1, others[:, 2]) - np.maximum(box.x0, others[:, 0])
    h = np.minimum(box.y1, others[:, 3]) - np.maximum(box.y0, others[:, 1])
    return float((np.clip(w, 0, None) * np.clip(h, 0, None)).sum())


def _array(boxes: Iterable[Bbox]) -> np.ndarray:
    return np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes], dtype=float).reshape(-1, 4)


def place_labels(ax: Axes, labels: Iterable[Label], renderer: Any, soft: Iterable[Bbox] = (),
                 **text_kw: Any) -> list[Any]:
    """Annotate each label where its box overlaps no marker, no earlier label and stays inside the axes.

    Candidate positions go round the point at growing distances (a thin leader line joins far ones);
    overlapping `soft` boxes (lines, reference dots) is avoided when possible. The figure's layout
    must be frozen first (:func:`freeze_layout`), so that display coordinates are final.
    """
    hard = _array(marker_boxes(ax, renderer))
    soft_arr = _array(soft)
    inside = ax.get_window_extent(renderer)
    out = []
    for lab in labels:
        best: tuple[tuple[float, ...], Any, Bbox] | None = None
        for dist in _DISTANCES:
            for dx, dy in _DIRECTIONS:
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
                ann = ax.annotate(
                    lab.text, (lab.x, lab.y), xytext=(dx * dist, dy * dist * 0.8), textcoords="offset points",
                    ha=ha, va=va, color=lab.color, annotation_clip=False, **text_kw,
                    arrowprops={"arrowstyle": "-", "color": lab.color, "lw": 0.7, "shrinkA": 0, "shrinkB": 4}
                    if dist >= 24 else None,
                )
                ann.set_in_layout(False)
                box = ann.get_window_extent(renderer).padded(1.0)
                outside = max(0.0, inside.x0 - box.x0) + max(0.0, box.x1 - inside.x1) + \
                    max(0.0, inside.y0 - box.y0) + max(0.0, box.y1 - inside.y1)
                hard_hits = _overlaps(box, hard)
                score = (float(hard_hits > 0 or outside > 0), hard_hits + outside * 100, _overlaps(box, soft_arr), dist)
                if best is None or score < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (score, ann, box)
                else:
                    ann.remove()
            if best is not None and best[0][0] == 0 and best[0][2] == 0:
                break
        if best is not None:
            hard = np.vstack([hard, _array([best[2]])])
            out.append(best[1])
    return out


def line_boxes(ax: Axes, segments: Iterable[tuple[float, float, float, float]], width_px: float = 2.0) -> list[Bbox]:
    """Display boxes of vertical/horizontal segments (x0, y0, x1, y1 in data coordinates), for `soft` avoidance."""
    boxes = []
    for x0, y0, x1, y1 in segments:
        (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
        boxes.append(Bbox([[min(a, c) - width_px, min(b, d) - width_px], [max(a, c) + width_px, max(b, d) + width_px]]))
    return boxes
