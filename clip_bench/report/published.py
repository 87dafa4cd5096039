"""Compare our main metrics with published numbers: the CLIP paper's tables and open_clip's results."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from clip_bench.report.reference import openclip_results, paper_tables, published_columns
from clip_bench.results.rows import display_name, labelled, shown_name, variant_name
from clip_bench.results.tables import KEY, main_values, task_order

COMPARISON_COLUMNS = [
    *KEY, "protocol", "task", "source", "published_model", "ours", "published", "delta", "flagged", "note",
]
#: Which paper table holds each protocol.
PAPER_TABLE = {"zeroshot": "zero_shot_table11", "linear_probe": "linear_probe_table10_clip_rows"}
SOURCE_LABEL = {"paper": "CLIP paper", "openclip": "open_clip"}


def arch_key(name: str) -> str:
    """Normalise an architecture name across spellings: "ViT-L/14@336" and "ViT-L-14-336" match."""
    return str(name).replace("/", "-").replace("@", "-").lower()


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


def compare_published(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Long table: one line per (our model, task, published source) where both numbers exist.

    ``delta`` = ours − published in points (open_clip's fractions are converted to percent);
    ``flagged`` when |delta| exceeds ``flag_threshold`` of ``published_columns.yaml``.
    """
    cfg = published_columns()
    columns, threshold, tag = cfg["tasks"], float(cfg["flag_threshold"]), cfg["paper_pretrained_tag"]
    openclip = _openclip_rows()
    rows = labelled(rows)
    # published numbers are matched on the reference a row records (not on a --name), default variant only
    reference = {shown_name(r): (str(r["model"]), str(r.get("pretrained") or "")) for r in rows if not variant_name(r)}
    out: list[dict[str, Any]] = []
    for protocol in PAPER_TABLE:
        ours = main_values(rows, protocol)
        ours = ours[ours["subset"] == ""]
        paper = _paper_rows(protocol)
        for (model, pretrained), group in ours.groupby(KEY, sort=True):
            arch, tag_ = reference.get((model, pretrained), (model, pretrained))
            sources: list[tuple[str, tuple[str, dict[str, float]] | None, float]] = [
                ("paper", paper.get(arch_key(arch).removesuffix("-quickgelu")) if tag_ == tag else None, 1.0),
            ]
            if protocol == "zeroshot":
                sources.append(("openclip", _match_openclip(openclip, arch, tag_), 100.0))
            for source, match, scale in sources:
                if match is None:
                    continue
                published_model, values = match
                for rec in group.to_dict("records"):
                    col = columns.get(rec["task"], {}).get(source)
                    pub = values.get(col) if col else None
                    if pub is None or (isinstance(pub, float) and math.isnan(pub)):
                        continue
                    pub = float(pub) * scale
                    delta = float(rec["value"]) - pub
                    out.append({
                        "model": model, "pretrained": pretrained, "protocol": protocol, "task": rec["task"],
                        "source": source, "published_model": published_model, "ours": float(rec["value"]),
                        "published": pub, "delta": delta, "flagged": abs(delta) > threshold,
                        "note": columns.get(rec["task"], {}).get(f"{source}_note", ""),
                    })
    df = pd.DataFrame(out, columns=COMPARISON_COLUMNS)
    if not df.empty:
        order = {t: i for i, t in enumerate(task_order(df["task"].unique()))}
        df["_order"] = df["task"].map(order)
        df = df.sort_values([*KEY, "protocol", "source", "_order"], kind="stable").drop(columns="_order")
    return df.reset_index(drop=True)


def summary_lines(comparison: pd.DataFrame, detailed: bool = False) -> list[str]:
    """One line per (model, protocol, source): tasks compared, mean |Δ|, flagged tasks; `detailed` adds a table."""
    if comparison.empty:
        return []
    lines: list[str] = []
    for (model, pretrained, protocol, source), g in comparison.groupby([*KEY, "protocol", "source"], sort=False):
        flagged = g[g["flagged"]]
        name = display_name(model, pretrained)
        head = (
            f"{name} {protocol} vs {SOURCE_LABEL[source]} [{g['published_model'].iloc[0]}]: "
            f"{len(g)} tasks, mean Δ {g['delta'].mean():+.2f}, mean |Δ| {g['delta'].abs().mean():.2f}, "
            f"{len(flagged)} with |Δ| > 1"
        )
        if not detailed:
            if len(flagged):
                head += ": " + ", ".join(f"{r.task} {r.delta:+.1f}" for r in flagged.itertuples())
            lines.append(head)
            continue
        lines.append(head)
        lines.append(f"  {'task':<16} {'ours':>7} {'published':>9} {'Δ':>7}")
        for r in g.itertuples():
            mark = "  <-- |Δ| > 1" if r.flagged else ""
            note = f"  ({r.note})" if r.note and r.flagged else ""
            lines.append(f"  {r.task:<16} {r.ours:7.2f} {r.published:9.2f} {r.delta:+7.2f}{mark}{note}")
    return lines
