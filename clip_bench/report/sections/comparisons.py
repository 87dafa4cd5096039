"""The paired-comparisons part: every model against the first on the zero-shot tasks both evaluated on the same
test samples (``clip-bench compare``), as ``comparisons.csv`` and a table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import clip_bench.report.html as html
from clip_bench.report.html import Section
from clip_bench.report.sections.context import ReportContext
from clip_bench.results.rows import display_name, model_key, shown_name, variant_name
from clip_bench.util.errors import ClipBenchError


def comparisons_section(ctx: ReportContext, root: Path, max_models: int = 6) -> None:
    """Paired zero-shot comparisons (``clip-bench compare``) of every model against the first one, like with
    like: a variant (``[bf16]``) is compared with the same variant of the first model that has it."""
    from clip_bench.report.compare import compare

    order = list(ctx.styles)
    by_variant: dict[str, dict[tuple[str, str], str]] = {}  # variant -> {label as shown: model fingerprint}
    for r in ctx.rows:
        if r.get("protocol") == "zeroshot":
            by_variant.setdefault(variant_name(r), {})[shown_name(r)] = model_key(r)
    pairs = []
    for v, models in sorted(by_variant.items()):
        keys = sorted(models, key=lambda m: order.index(m) if m in order else len(order))
        pairs += [(v, models[keys[0]], models[other], display_name(*keys[0]), display_name(*other))
                  for other in keys[1:]]
    if not pairs:
        return
    if len(pairs) > max_models - 1:
        ctx.summary.notes.append(f"paired comparisons: only the first {max_models - 1} of {len(pairs)} pairs")
        pairs = pairs[:max_models - 1]
    records = []
    for v, name_a, name_b, label_a, label_b in pairs:
        try:
            c = compare(name_a, name_b, root, variant=v)
        except ClipBenchError as exc:
            ctx.summary.notes.append(f"paired comparison {label_a} vs {label_b} skipped: {exc}")
            continue
        if not c.tasks:
            continue
        records.append({
            "model A": label_a, "model B": label_b, "tasks": len(c.tasks),
            "A better": c.wins, "B better": c.losses, "ties": c.ties,
            "mean A - B": c.mean_diff, "95% CI low": c.mean_ci_low, "95% CI high": c.mean_ci_high,
            "refused": "; ".join(c.refused),
        })
    if not records:
        return
    table = pd.DataFrame(records)
    ctx.summary.tables["comparisons"] = table
    ctx.summary.write(ctx.out / "comparisons.csv", table.to_csv(index=False, float_format="%.2f"))
    ctx.summary.lines.append(f"paired comparisons: {len(table)} pair(s) -> comparisons.csv")
    ctx.tables.append(Section("Paired comparisons", [
        html.paragraph(
            "Each model against the first (within each variant: [bf16] with [bf16]), on the zero-shot tasks both "
            "evaluated on identical test samples "
            "(clip-bench compare): per task an exact McNemar test (accuracy) or a paired bootstrap (other "
            "metrics), wins and losses at 5% after a Holm correction across tasks, and the mean difference "
            "over tasks in points with its 95% interval. Run clip-bench compare A B for the per-task table."),
        html.table(table, wrap=("refused",)),
    ]))
