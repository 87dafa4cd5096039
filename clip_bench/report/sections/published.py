"""The published-comparison part: ``published_comparison.csv`` and the table of our numbers against the CLIP
paper's and open_clip's."""

from __future__ import annotations

import pandas as pd

import clip_bench.report.html as html
from clip_bench.report.html import Section
from clip_bench.report.published import SOURCE_LABEL, compared, summary_lines
from clip_bench.report.sections.context import ReportContext, csv_text
from clip_bench.results.tables import KEY


def published_section(ctx: ReportContext) -> None:
    """Our numbers against the CLIP paper's and open_clip's: the CSV, an overview per model and source, every
    comparison, and the mean |Δ| per model for the page's summary."""
    s, comparison = ctx.summary, ctx.comparison
    if comparison.empty:
        s.skip("published comparison", "no evaluated model matches a CLIP-paper or open_clip row")
        return
    s.write(ctx.out / "published_comparison.csv", csv_text(comparison))
    lines = summary_lines(comparison)
    s.lines.extend(lines)
    overview = []
    for (model, pretrained, protocol, source), g in comparison.groupby([*KEY, "protocol", "source"], sort=False):
        tasks = compared(g)
        flagged = tasks[tasks["flagged"]]
        averages = g[(g["kind"] == "average") & g["delta"].notna()]
        overview.append({
            "model": model, "pretrained": pretrained, "protocol": protocol,
            "against": f"{SOURCE_LABEL[source]} [{g['published_model'].iloc[0]}]", "tasks": len(tasks),
            "mean Δ": tasks["delta"].mean(), "mean |Δ|": tasks["delta"].abs().mean(), "|Δ| > 1": len(flagged),
            "tasks more than 1 point off": ", ".join(f"{r.task} {r.delta:+.1f}" for r in flagged.itertuples()),
            "averages": ", ".join(f"{r.task} {r.ours:.2f} (Δ {r.delta:+.2f})" for r in averages.itertuples()),
            "not compared": int(g["delta"].isna().sum()),
        })
    over = pd.DataFrame(overview)
    o_header, o_cells = html.frame_cells(over, digits=2)
    for row, key in zip(o_cells, zip(over["model"], over["pretrained"])):
        row[0] = ctx.model_cell(key)
    n_flagged = int(comparison["flagged"].sum())
    n_numbers = int(comparison["delta"].notna().sum())
    shown = comparison.assign(flagged=comparison["flagged"].map({True: "|Δ| > 1", False: ""}))
    header, cells = ctx.keyed(shown)
    ctx.tables.append(Section("Against published numbers", [
        html.paragraph("Like with like only. CLIP paper: Tables 11 (zero-shot) and 10 (linear probe), secondary "
                       "transcription (assets/reference/README.md), compared with the paper-protocol tasks "
                       "(e.g. voc2007, 11-point mAP). open_clip: its published results (docs/openclip_results.csv), "
                       "measured with DataComp's evaluation, compared with the DataComp-protocol tasks "
                       "(datacomp_*, e.g. datacomp_voc2007, top-1 on object crops) and its 35- and 38-dataset "
                       "averages with the complete averages. Where a model has the dataset only with the other "
                       "protocol, or an average is incomplete, no number is compared and the note says what to "
                       "run. Δ = ours − published, in points."),
        html.table(o_header, o_cells, sortable=True, wrap=("tasks more than 1 point off", "averages")),
        html.details(f"All {len(comparison)} published columns ({n_numbers} compared, {n_flagged} with |Δ| > 1); "
                     "click a column to sort",
                     [html.table(header, cells, sortable=True, wrap=("note",))]),
    ]))
    zs = compared(comparison[comparison["protocol"] == "zeroshot"])
    for source in ("paper", "openclip"):
        part = zs[zs["source"] == source]
        ctx.model_columns[f"published:{source}"] = {
            key: (float(g["delta"].abs().mean()), int(g["flagged"].sum()), len(g))
            for key, g in part.groupby(KEY)}
