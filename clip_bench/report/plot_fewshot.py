"""Few-shot figures: accuracy vs shots (averaged, and one small panel per task), and shots-to-match zero-shot.

Zero-shot sits at k = 0 and the full-data linear probe at "all" on the same axis (CLIP paper Fig. 6
style), as markers in each model's colour: no horizontal reference lines, however many models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from clip_bench.report.plotting import figure_legend, new_figure, plain, save_png, styled
from clip_bench.report.styles import ModelStyle
from clip_bench.results import fewshot as fs

METRIC_LABEL = {
    "top1": "Top-1 accuracy (%)",
    "accuracy": "Top-1 accuracy (%)",
    "mean_per_class_recall": "Mean per-class recall (%)",
    "map_11point": "11-point mAP (%)",
    "roc_auc": "ROC AUC (%)",
    "mean_top1_top5": "Mean of top-1 and top-5 (%)",
}
NEUTRAL = "#777777"  # legend glyphs that explain a fill style rather than name a model
Ref = dict[tuple[str, str], tuple[float, tuple[float, float] | None]]


def metric_label(metric: str) -> str:
    return METRIC_LABEL.get(metric, f"{plain(metric or 'score')} (%)")


def _dodge(i: int, n: int) -> float:
    """Multiplicative x offset on the log axis so markers of different models at one k do not coincide."""
    return float(2 ** ((i - (n - 1) / 2) * 0.07)) if n > 1 else 1.0


def _err(value: tuple[float, float] | None) -> list[list[float]] | None:
    return None if value is None else [[value[0]], [value[1]]]


def _k_axis(ax: Axes, ks: list[int], with_zero: bool, with_full: bool) -> tuple[float, float]:
    """log2 axis over the measured k with "0" (zero-shot) left of them and "all" (full data) right of them."""
    lo, hi = min(ks), max(ks)
    x0, xf = lo / 2.8, hi * 2.8
    ticks = ([x0] if with_zero else []) + sorted(set(ks)) + ([xf] if with_full else [])
    names = {x0: "0", xf: "all"}
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: names.get(v, f"{v:g}")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim((x0 if with_zero else lo) / 1.5, (xf if with_full else hi) * 1.5)
    for edge, present in ((math.sqrt(x0 * lo), with_zero), (math.sqrt(hi * xf), with_full)):
        if present:
            ax.axvline(edge, color="#bbbbbb", lw=0.8, ls="-", zorder=1)
    return x0, xf


def _curve_panel(ax: Axes, curve: pd.DataFrame, zeroshot: Ref, linear: Ref, styles: dict[tuple[str, str], ModelStyle],
                 ms: float = 5.0) -> None:
    """One panel: per model the probe curve with error bars, zero-shot at "0", the full-data probe at "all"."""
    keys = [k for k in styles if ((curve["model"] == k[0]) & (curve["pretrained"] == k[1])).any()]
    ks = sorted(int(k) for k in curve["k"].unique())
    x0, xf = _k_axis(ax, ks, any(k in zeroshot for k in keys), any(k in linear for k in keys))
    for i, key in enumerate(keys):
        st, d = styles[key], _dodge(i, len(keys))
        g = curve[(curve["model"] == key[0]) & (curve["pretrained"] == key[1])].sort_values("k")
        ax.errorbar(g["k"] * d, g["mean"], yerr=[g["err_low"], g["err_high"]], color=st.color, marker=st.marker,
                    ms=ms, lw=1.5, capsize=2, elinewidth=0.9, zorder=4)
        if key in zeroshot:
            v, err = zeroshot[key]
            ax.errorbar([x0 * d], [v], yerr=_err(err), color=st.color, marker=st.marker, ms=ms + 2, ls="none",
                        markeredgecolor="black", markeredgewidth=0.6, capsize=2, zorder=5)
        if key in linear:
            v, err = linear[key]
            ax.plot([g["k"].iloc[-1] * d, xf * d], [g["mean"].iloc[-1], v], color=st.color, ls=":", lw=1.1, zorder=3)
            ax.errorbar([xf * d], [v], yerr=_err(err), color=st.color, marker=st.marker, ms=ms + 2, ls="none",
                        markeredgecolor="black", markeredgewidth=0.6, capsize=2, zorder=5)
    ax.grid(True, color="#e2e2e2", linewidth=0.6)


def _model_legend(fig: Figure, keys: list[tuple[str, str]], styles: dict[tuple[str, str], ModelStyle],
                  ncols: int, loc: str = "outside lower center") -> None:
    handles = [Line2D([], [], color=styles[k].color, marker=styles[k].marker, ms=6, lw=1.5) for k in keys]
    figure_legend(fig, handles, [plain(styles[k].label) for k in keys], loc, ncols)


def _drawn_keys(curve: pd.DataFrame, styles: dict[tuple[str, str], ModelStyle]) -> list[tuple[str, str]]:
    present = set(zip(curve["model"], curve["pretrained"]))
    return [k for k in styles if k in present]


@styled
def fewshot_average_figure(
    avg: pd.DataFrame, refs: dict[tuple[str, str], dict[str, Any]], styles: dict[tuple[str, str], ModelStyle],
) -> Figure:
    """The task-averaged curve per model, zero-shot at 0 and the full-data probe at "all" (when every task has one)."""
    fig = new_figure(6.6, 4.6)
    ax = fig.subplots()
    zs = {k: (r["zeroshot"], r["zeroshot_err"]) for k, r in refs.items()}
    lp = {k: (r["linear_probe"], None) for k, r in refs.items() if r["linear_probe"] is not None}
    _curve_panel(ax, avg, zs, lp, styles, ms=6)
    n = sorted({len(r["tasks"]) for r in refs.values()})
    tasks = f"{n[0]} tasks" if len(n) == 1 else f"{n[0]}–{n[-1]} tasks"
    ax.set_title(f"Average over {tasks}: few-shot linear probe vs zero-shot")
    ax.set_xlabel("Labelled examples per class (0 = zero-shot, all = full training set)")
    ax.set_ylabel("Mean score over tasks (%)")
    keys = _drawn_keys(avg, styles)
    _model_legend(fig, keys, styles, 2 if len(keys) > 3 else len(keys))
    return fig


@styled
def fewshot_tasks_figure(
    curve: pd.DataFrame, zeroshot: pd.DataFrame, linear: pd.DataFrame, metrics: dict[str, str], tasks: list[str],
    styles: dict[tuple[str, str], ModelStyle],
) -> Figure:
    """Small multiples: one panel per task, one shared legend."""
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = new_figure(max(3.5 * ncols, 5.0), 3.0 * nrows + 0.9)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())

    def refs(df: pd.DataFrame, task: str) -> Ref:
        sel = df[df["task"] == task]
        return {(m, p): (float(v), None if math.isnan(lo) else (v - lo, hi - v))
                for m, p, v, lo, hi
                in sel[["model", "pretrained", "value", "ci_low", "ci_high"]].itertuples(index=False)}

    for ax, task in zip(axes, tasks):
        _curve_panel(ax, curve[curve["task"] == task], refs(zeroshot, task), refs(linear, task), styles)
        ax.set_title(plain(task))
        ax.set_ylabel(metric_label(metrics.get(task, "")), fontsize=8)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    fig.supxlabel("Labelled examples per class (0 = zero-shot, all = full training set)", fontsize=10)
    keys = _drawn_keys(curve, styles)
    _model_legend(fig, keys, styles, min(len(keys), 4), loc="outside upper center")
    return fig


#: How each shots-to-match status is drawn: marker fill style and legend text.
STATUS_FILL = {
    fs.INTERPOLATED: ("full", "filled: between k-shot points"),
    fs.AT_MIN: ("full", "filled: between k-shot points"),
    fs.TO_FULL: ("left", "half: between the largest k and the full-data probe"),
    fs.BELOW: ("none", "hollow: extrapolated below the smallest k"),
}


@styled
def shots_to_match_figure(match: pd.DataFrame, styles: dict[tuple[str, str], ModelStyle],
                          k_range: tuple[int, int]) -> Figure:
    """Dot plot (CLIP paper Fig. 7 as dots, every model at once): per task, the examples per class a linear
    probe needs to equal zero-shot; tasks that never get there sit in a "not reached" column."""
    keys = _drawn_keys(match, styles)
    order = match.groupby("task")["shots"].median().sort_values(na_position="first", ascending=False)
    tasks = list(order.index)
    finite = match["shots"].dropna()
    min_k, max_k = k_range
    lo = min([float(min_k), *finite]) / 1.6
    hi = max([float(max_k), *finite]) * 1.6
    x_nr = hi * 2.2
    row_in = max(0.32, 0.09 * len(keys))
    fig = new_figure(7.6, 1.5 + row_in * len(tasks) + 0.25 * math.ceil((len(keys) + 3) / 3))
    ax = fig.subplots()
    ax.axvspan(min_k, max_k, color="#eef3f8", zorder=0, label=f"measured k = {min_k}–{max_k}")
    y_of = {t: i for i, t in enumerate(tasks)}
    shown: dict[str, str] = {}
    for i, key in enumerate(keys):
        st = styles[key]
        g = match[(match["model"] == key[0]) & (match["pretrained"] == key[1])]
        offset = i - (len(keys) - 1) / 2
        dy = offset * min(0.75 / max(len(keys), 1), 0.22)
        for r in g.itertuples():
            y = y_of[r.task] + dy
            if math.isfinite(r.shots):
                fill, text = STATUS_FILL.get(r.status, ("full", "filled: between k-shot points"))
                x = r.shots
            else:
                fill, text, x = "full", "", x_nr * 2 ** (offset * 0.12)
            shown[fill] = text or shown.get(fill, "")
            ax.plot([x], [y], marker=st.marker, ms=6.5, ls="none", color=st.color, fillstyle=fill,
                    markerfacecoloralt="white", markeredgecolor=st.color, markeredgewidth=1.2, zorder=4)
    not_reached = bool(match["shots"].isna().any())
    if not_reached:
        ax.axvline(math.sqrt(hi * x_nr), color="#999999", lw=0.8)
    ax.set_xscale("log", base=2)
    ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
             if lo <= t <= hi]
    ax.xaxis.set_major_locator(FixedLocator([*ticks, *([x_nr] if not_reached else [])]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: "not\nreached" if v == x_nr else f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(lo, x_nr * 1.9 if not_reached else hi)
    ax.set_yticks(range(len(tasks)), [plain(t) for t in tasks])
    ax.set_ylim(-0.7, len(tasks) - 0.3)
    ax.set_xlabel("Labelled examples per class a linear probe needs to match zero-shot (log scale)")
    ax.grid(True, axis="x", color="#e2e2e2", linewidth=0.6)
    handles: list[Any] = [Patch(color="#eef3f8", label=f"measured k = {min_k}–{max_k}")]
    labels = [f"measured k = {min_k}–{max_k}"]
    for key in keys:
        handles.append(Line2D([], [], marker=styles[key].marker, ms=7, ls="none", color=styles[key].color))
        labels.append(plain(styles[key].label))
    if set(shown) - {"full"}:  # fill styles need explaining only when more than one is drawn
        for fill, text in shown.items():
            if text:
                handles.append(Line2D([], [], marker="o", ms=7, ls="none", color=NEUTRAL, fillstyle=fill,
                                      markerfacecoloralt="white", markeredgecolor=NEUTRAL, markeredgewidth=1.2))
                labels.append(text)
    figure_legend(fig, handles, labels, "outside lower center", 3 if len(handles) > 4 else 2)
    ax.set_title("Data efficiency of zero-shot: shots a linear probe needs to match it")
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write a figure made here (see :func:`.plotting.save_png`)."""
    return save_png(fig, path)


def references(df: pd.DataFrame, task: str) -> dict[tuple[str, str], float]:
    """{(model, pretrained): value} for one task of a reference table (zero-shot or linear probe)."""
    sel = df[df["task"] == task]
    return {(m, p): float(v) for m, p, v in zip(sel["model"], sel["pretrained"], sel["value"])}

