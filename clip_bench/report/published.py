"""Compare our results with published numbers, like with like: the CLIP paper's tables and open_clip's results.

``published_columns.yaml`` maps every published column to exactly one clip-bench task and row metric: the paper's
columns to the paper-protocol tasks (``voc2007``, 11-point mAP), open_clip's to the DataComp-protocol tasks
(``datacomp_voc2007``, top-1 on single-object crops) and its averages to the complete published averages
(:mod:`clip_bench.results.averages`). A delta is shown only where a standard main row of exactly that task and
metric exists. Where a model has only the other protocol's row of the dataset, the comparison says which task to
run instead of showing a number: the two protocols measure different things (other data, prompts or metric).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd

from clip_bench.report.reference import openclip_results, paper_tables, published_columns
from clip_bench.results.averages import AVERAGE_LINE, AverageResult, average_specs, model_averages
from clip_bench.results.rows import display_name, labelled, shown_name, variant_name
from clip_bench.results.tables import KEY, line_values

COMPARISON_COLUMNS = [
    *KEY, "protocol", "source", "column", "kind", "task", "metric", "published_model", "ours", "published", "delta",
    "flagged", "note",
]
#: Which paper table holds each protocol.
PAPER_TABLE = {"zeroshot": "zero_shot_table11", "linear_probe": "linear_probe_table10_clip_rows"}
SOURCE_LABEL = {"paper": "CLIP paper", "openclip": "open_clip"}
#: Which protocols each source publishes (open_clip's tables are zero-shot only).
SOURCE_PROTOCOLS = {"paper": tuple(PAPER_TABLE), "openclip": (AVERAGE_LINE,)}
PROTOCOL_NAME = {"paper": "the paper protocol", "openclip": "the DataComp protocol"}


@dataclass(frozen=True)
class PublishedColumn:
    """One published column: the task and row metric it measures (or the average it is), and the clip-bench task
    that measures the same dataset with the other protocol (``other``), never compared with it."""

    source: str
    name: str
    task: str
    metric: str
    average: str | None = None
    other: str | None = None
    note: str = ""


@cache
def published_map() -> dict[str, tuple[PublishedColumn, ...]]:
    """Every published column of each source (``paper``, ``openclip``), in the published table's order."""
    cfg = published_columns()
    datacomp_of = {c["paper_protocol"]: c["task"] for c in cfg["openclip"].values() if c.get("paper_protocol")}
    paper = tuple(PublishedColumn("paper", name, c["task"], c["metric"], other=datacomp_of.get(c["task"]))
                  for name, c in cfg["paper"].items())
    openclip = []
    for name, c in cfg["openclip"].items():
        if "average" in c:
            spec = average_specs()[c["average"]]
            openclip.append(PublishedColumn("openclip", name, spec.column, "mean", average=spec.name))
        else:
            openclip.append(PublishedColumn("openclip", name, c["task"], c["metric"], other=c.get("paper_protocol"),
                                            note=c.get("note", "")))
    return {"paper": paper, "openclip": tuple(openclip)}


def arch_key(name: str) -> str:
    """Normalise an architecture name across spellings: "ViT-L/14@336px" (OpenAI's name, which clip-bench
    accepts), "ViT-L/14@336" (the paper's tables) and "ViT-L-14-336" (open_clip's) match."""
    return re.sub(r"(\d)px$", r"\1", str(name).replace("/", "-").replace("@", "-").lower())


def _paper_rows(protocol: str) -> dict[str, tuple[str, dict[str, float]]]:
    tables = paper_tables()
    table = tables.get(PAPER_TABLE[protocol], {})
    return {arch_key(m): (m, dict(zip(tables["datasets"], vals))) for m, vals in table.items()}


def _openclip_rows() -> dict[tuple[str, str], tuple[str, dict[str, float]]]:
    out: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}
    for rec in openclip_results().to_dict("records"):
        key = (arch_key(rec["name"]), str(rec["pretrained"]))
        out.setdefault(key, (f"{rec['name']} ({rec['pretrained']})", rec))
    return out


def _match_openclip(
    table: dict[tuple[str, str], tuple[str, dict[str, float]]], model: str, pretrained: str
) -> tuple[str, dict[str, float]] | None:
    """Exact (arch, tag) first; OpenAI weights also match their ``-quickgelu`` twin (same weights)."""
    key = (arch_key(model), pretrained)
    if key in table:
        return table[key]
    if pretrained == published_columns()["paper_pretrained_tag"]:
        arch = key[0].removesuffix("-quickgelu")
        for candidate in (arch, arch + "-quickgelu"):
            if (candidate, pretrained) in table:
                return table[(candidate, pretrained)]
    return None


def _published_value(values: dict[str, Any], column: str, scale: float) -> float | None:
    pub = values.get(column)
    if pub is None or (isinstance(pub, float) and math.isnan(pub)):
        return None
    return float(pub) * scale


def _other_protocol_note(col: PublishedColumn, ours_task: str) -> str:
    """What a model measured with the other protocol is told instead of a delta."""
    other_source = "openclip" if col.source == "paper" else "paper"
    return (f"measured with {PROTOCOL_NAME[other_source]} ({ours_task}); {SOURCE_LABEL[col.source]}'s column uses "
            f"{PROTOCOL_NAME[col.source]} (run {col.task})")


