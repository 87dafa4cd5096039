"""The few-shot part: ``fewshot_curves.csv``, the average and per-task figures, the headline (the k at which a
probe matches zero-shot) and the shots-to-match figure and tables (CLIP paper Figs. 6 and 7)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

import clip_bench.report.html as html
from clip_bench.report.html import Cell, Section
from clip_bench.report.sections.context import ReportContext, csv_text, plural
from clip_bench.results import fewshot as fs
from clip_bench.results.rows import display_name
from clip_bench.results.tables import KEY, task_order


def fewshot_section(ctx: ReportContext) -> None:
    """The few-shot curves (CSV and figures), the average match with zero-shot and the shots to match it per
    task; skipped without few-shot rows."""
    s = ctx.summary
    curve = ctx.curve
    if curve.empty:
        s.skip("few-shot", "no fewshot_k* rows")
        return
    from clip_bench.report.plot_fewshot import fewshot_average_figure, fewshot_tasks_figure, shots_to_match_figure

    s.tables["fewshot"] = curve
    s.write(ctx.out / "fewshot_curves.csv", csv_text(curve))
    zs, lp = fs.reference_lines(ctx.rows, "zeroshot"), fs.reference_lines(ctx.rows, "linear_probe")
    metric = {r["task"]: r["metric"] for r in ctx.rows if r.get("is_main") and not r.get("subset")}
    tasks = task_order(curve["task"].unique())
    ks = sorted(int(k) for k in curve["k"].unique())
    s.lines.append(f"few-shot: {plural(len(tasks), 'task')}, k = {ks}")
    bars = set(curve["err_kind"])
    bar_text = (f"{fs.CI_BARS} where the rows carry one, else {fs.STD_BARS}" if len(bars) > 1
                else next(iter(bars)))
    avg, refs = fs.average_curve(curve, zs, lp)
    shown_avg, shown_refs = _average_group(ctx, avg, refs)
    if shown_refs and max(len(r["tasks"]) for r in shown_refs.values()) > 1:
        fig = fewshot_average_figure(shown_avg, shown_refs, ctx.styles)
        path = s.save_figure("fewshot_average", fig, ctx.plots / "fewshot_average.png")
        ctx.figures.append(Section("Few-shot: average over tasks", [html.figure(
            path, "few-shot average", "Task-averaged score of k-shot linear probes (mean over seeds, bars: "
            f"{bar_text}) per model; zero-shot at k = 0 and, when every task has one, the full-data probe at "
            "\"all\" (CLIP paper Fig. 6 style).")]))
    fig = fewshot_tasks_figure(curve, zs, lp, metric, tasks, ctx.styles)
    path = s.save_figure("fewshot_tasks", fig, ctx.plots / "fewshot_tasks.png")
    ctx.figures.append(Section("Few-shot: per task", [html.figure(
        path, "few-shot per task", f"Per task: k-shot linear probe (mean over seeds, bars: {bar_text}), zero-shot "
        "at k = 0 and the linear probe on all training data at \"all\", each model in its own colour and "
        "marker.")]))
    headline = fs.average_match(avg, refs)
    s.tables["fewshot_average_match"] = headline
    for r in headline.itertuples():
        text = _headline_text(r)
        s.lines.append(f"few-shot: {display_name(r.model, r.pretrained)}: {text}")
    ctx.model_columns["avg_match"] = {(r.model, r.pretrained): r for r in headline.itertuples()}
    full_k = fs.full_data_shots(ctx.rows)
    match = fs.shots_to_match(curve, zs, lp, full_k)
    if match.empty:
        s.skip("shots to match zero-shot", "no task has both few-shot and zero-shot results")
        return
    per_model = fs.match_summary(match)
    s.tables["shots_to_match"], s.tables["shots_to_match_summary"] = match, per_model
    s.write(ctx.out / "shots_to_match.csv", csv_text(match))
    s.write(ctx.out / "shots_to_match_summary.csv", csv_text(per_model))
    for r in per_model.itertuples():
        s.lines.append(f"shots to match zero-shot: {display_name(r.model, r.pretrained)} median "
                       f"{fmt_shots(r.median_shots) or 'n/a'}, mean {fmt_shots(r.mean_shots) or 'n/a'} over "
                       f"{plural(r.n_tasks, 'task')} ({r.n_extrapolated} extrapolated, "
                       f"{r.n_not_reached} not reached)")
    ctx.model_columns["median_shots"] = {(r.model, r.pretrained): r for r in per_model.itertuples()}
    fig = shots_to_match_figure(match, ctx.styles, (ks[0], ks[-1]))
    path = s.save_figure("shots_to_match", fig, ctx.plots / "shots_to_match.png")
    n_full = int(match["status"].eq(fs.TO_FULL).sum())
    n_below = int(match["status"].eq(fs.BELOW).sum())
    ctx.figures.append(Section("Shots to match zero-shot", [html.figure(
        path, "shots to match zero-shot", "Examples per class a linear probe needs to equal zero-shot, "
        f"interpolated in log2(k) through the {', '.join(map(str, ks))}-shot points and the full-data probe "
        f"(CLIP paper Fig. 7); {n_full} via the full-data point, {n_below} extrapolated below k = {ks[0]}.")]))
    wide = match.pivot_table(index=KEY, columns="task", values="shots", aggfunc="last")
    status = match.pivot_table(index=KEY, columns="task", values="status", aggfunc="last")
    cols = task_order(wide.columns)
    table = per_model.merge(wide[cols].reset_index(), on=KEY, how="left")
    header, cells = ctx.keyed(table)
    marks = {fs.BELOW: " (e)", fs.TO_FULL: " (f)", fs.AT_MIN: " (≤)"}
    for n, (row, key) in enumerate(zip(cells, zip(table["model"], table["pretrained"]))):
        for i, col in enumerate(header):
            if col in cols and isinstance(status.loc[key, col], str):
                v = float(wide.loc[key, col])
                text = fmt_shots(v) + marks.get(status.loc[key, col], "") if math.isfinite(v) else "not reached"
                row[i] = Cell(html.esc(text), repr(v) if math.isfinite(v) else "1e9", True)
            elif col in ("median_shots", "mean_shots"):
                v = float(table.loc[n, col])
                row[i] = Cell(html.esc(fmt_shots(v)), repr(v) if math.isfinite(v) else "", True)
    ctx.tables.append(Section("Shots to match zero-shot", [
        html.paragraph("Labelled examples per class a few-shot linear probe needs to equal zero-shot. "
                       "`median_shots` and `mean_shots` are over the tasks with a value (`n_tasks`). Marks: (f) "
                       "between the largest k and the full-data probe, (e) extrapolated below the smallest k, (≤) "
                       "already matched at the smallest k; \"not reached\": even the full-data probe (or, without "
                       "one, the largest k) stays below zero-shot. Per-task rows: shots_to_match.csv; per-model: "
                       "shots_to_match_summary.csv."),
        html.table(header, cells, sortable=True),
    ]))


def _average_group(ctx: ReportContext, avg: pd.DataFrame, refs: dict[tuple[str, str], dict[str, Any]]
                   ) -> tuple[pd.DataFrame, dict[tuple[str, str], dict[str, Any]]]:
    """The models whose averages cover the same tasks (the largest such set): only those share a panel."""
    if not refs:
        return avg, refs
    sets: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for key, r in refs.items():
        sets.setdefault(tuple(sorted(r["tasks"])), []).append(key)
    best = max(sets, key=lambda t: (len(t), len(sets[t])))
    keep = set(sets[best])
    left = [display_name(*k) for k in refs if k not in keep]
    if left:
        ctx.summary.notes.append(
            f"few-shot average panel: {', '.join(left)} left out (their few-shot tasks differ from the "
            f"{plural(len(best), 'task')} the others share; see the per-task panels)")
    mask = [k in keep for k in zip(avg["model"], avg["pretrained"])]
    return avg[mask], {k: v for k, v in refs.items() if k in keep}


def fmt_shots(v: float) -> str:
    """A number of shots as the report shows it (empty when there is none)."""
    return "" if v is None or not math.isfinite(v) else (f"{v:.1f}" if v < 100 else f"{v:.0f}")


def _headline_text(r: Any) -> str:
    """The few-shot headline, naming only k that were run (the smallest is not always 1)."""
    tasks = plural(r.n_tasks, "task")
    if r.status == fs.INTERPOLATED:
        return f"zero-shot matches a {r.shots:.1f}-shot linear probe, averaged over {tasks}"
    if r.status == fs.AT_MIN:
        return f"zero-shot is matched already by the {r.min_k}-shot probe (the smallest k run), averaged over {tasks}"
    if r.status == fs.BELOW:
        return (f"zero-shot is below the {r.min_k}-shot linear probe (the smallest k run; ≈ {r.shots:.2f}-shot by "
                f"extrapolation), averaged over {tasks}")
    return f"zero-shot beats the {r.max_k}-shot linear probe (the largest k run), averaged over {tasks}"


def short_match(r: Any) -> str:
    """The k at which zero-shot matches the task-averaged probe, short (``4.2-shot``, ``< 1-shot``)."""
    if r.status == fs.INTERPOLATED:
        return f"{r.shots:.1f}-shot"
    if r.status == fs.BELOW:
        return f"< {r.min_k}-shot"
    if r.status == fs.AT_MIN:
        return f"{r.min_k}-shot"
    return f"> {r.max_k}-shot"
