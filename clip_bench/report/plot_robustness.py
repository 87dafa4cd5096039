"""The effective-robustness figure: one logit-logit panel per shift plus an averaged panel (CLIP Fig. 13 style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from clip_bench.report.baseline import BaselineFit, average_fit, fit_models, shift_fits
from clip_bench.report.plotting import (
    LOGIT_EDGE,
    Label,
    figure_legend,
    freeze_layout,
    line_boxes,
    logit_clip,
    logit_percent_axes,
    new_figure,
    padded_logit_range,
    place_labels,
    plain,
    save_png,
    styled,
)
from clip_bench.report.reference import testbed_shifts, testbed_top1
from clip_bench.report.styles import ModelStyle

X_AXIS_LABEL = {
    "val": "ImageNet top-1",
    "val-on-objectnet-classes": "ImageNet top-1, ObjectNet classes",
    "val-on-imagenet-r-classes": "ImageNet top-1, ImageNet-R classes",
    "val-on-imagenet-a-classes": "ImageNet top-1, ImageNet-A classes",
}
FIT_LABEL = "Baseline: logit-linear fit to standard testbed models"
EXTENDED_LABEL = "Baseline extended beyond the fitted models"
OTHER_LABEL = "Testbed: other models (not fitted)"
CORE_LABEL = "Testbed: standard models (fitted)"
DIAGONAL_LABEL = "y = x"


def _draw_fit(ax: Axes, fit: BaselineFit, lo: float, hi: float) -> None:
    """Baseline curve: solid over the range of the models it was fitted on, dotted when extended."""
    xs = np.linspace(np.log(lo / (100 - lo)), np.log(hi / (100 - hi)), 300)
    xs = 100 / (1 + np.exp(-xs))
    ys = fit.predict(xs)
    for piece in fit.pieces[1:]:  # pieces need not meet: break the curve instead of joining them
        ys[min(int(np.searchsorted(xs, piece.x_lo)), len(ys) - 1)] = np.nan
    inside = xs >= fit.x_min
    ax.plot(xs[inside] / 100, ys[inside] / 100, color="black", lw=1.6, label=FIT_LABEL)
    if (~inside).any():
        ax.plot(xs[~inside] / 100, ys[~inside] / 100, color="black", lw=1.2, ls=":", label=EXTENDED_LABEL)


def _err(center: float, lo: Any, hi: Any) -> list[list[float]] | None:
    """Error bar lengths (fractions) around `center` (percent, as drawn), ends clipped to where a logit axis
    shows them."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(center - logit_clip(lo), 0.0) / 100], [max(logit_clip(hi) - center, 0.0) / 100]]


def at_logit_edge(ours: pd.DataFrame) -> pd.DataFrame:
    """`ours` with the points a logit axis cannot show (0 % or 100 %, or closer than LOGIT_EDGE) moved to its edge:
    x, accuracy and baseline clipped, and ``clipped`` saying which accuracy was moved, e.g. "x 100%" ("" if none)."""
    ours = ours.copy()
    moved = [" and ".join(f"{axis} {v:g}%" for axis, v in (("x", x), ("y", y)) if logit_clip(v) != v)
             for x, y in zip(ours["x"], ours["accuracy"])]
    for col in ("x", "accuracy", "baseline"):
        ours[col] = [logit_clip(v) for v in ours[col]]
    ours["clipped"] = moved
    return ours


