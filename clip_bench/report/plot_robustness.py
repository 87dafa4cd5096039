"""The effective-robustness figure: one logit-logit panel per shift plus an averaged panel (CLIP Fig. 13 style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .plotting import logit_percent_axes, model_color, new_figure, padded_logit_range, save_png
from .reference import testbed_shifts, testbed_top1
from .robustness import BaselineFit, average_fit, fit_models, shift_fits
from .tables import KEY

X_AXIS_LABEL = {
    "val": "ImageNet top-1",
    "val-on-objectnet-classes": "ImageNet top-1, ObjectNet classes",
    "val-on-imagenet-r-classes": "ImageNet top-1, ImageNet-R classes",
    "val-on-imagenet-a-classes": "ImageNet top-1, ImageNet-A classes",
}


def _entry_label(model: str, pretrained: str, protocol: str) -> str:
    name = f"{model} ({pretrained})" if pretrained else model
    return name if protocol == "zeroshot" else f"{name}, {protocol.replace('_', ' ')}"


def _draw_fit(ax: Any, fit: BaselineFit, lo: float, hi: float) -> None:
    """Baseline curve: solid over the range of the models it was fitted on, dotted when extended."""
    xs = np.linspace(np.log(lo / (100 - lo)), np.log(hi / (100 - hi)), 300)
    xs = 100 / (1 + np.exp(-xs))
    ys = fit.predict(xs)
    for piece in fit.pieces[1:]:  # pieces need not meet: break the curve instead of joining them
        ys[min(int(np.searchsorted(xs, piece.x_lo)), len(ys) - 1)] = np.nan
    inside = xs >= fit.x_min
    ax.plot(xs[inside] / 100, ys[inside] / 100, color="black", lw=1.6, label="Baseline fit (testbed, logit OLS)")
    if (~inside).any():
        ax.plot(xs[~inside] / 100, ys[~inside] / 100, color="black", lw=1.2, ls=":")


def _panel(
    ax: Any, title: str, fit: BaselineFit, ref_x: pd.Series, ref_y: pd.Series, fit_idx: pd.Index,
    ours: pd.DataFrame, colors: dict[tuple[str, str, str], str], y_label: str,
) -> None:
    ref = pd.DataFrame({"x": ref_x, "y": ref_y}).dropna()
    ref = ref[(ref["x"] > 0) & (ref["x"] < 100) & (ref["y"] > 0) & (ref["y"] < 100)]
    in_fit = ref.index.isin(fit_idx) & (ref["x"] >= fit.x_min).to_numpy()
    core = ref[in_fit]
    (x_lo, x_hi), (y_lo, y_hi) = padded_logit_range([*core["x"], *ours["x"]]), padded_logit_range(
        [*core["y"], *ours["accuracy"], *ours["baseline"]]
    )
    visible = ref[~in_fit & ref["x"].between(x_lo, x_hi) & ref["y"].between(y_lo, y_hi)]
    logit_percent_axes(ax, (x_lo, x_hi), (y_lo, y_hi))
    lo, hi = min(x_lo, y_lo), max(x_hi, y_hi)
    ax.plot([lo / 100, hi / 100], [lo / 100, hi / 100], color="#888888", lw=1, ls="--", label="y = x")
    ax.scatter(visible["x"] / 100, visible["y"] / 100, s=10, facecolors="none", edgecolors="#c4c4c4",
               linewidths=0.7, label="Testbed: other models", zorder=2)
    ax.scatter(core["x"] / 100, core["y"] / 100, s=12, color="#8c8c8c", label="Testbed: standard models (fitted)",
               zorder=3)
    _draw_fit(ax, fit, x_lo, x_hi)
    for i, r in enumerate(ours.itertuples()):
        color = colors[(r.model, r.pretrained, r.protocol)]
        ax.scatter(r.x / 100, r.accuracy / 100, s=90, marker="*", color=color, edgecolors="black", linewidths=0.6,
                   zorder=5)
        ax.vlines(r.x / 100, r.baseline / 100, r.accuracy / 100, colors=color, lw=1.2, zorder=4)
        right = i % 2 == 0  # alternate sides so labels of nearby models do not collide
        ax.annotate(f"{r.effective_robustness:+.1f}", (r.x / 100, r.accuracy / 100), xytext=(7 if right else -7, 3),
                    textcoords="offset points", ha="left" if right else "right", va="bottom", fontsize=9,
                    color=color, fontweight="bold")
    ax.set_box_aspect(1)
    ax.set_title(title)
    ax.set_xlabel(X_AXIS_LABEL.get(fit.x_col, fit.x_col))
    ax.set_ylabel(y_label)


def plot_effective_robustness(er: pd.DataFrame, path: str | Path) -> tuple[Path, list[str]]:
    """Write the figure; returns its path and notes about models left out of a panel."""
    cfg, testbed, models = testbed_shifts(), testbed_top1(), fit_models()
    fits, fallbacks = shift_fits(), shift_fits(fallback=True)
    entries = er[[*KEY, "protocol"]].drop_duplicates()
    colors = {tuple(e): model_color(i) for i, e in enumerate(entries.itertuples(index=False))}
    panels = [s for s in cfg["shifts"] if (er["shift"] == s).any()]
    has_avg = (er["shift"] == "average").any()
    n = len(panels) + int(has_avg)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig = new_figure(max(4.3 * ncols, 8.0), 4.1 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    notes: list[str] = []
    for ax, shift in zip(axes, panels):
        spec, rows = cfg["shifts"][shift], er[er["shift"] == shift]
        x_axis = rows["x_axis"].iloc[0]
        fit = fits[shift] if fits[shift].x_col == x_axis else fallbacks[shift]
        for r in rows[rows["x_axis"] != x_axis].itertuples():
            notes.append(f"robustness plot: {r.model} left out of the {spec['label']} panel (x-axis {r.x_axis})")
        _panel(ax, spec["label"], fit, testbed[fit.x_col], testbed[fit.y_col], models.index,
               rows[rows["x_axis"] == x_axis], colors, f"{spec['label']} top-1")
    if has_avg:
        fit, mean_y = average_fit(list(cfg["shifts"]))
        _panel(axes[len(panels)], f"{cfg['average']['label']} ({len(cfg['shifts'])})", fit,
               testbed[fit.x_col], mean_y, models.index, er[er["shift"] == "average"], colors,
               "Mean top-1 over shifts")
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    for (model, pretrained, protocol), color in colors.items():
        handles.append(Line2D([], [], marker="*", ls="none", markersize=11, color=color, markeredgecolor="black",
                              markeredgewidth=0.6))
        labels.append(_entry_label(model, pretrained, protocol))
    fig.legend(handles, labels, loc="outside lower center", ncols=4 if ncols >= 3 else 2, frameon=False)
    fig.suptitle("Effective robustness against the imagenet-testbed baseline (Taori et al. 2020)\n"
                 "labels: shift accuracy minus the baseline's prediction, in points", fontsize=12)
    return save_png(fig, path), notes
