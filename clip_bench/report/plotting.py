"""Shared plot plumbing: Agg figures without pyplot state, consistent style, atomic PNG writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ..io_utils import atomic_path

DPI = 110
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}
#: Colours for evaluated models (tab10 without its grey, which is reserved for reference points).
MODEL_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
LOGIT_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9]


def model_color(i: int) -> str:
    """Colour of the i-th evaluated model, stable across every figure of a report."""
    return MODEL_COLORS[i % len(MODEL_COLORS)]


def new_figure(width: float, height: float) -> Figure:
    """A Figure bound to the Agg canvas (no pyplot, so no global state or GUI backend)."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return path


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


def logit_percent_axes(ax: Any, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
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


def padded_logit_range(values: Any, pad: float = 0.25) -> tuple[float, float]:
    """Axis limits in percent enclosing `values` with a margin measured in logit units."""
    v = np.clip(np.asarray([x for x in values if np.isfinite(x)], dtype=float) / 100, 1e-3, 1 - 1e-3)
    z = np.log(v / (1 - v))
    lo, hi = z.min() - pad, z.max() + pad
    return 100 / (1 + np.exp(-lo)), 100 / (1 + np.exp(-hi))