def _column_line(
    col: PublishedColumn, ours: dict[str, tuple[str, float]], averages: dict[str, AverageResult]
) -> tuple[float | None, str] | None:
    """(our value or None, note) for one published column, or None when the model has nothing to say about it."""
    if col.average:
        res = averages.get(col.average)
        if res is None or not res.present:
            return None
        if res.value is not None:
            return res.value, ""
        return None, (f"no complete {col.average} average: {len(res.missing)} of {res.present + len(res.missing)} "
                      f"members missing ({', '.join(res.missing)})")
    if col.task in ours:
        metric, value = ours[col.task]
        if metric == col.metric:
            return value, col.note
        return None, f"{col.task}'s main metric is {metric}; the column is {col.metric}"
    if col.other and col.other in ours:
        return None, _other_protocol_note(col, col.other)
    return None


def compare_published(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Long table: one line per (our model, protocol, published column) the model has a row for.

    A line with a number (``kind`` ``task`` or ``average``) compares a standard main row of exactly the column's
    task and metric (or the complete average) with the published value: ``delta`` = ours − published in points
    (open_clip's fractions are converted to percent), ``flagged`` when |delta| exceeds ``flag_threshold`` of
    ``published_columns.yaml``. A line without one says why in ``note``: the model has the dataset measured with the
    other protocol (which task to run instead), or an average is incomplete (which members are missing).
    """
    cfg = published_columns()
    threshold, tag = float(cfg["flag_threshold"]), cfg["paper_pretrained_tag"]
    columns = published_map()
    openclip = _openclip_rows()
    rows = labelled(rows)
    # published numbers are matched on the reference a row records (not on a --name), default variant only
    reference = {shown_name(r): (str(r["model"]), str(r.get("pretrained") or "")) for r in rows if not variant_name(r)}
    out: list[dict[str, Any]] = []
    for protocol in PAPER_TABLE:
        values = line_values(rows, protocol)
        averages = model_averages(values) if protocol == AVERAGE_LINE else {}
        paper = _paper_rows(protocol)
        for (model, pretrained), group in values.groupby(KEY, sort=True):
            arch, tag_ = reference.get((model, pretrained), (model, pretrained))
            ours = {t: (m, float(v)) for t, m, v in group[["task", "metric", "value"]].itertuples(index=False)}
            matches = {"paper": (paper.get(arch_key(arch).removesuffix("-quickgelu")) if tag_ == tag else None, 1.0),
                       "openclip": (_match_openclip(openclip, arch, tag_), 100.0)}
            for source, (match, scale) in matches.items():
                if match is None or protocol not in SOURCE_PROTOCOLS[source]:
                    continue
                published_model, published = match
                for col in columns[source]:
                    pub = _published_value(published, col.name, scale)
                    line = _column_line(col, ours, averages.get((model, pretrained), {}))
                    if pub is None or line is None:
                        continue
                    value, note = line
                    delta = math.nan if value is None else value - pub
                    out.append({
                        "model": model, "pretrained": pretrained, "protocol": protocol, "source": source,
                        "column": col.name, "kind": "average" if col.average else "task", "task": col.task,
                        "metric": col.metric, "published_model": published_model,
                        "ours": math.nan if value is None else value, "published": pub, "delta": delta,
                        "flagged": value is not None and abs(delta) > threshold, "note": note,
                    })
    df = pd.DataFrame(out, columns=COMPARISON_COLUMNS)
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)  # per model: protocol, source, column order


def compared(comparison: pd.DataFrame) -> pd.DataFrame:
    """The lines of a comparison that compare two numbers of one task (not averages, not notes)."""
    return comparison[(comparison["kind"] == "task") & comparison["delta"].notna()]


def summary_lines(comparison: pd.DataFrame, detailed: bool = False) -> list[str]:
    """One line per (model, protocol, source): tasks compared, mean |Δ|, flagged tasks, the averages' Δ and the
    columns not compared (measured with the other protocol); `detailed` adds a table."""
    if comparison.empty:
        return []
    lines: list[str] = []
    for (model, pretrained, protocol, source), g in comparison.groupby([*KEY, "protocol", "source"], sort=False):
        tasks = compared(g)
        averages = g[(g["kind"] == "average") & g["delta"].notna()]
        not_compared = g[g["delta"].isna()]
        against = f"{SOURCE_LABEL[source]} [{g['published_model'].iloc[0]}]"
        head = f"{display_name(model, pretrained)} {protocol} vs {against}: "
        if len(tasks):
            head += (f"{len(tasks)} tasks, mean Δ {tasks['delta'].mean():+.2f}, "
                     f"mean |Δ| {tasks['delta'].abs().mean():.2f}, {len(tasks[tasks['flagged']])} with |Δ| > 1")
        else:
            head += "no task compared"
        if len(averages):
            head += "; " + ", ".join(f"{r.task} Δ {r.delta:+.2f}" for r in averages.itertuples())
        if len(not_compared):
            n = len(not_compared)
            head += (f"; {n} column{'' if n == 1 else 's'} not compared (measured with the other protocol, or an "
                     "incomplete average" + ("" if detailed else ": published_comparison.csv says which") + ")")
        if not detailed:
            flagged = g[g["flagged"]]
            if len(flagged):
                head += ": " + ", ".join(f"{r.task} {r.delta:+.1f}" for r in flagged.itertuples())
            lines.append(head)
            continue
        lines.append(head)
        lines.append(f"  {'column':<30} {'ours':>7} {'published':>9} {'Δ':>7}")
        for r in g.itertuples():
            if math.isnan(r.delta):
                lines.append(f"  {r.column:<30} {'':>7} {r.published:9.2f} {'':>7}  ({r.note})")
                continue
            mark = "  <-- |Δ| > 1" if r.flagged else ""
            note = f"  ({r.note})" if r.note and r.flagged else ""
            lines.append(f"  {r.column:<30} {r.ours:7.2f} {r.published:9.2f} {r.delta:+7.2f}{mark}{note}")
    return lines
