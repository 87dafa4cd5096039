"""Few-shot figures: accuracy vs shots per task and averaged, and the shots-to-match-zero-shot bars."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter

from .plotting import model_color, new_figure, save_png

METRIC_LABEL = {
    "top1": "Top-1 accuracy (%)",
    "accuracy": "Top-1 accuracy (%)",
    "mean_per_class_recall": "Mean per-class recall (%)",
    "map_11point": "11-point mAP (%)",
    "roc_auc": "ROC AUC (%)",
    "mean_top1_top5": "Mean of top-1 and top-5 (%)",
}


def _name(model: str, pretrained: str) -> str:
    return f"{model} ({pretrained})" if pretrained else model


def _log2_axis(ax: Any, ks: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(ks))))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(ks) / 1.4, max(ks) * 1.4)


def plot_curves(
    curve: pd.DataFrame, zeroshot: dict[tuple[str, str], float], linear: dict[tuple[str, str], float],
    title: str, y_label: str, path: str | Path,
) -> Path:
    """One figure: mean ± std over seeds vs k per model; zero-shot dashed, full linear probe dotted.

    Colour identifies the model and line style the protocol, so the legend stays short.
    """
    fig = new_figure(6.4, 4.8)
    ax = fig.subplots()
    models = list(dict.fromkeys(zip(curve["model"], curve["pretrained"])))
    handles, labels = [], []
    for i, key in enumerate(models):
        g = curve[(curve["model"] == key[0]) & (curve["pretrained"] == key[1])].sort_values("k")
        color = model_color(i)
        ax.errorbar(g["k"], g["mean"], yerr=g["std"], color=color, marker="o", ms=4, capsize=3, lw=1.6)
        if key in zeroshot:
            ax.axhline(zeroshot[key], color=color, ls="--", lw=1.3)
        if key in linear:
            ax.axhline(linear[key], color=color, ls=":", lw=1.3)
        handles.append(Patch(color=color))
        labels.append(_name(*key))
    styles = [("-", "few-shot linear probe (±1 std over seeds)", True), ("--", "zero-shot", bool(zeroshot)),
              (":", "linear probe, all training data", bool(linear))]
    for ls, text, present in styles:
        if present:
            handles.append(Line2D([], [], color="#444444", ls=ls, lw=1.5, marker="o" if ls == "-" else None, ms=4))
            labels.append(text)
    _log2_axis(ax, curve["k"].astype(int).tolist())
    ax.set_xlabel("Labelled examples per class (k, log scale)")
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, color="#e2e2e2", linewidth=0.6)
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    return save_png(fig, path)


def plot_shots_to_match(
    match: pd.DataFrame, model: str, pretrained: str, k_range: tuple[int, int], path: str | Path
) -> Path:
    """Horizontal bars, one per task, of the shots a linear probe needs to equal zero-shot (CLIP Fig. 7 style)."""
    g = match[(match["model"] == model) & (match["pretrained"] == pretrained)]
    g = g[~g["task"].isin(["median", "mean"])].copy()
    min_k, max_k = k_range
    g["sort"] = g["shots"].fillna(np.inf)
    g = g.sort_values("sort")
    fig = new_figure(7.5, 1.9 + 0.3 * len(g))
    ax = fig.subplots()
    y = np.arange(len(g))
    reached = g["shots"].notna().to_numpy()
    extrapolated = (g["status"] == "extrapolated").to_numpy()
    color = "#1f77b4"
    ax.barh(y[reached & ~extrapolated], g["shots"][reached & ~extrapolated], color=color, height=0.7,
            label="interpolated between measured k")
    ax.barh(y[reached & extrapolated], g["shots"][reached & extrapolated], color="white", edgecolor=color,
            hatch="///", height=0.7, label=f"extrapolated outside the measured k = {min_k}–{max_k}")
    finite = g["shots"].dropna()
    lo = min([float(min_k), *finite]) / 2
    hi = max([float(max_k), *finite]) * 2
    for yi, r in zip(y, g.itertuples()):
        text = f"{r.shots:.1f}" if math.isfinite(r.shots) else f"not reached by k = {max_k}"
        ax.text(r.shots * 1.08 if math.isfinite(r.shots) else lo * 1.1, yi, text, va="center", fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85}, zorder=4)
    if len(finite):
        ax.axvline(finite.median(), color="black", ls="--", lw=1.2, label=f"median {finite.median():.1f}")
        ax.axvline(finite.mean(), color="#d62728", ls=":", lw=1.4, label=f"mean {finite.mean():.1f}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlim(lo, hi)
    ax.set_yticks(y, g["task"])
    ax.set_ylim(-0.7, len(g) - 0.3)
    ax.set_xlabel("Labelled examples per class a linear probe needs to match zero-shot (log scale)")
    ax.set_title(f"Data efficiency of zero-shot: {_name(model, pretrained)}")
    ax.grid(True, axis="x", color="#e2e2e2", linewidth=0.6)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    return save_png(fig, path)


def references(df: pd.DataFrame, task: str) -> dict[tuple[str, str], float]:
    """{(model, pretrained): value} for one task of a reference table (zero-shot or linear probe)."""
    sel = df[df["task"] == task]
    return {(m, p): float(v) for m, p, v in zip(sel["model"], sel["pretrained"], sel["value"])}