def _panel(
    ax: Axes, title: str, fit: BaselineFit, ref_x: pd.Series, ref_y: pd.Series, fit_idx: pd.Index,
    ours: pd.DataFrame, styles: dict[tuple[str, str], ModelStyle], y_label: str,
) -> list[Label]:
    """Draw one panel; returns the labels to place once the figure's layout is final. `ours` is drawn as
    :func:`at_logit_edge` gives it: a point at 0 % or 100 % sits on the panel's edge, its label marked."""
    ref = pd.DataFrame({"x": ref_x, "y": ref_y}).dropna()
    ref = ref[(ref["x"] > 0) & (ref["x"] < 100) & (ref["y"] > 0) & (ref["y"] < 100)]
    in_fit = ref.index.isin(fit_idx) & (ref["x"] >= fit.x_min).to_numpy()
    core = ref[in_fit]
    xs = [*core["x"], *ours["x"], *ours["x_ci_low"], *ours["x_ci_high"]]
    ys = [*core["y"], *ours["accuracy"], *ours["baseline"], *ours["acc_ci_low"], *ours["acc_ci_high"]]
    (x_lo, x_hi), (y_lo, y_hi) = padded_logit_range(xs), padded_logit_range(ys)
    visible = ref[~in_fit & ref["x"].between(x_lo, x_hi) & ref["y"].between(y_lo, y_hi)]
    logit_percent_axes(ax, (x_lo, x_hi), (y_lo, y_hi))
    lo, hi = max(x_lo, y_lo), min(x_hi, y_hi)
    if lo < hi:  # only when the diagonal crosses the panel
        ax.plot([lo / 100, hi / 100], [lo / 100, hi / 100], color="#888888", lw=1, ls="--", label=DIAGONAL_LABEL)
    if len(visible):
        ax.scatter(visible["x"] / 100, visible["y"] / 100, s=10, facecolors="none", edgecolors="#c4c4c4",
                   linewidths=0.7, label=OTHER_LABEL, zorder=2)
    ax.scatter(core["x"] / 100, core["y"] / 100, s=12, color="#8c8c8c", label=CORE_LABEL, zorder=3)
    _draw_fit(ax, fit, x_lo, x_hi)
    labels = []
    for r in ours.itertuples():
        st = styles[(r.model, r.pretrained)]
        face = st.color if r.protocol == "zeroshot" else "white"
        ax.vlines(r.x / 100, r.baseline / 100, r.accuracy / 100, colors=st.color, lw=1.2, zorder=4)
        xerr, yerr = _err(r.x, r.x_ci_low, r.x_ci_high), _err(r.accuracy, r.acc_ci_low, r.acc_ci_high)
        if xerr or yerr:
            ax.errorbar([r.x / 100], [r.accuracy / 100], xerr=xerr, yerr=yerr, fmt="none", ecolor=st.color,
                        elinewidth=1.0, capsize=2.5, zorder=5)
        ax.plot([r.x / 100], [r.accuracy / 100], marker=st.marker, ms=9, ls="none", color=st.color,
                markerfacecolor=face, markeredgecolor="black", markeredgewidth=0.7, zorder=6)
        edge = " (at edge)" if r.clipped else ""
        labels.append(Label(r.x / 100, r.accuracy / 100, f"{r.effective_robustness:+.1f}{edge}", st.color))
    ax.set_box_aspect(1)
    ax.set_title(title)
    ax.set_xlabel(X_AXIS_LABEL.get(fit.x_col, fit.x_col))
    ax.set_ylabel(y_label)
    return labels


def _soft_boxes(ax: Axes, ours: pd.DataFrame) -> list[Bbox]:
    """What labels should rather not cover: the ER segments and the testbed dots."""
    segs = [(r.x / 100, r.baseline / 100, r.x / 100, r.accuracy / 100) for r in ours.itertuples()]
    dots = []
    for coll in ax.collections:
        if not hasattr(coll, "get_sizes"):
            continue
        for x, y in np.asarray(coll.get_offsets(), float):
            dots.append((x, y, x, y))
    return line_boxes(ax, segs) + line_boxes(ax, dots, width_px=2.5)


