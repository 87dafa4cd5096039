"""The report's HTML page: a summary (one line per model, the headlines), then the sections' figures and tables,
the notes and the files written beside it."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

import clip_bench.report.html as html
from clip_bench.report.html import Cell, Section
from clip_bench.report.sections.context import ReportContext, plural
from clip_bench.report.sections.fewshot import fmt_shots, short_match
from clip_bench.results.averages import average_specs
from clip_bench.results.rows import display_name, shown_name
from clip_bench.results.tables import Rows
from clip_bench.tasks.catalog import headline_collections


def report_page(ctx: ReportContext, loaded: Rows, metrics: pd.DataFrame) -> str:
    """The HTML page: summary, the figures and tables the parts added, notes and the files written."""
    s = ctx.summary
    summary_sec = Section("Summary", _summary_blocks(ctx, loaded))
    sections = [summary_sec]
    if ctx.figures:
        sections.append(Section("Figures", [], ctx.figures))
    tables = [*ctx.tables, Section("All metrics", [html.paragraph(
        f"{len(metrics)} rows (each result once, the latest run of it) with their provenance are in "
        "all_metrics.csv beside this page.")])]
    sections.append(Section("Tables", [], tables))
    notes = [*s.skipped, *s.notes]
    if notes:
        sections.append(Section("Notes", [html.bullet_list(notes, "warn")]))
    files = sorted({str(p.relative_to(ctx.out)) for p in s.files if p.is_relative_to(ctx.out)} | {"report.html"})
    sections.append(Section("Files", [html.paragraph("Written beside this page: " + ", ".join(
        f"`{f}`" for f in files) + ".")]))
    sources = ", ".join(str(f) for f in loaded.files)
    intro = [f"{len(loaded.rows)} result rows from {sources}."]
    return html.page("clip-bench report", sections, intro)


def _summary_blocks(ctx: ReportContext, loaded: Rows) -> list[str]:
    keys = [k for k in ctx.styles if k in {shown_name(r) for r in ctx.rows}]
    records = []
    for key in keys:
        rec: dict[str, Any] = {"model": key[0], "pretrained": key[1]}
        if key in ctx.model_columns.get("zeroshot:tasks", {}):
            n = ctx.model_columns["zeroshot:tasks"][key]
            rec["zero-shot tasks"] = (n, str(n))
        for col, title in (("zeroshot:mean_clip27", "zero-shot clip27 mean"),
                           ("zeroshot:mean_shifts", "zero-shot shifts mean"),
                           ("linear_probe:mean_clip27", "linear-probe clip27 mean")):
            if col in ctx.model_columns and key in ctx.model_columns[col]:
                v, n = ctx.model_columns[col][key]
                rec[title] = (v, f"{html.fmt_value(v)} ({n})" if n else "")
        for name in ("openclip35", "datacomp38"):
            col = f"zeroshot:mean_{name}"
            if key in ctx.model_columns.get(col, {}):
                v, n = ctx.model_columns[col][key]
                total = len(average_specs()[name].members)
                if n:
                    rec[f"zero-shot {name} average"] = (v, html.fmt_value(v, 2) if math.isfinite(v)
                                                        else f"absent ({int(n)} of {total})")
        if key in ctx.model_columns.get("er", {}):
            v, n = ctx.model_columns["er"][key]
            rec["effective robustness"] = (v, f"{v:+.1f} ({n})")
        if key in ctx.model_columns.get("avg_match", {}):
            r = ctx.model_columns["avg_match"][key]
            rec["zero-shot matches (average)"] = (r.shots, short_match(r))
        if key in ctx.model_columns.get("median_shots", {}):
            r = ctx.model_columns["median_shots"][key]
            rec["median shots to match"] = (r.median_shots, f"{fmt_shots(r.median_shots)} ({r.n_tasks})"
                                            if math.isfinite(r.median_shots) else "")
        for source, title in (("paper", "zero-shot |Δ| vs CLIP paper"), ("openclip", "zero-shot |Δ| vs open_clip")):
            if key in ctx.model_columns.get(f"published:{source}", {}):
                d, flagged, n = ctx.model_columns[f"published:{source}"][key]
                rec[title] = (d, f"{d:.2f} ({flagged} of {n} > 1)")
        records.append(rec)
    cols = ["model", "pretrained"] + [c for c in (
        "zero-shot tasks", "zero-shot clip27 mean", "zero-shot shifts mean", "linear-probe clip27 mean",
        "zero-shot openclip35 average", "zero-shot datacomp38 average", "effective robustness",
        "zero-shot matches (average)", "median shots to match", "zero-shot |Δ| vs CLIP paper",
        "zero-shot |Δ| vs open_clip") if any(c in r for r in records)]
    header, cells = cols, []
    for rec in records:
        row = [ctx.model_cell((rec["model"], rec["pretrained"])), Cell(html.esc(rec["pretrained"]))]
        for c in cols[2:]:
            v, text = rec.get(c, (None, ""))
            ok = v is not None and isinstance(v, (int, float)) and math.isfinite(v)
            row.append(Cell(html.esc(text), repr(float(v)) if ok else "", True))
        cells.append(row)
    explain = {
        "zero-shot tasks": "how many tasks the model has zero-shot results for",
        "zero-shot clip27 mean": "the mean over the CLIP paper's 27 datasets a model has (how many in brackets)",
        "zero-shot shifts mean": "the mean over the ImageNet distribution shifts",
        "linear-probe clip27 mean": "the same for the linear probe on all training data",
        "zero-shot openclip35 average": "open_clip's average over its 35 classification datasets (DataComp "
                                        "protocol), only when the model has all of them (else how many it has)",
        "zero-shot datacomp38 average": "DataComp's average over its 38 datasets, likewise",
        "effective robustness": "zero-shot accuracy above the imagenet-testbed baseline, in points, mean over "
                                "the shifts (how many in brackets)",
        "zero-shot matches (average)": "the k at which the task-averaged k-shot linear probe equals "
                                       "task-averaged zero-shot (CLIP paper Fig. 6)",
        "median shots to match": "the median over tasks of the examples per class a probe needs to equal "
                                 "zero-shot, number of tasks in brackets (Fig. 7)",
        "zero-shot |Δ| vs CLIP paper": "mean absolute difference from the published number, in points, and how "
                                       "many of the tasks compared are more than 1 point off",
        "zero-shot |Δ| vs open_clip": "the same against open_clip's published results",
    }
    bullets = _headline_bullets(ctx)
    blocks = ['<ul class="headline">' + "".join(f"<li>{b}</li>" for b in bullets) + "</ul>"] if bullets else []
    blocks.append(html.table(header, cells, sortable=True, compact=True))
    if len(cols) > 2:
        blocks.append(html.bullet_list([f"`{c}`: {explain[c]}." for c in cols[2:]], "note"))
    data = [f"{len(loaded.rows)} result rows ({plural(len(keys), 'model')} drawn)."]
    if loaded.duplicates:
        data.append(f"{loaded.duplicates} repeated rows (the same result written again) "
                    "were collapsed to the latest.")
    if loaded.nonstandard:
        data.append(f"{len(loaded.nonstandard)} rows are not the standard evaluation (a subset or an override) and "
                    "are left out of every table and figure; they are in all_metrics.csv.")
    if loaded.malformed:
        data.append(f"{loaded.malformed} malformed rows were skipped"
                    + (f" ({'; '.join(loaded.skipped_lines)})." if loaded.skipped_lines else "."))
    blocks.append(html.paragraph(" ".join(data)))
    return blocks


def _headline_bullets(ctx: ReportContext) -> list[str]:
    out = []
    zs = ctx.model_columns.get("zeroshot:mean_clip27", {})
    finite = {k: v for k, v in zs.items() if v[1]}
    if finite:
        best = max(finite, key=lambda k: (finite[k][1], finite[k][0]))
        v, n = finite[best]
        out.append(f"Highest zero-shot clip27 mean: {html.esc(display_name(*best))}, <strong>{v:.1f}</strong> "
                   f"over {n} of {len(headline_collections()['clip27'])} datasets.")
    er = ctx.model_columns.get("er", {})
    if er:
        parts = ", ".join(f"{html.esc(display_name(*k))} <strong>{v:+.1f}</strong>" for k, (v, _) in
                          sorted(er.items(), key=lambda kv: -kv[1][0]))
        out.append(f"Effective robustness (zero-shot, mean over shifts, points): {parts}.")
    matches = ctx.model_columns.get("avg_match", {})
    if matches:
        parts = "; ".join(f"{html.esc(display_name(*k))} <strong>{html.esc(short_match(r))}</strong> "
                          f"({plural(r.n_tasks, 'task')})" for k, r in matches.items())
        out.append("Zero-shot matches a k-shot linear probe (both averaged over the model's few-shot tasks, "
                   f"CLIP paper Fig. 6): {parts}.")
    out.extend(ctx.headlines)
    return out
