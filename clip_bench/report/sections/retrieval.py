"""The retrieval part: ``retrieval.csv`` and the "Zero-shot retrieval" table, with deltas against the CLIP
paper's Table 13 (:mod:`clip_bench.report.retrieval`)."""

from __future__ import annotations

import clip_bench.report.html as html
from clip_bench.report.html import Section
from clip_bench.report.retrieval import retrieval_table
from clip_bench.report.sections.context import ReportContext


def retrieval_section(ctx: ReportContext) -> list[Section]:
    """Write ``retrieval.csv`` and return the report's "Zero-shot retrieval" section (nothing without retrieval
    rows)."""
    summary = ctx.summary
    table = retrieval_table(ctx.rows)
    if table.empty:
        return []
    summary.tables["retrieval"] = table
    summary.write(ctx.out / "retrieval.csv", table.to_csv(index=False, float_format="%.2f"))
    summary.lines.append(f"retrieval: {len(table)} line(s) -> retrieval.csv")
    return [Section("Zero-shot retrieval", [
        html.paragraph("Recall@k in percent: i2t = image→text (the paper's text retrieval), t2i = text→image "
                       "(image retrieval); mean = the mean of the six (the paper's tasks), mean_R@1 = the mean of "
                       "the two at 1 (DataComp's tasks). *_vs_paper: ours minus CLIP paper Table 13 "
                       "(ViT-L/14@336px, OpenAI weights)."),
        html.table(table),
    ])]