def _legend(fig: Figure, axes: list[Any], er: pd.DataFrame, styles: dict[tuple[str, str], ModelStyle]) -> None:
    """Only what is drawn: reference artists found in some panel, then each model, then the protocol fill."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    order = [DIAGONAL_LABEL, OTHER_LABEL, CORE_LABEL, FIT_LABEL, EXTENDED_LABEL]
    handles = [seen[k] for k in order if k in seen]
    labels = [k for k in order if k in seen]
    drawn = set(zip(er["model"], er["pretrained"]))
    for key in (k for k in styles if k in drawn):
        st = styles[key]
        handles.append(Line2D([], [], marker=st.marker, ls="none", ms=9, color=st.color, markeredgecolor="black",
                              markeredgewidth=0.7))
        labels.append(plain(st.label))
    protocols = set(er["protocol"])
    if len(protocols) > 1 or protocols != {"zeroshot"}:
        for protocol, face, text in (("zeroshot", "#777777", "filled: zero-shot"),
                                     ("linear_probe", "white", "hollow: linear probe")):
            if protocol in protocols:
                handles.append(Line2D([], [], marker="o", ls="none", ms=9, color="#777777", markerfacecolor=face,
                                      markeredgecolor="black", markeredgewidth=0.7))
                labels.append(text)
    figure_legend(fig, handles, labels, "outside lower center", 3)


def _edge_notes(ours: pd.DataFrame, panel: str, notes: list[str]) -> pd.DataFrame:
    """Add a note per point of `ours` that :func:`at_logit_edge` moved to the panel's edge; returns `ours`."""
    for r in ours[ours["clipped"] != ""].itertuples():
        notes.append(f"robustness plot: {r.model} ({r.protocol}) is drawn at the edge of the {panel} panel, "
                     f"{LOGIT_EDGE:g}% from 0 or 100%, with its label marked (at edge): a logit axis cannot show its "
                     f"{r.clipped}; the tables give its values")
    return ours


@styled
def effective_robustness_figure(
    er: pd.DataFrame, styles: dict[tuple[str, str], ModelStyle]
) -> tuple[Figure, list[str]]:
    """Build the figure (labels placed off every marker); returns it and notes about models left out of a panel."""
    cfg, testbed, models = testbed_shifts(), testbed_top1(), fit_models()
    fits, fallbacks = shift_fits(), shift_fits(fallback=True)
    panels = [s for s in cfg["shifts"] if (er["shift"] == s).any()]
    has_avg = (er["shift"] == "average").any()
    n = len(panels) + int(has_avg)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig = new_figure(max(4.3 * ncols, 8.0), 4.1 * nrows + 1.3)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    notes: list[str] = []
    drawn: list[tuple[Any, list[Label], pd.DataFrame]] = []
    for ax, shift in zip(axes, panels):
        spec, rows = cfg["shifts"][shift], er[er["shift"] == shift]
        x_axis = rows["x_axis"].iloc[0]
        fit = fits[shift] if fits[shift].x_col == x_axis else fallbacks[shift]
        for r in rows[rows["x_axis"] != x_axis].itertuples():
            notes.append(f"robustness plot: {r.model} left out of the {spec['label']} panel (x-axis {r.x_axis})")
        title = spec["label"]
        if len(fit.pieces) > 1:
            title += f" (baseline in 2 pieces, split at {fit.pieces[1].x_lo:.1f}%)"
        ours = _edge_notes(at_logit_edge(rows[rows["x_axis"] == x_axis]), spec["label"], notes)
        drawn.append((ax, _panel(ax, title, fit, testbed[fit.x_col], testbed[fit.y_col], models.index, ours,
                                 styles, f"{spec['label']} top-1"), ours))
    if has_avg:
        fit, mean_y = average_fit(list(cfg["shifts"]))
        label = cfg["average"]["label"]
        ax, ours = axes[len(panels)], _edge_notes(at_logit_edge(er[er["shift"] == "average"]), label, notes)
        drawn.append((ax, _panel(ax, f"{label} ({len(cfg['shifts'])})", fit, testbed[fit.x_col],
                                 mean_y, models.index, ours, styles, "Mean top-1 over shifts"), ours))
    for ax in axes[n:]:
        ax.set_visible(False)
    _legend(fig, axes[:n], er[er["shift"] != "mean"], styles)
    fig.suptitle("Effective robustness: points above the imagenet-testbed baseline (Taori et al. 2020)", fontsize=12)
    renderer = freeze_layout(fig)
    for ax, labels, ours in drawn:
        place_labels(ax, labels, renderer, soft=_soft_boxes(ax, ours), fontsize=9, fontweight="bold")
    return fig, notes


def plot_effective_robustness(
    er: pd.DataFrame, path: str | Path, styles: dict[tuple[str, str], ModelStyle]
) -> tuple[Path, list[str], Figure]:
    """Write the figure; returns its path, notes, and the figure itself (for inspection)."""
    fig, notes = effective_robustness_figure(er, styles)
    return save_png(fig, path), notes, fig
