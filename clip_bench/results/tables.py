"""Result rows → the report's tables: reading (deduplicated, standard rows), latest main values, all metrics.

Results files are data from elsewhere: rows that are not objects with a model, task and protocol are
skipped (and counted), every string is treated as text, never as a path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clip_bench.results.rows import (
    LEADERBOARD_PROTOCOLS,
    RESULTS_FILE,
    ROW_FIELDS,
    field_of,
    is_standard,
    labelled,
    model_key,
    model_label,
    result_id,
    scan_rows,
    warn_skipped,
    with_variant_labels,
)
from clip_bench.tasks.catalog import headline_collections

KEY = ["model", "pretrained"]
#: Row fields other modules add (identity, standard-ness, 95 % intervals); read top-level or from ``extra``.
OPTIONAL_FIELDS = ("result_id", "standard", "ci_low", "ci_high")


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def interval(row: dict[str, Any]) -> tuple[float, float] | None:
    """The row's 95 % interval (``ci_low``, ``ci_high``, percent) when it has a sane one, else None."""
    lo, hi, v = _finite(field_of(row, "ci_low")), _finite(field_of(row, "ci_high")), _finite(row.get("value"))
    if lo is None or hi is None or lo > hi or (v is not None and not lo - 1e-6 <= v <= hi + 1e-6):
        return None
    return lo, hi


def identity(row: dict[str, Any]) -> tuple[str, str]:
    """The key under which a newer row replaces an older one: the measurement as
    :func:`clip_bench.results.rows.result_id` defines it, computed from the row's fields, and its model
    (:func:`clip_bench.results.rows.model_key`: the fingerprint, already in the id, or for a row without one its
    name, so hand-written rows of two models never replace each other)."""
    return result_id(row), model_key(row)


def valid_row(row: Any) -> bool:
    """A row object with a model, task, protocol and a finite value (anything else is skipped)."""
    return (
        isinstance(row, dict)
        and all(isinstance(row.get(f), str) and row.get(f) for f in ("model", "task", "protocol"))
        and _finite(row.get("value")) is not None
    )


@dataclass
class Rows:
    """The rows a report reads: deduplicated, with counts of what was dropped and why."""

    rows: list[dict[str, Any]]
    files: list[Path]
    duplicates: int = 0
    malformed: int = 0
    nonstandard: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: list[str] = field(default_factory=list)  # "results.jsonl line N: why", one per line not read

    @property
    def standard(self) -> list[dict[str, Any]]:
        """Rows that are full, standard evaluations: the only ones tables, figures and comparisons use."""
        return [r for r in self.rows if is_standard(r)]


def dedupe(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The latest row per :func:`identity` (by date, then file order); returns the rows and how many were dropped."""
    latest: dict[tuple[str, ...], tuple[str, int, dict[str, Any]]] = {}
    n = 0
    for i, r in enumerate(rows):
        n += 1
        key, date = identity(r), str(r.get("date") or "")
        if key not in latest or (date, i) >= latest[key][:2]:
            latest[key] = (date, i, r)
    kept = [r for _, _, r in sorted(latest.values(), key=lambda t: t[1])]
    return kept, n - len(kept)


def load_rows(results_dir: str | Path) -> Rows:
    """Every valid row of ``results.jsonl`` in `results_dir` and its subfolders (or of one .jsonl file).

    Identical re-runs are collapsed to the latest row; each row gets a ``results_file`` key (path
    relative to `results_dir`) for provenance, and its model's label among all of them (:func:`labelled`),
    so every table and figure of a report names a model alike.
    """
    root = Path(results_dir)
    if root.is_file():
        files = [root]
        root = root.parent
    else:
        files = sorted(root.rglob(RESULTS_FILE)) if root.is_dir() else []
    raw: list[dict[str, Any]] = []
    malformed = 0
    skipped: list[str] = []
    for path in files:
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        found, problems = scan_rows(path)
        warn_skipped(path, problems)
        skipped += [f"{rel} {p}" for p in problems]
        for r in found:
            if valid_row(r):
                raw.append({**r, "results_file": rel})
            else:
                malformed += 1
    rows, duplicates = dedupe(raw)
    rows = labelled(rows)
    return Rows(rows, files, duplicates, malformed + len(skipped), [r for r in rows if not is_standard(r)], skipped)


def rows_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every ROW_FIELDS column plus ``ci_low``/``ci_high`` (NaN when absent)."""
    rows = list(rows)
    df = pd.DataFrame(rows)
    for col in ROW_FIELDS:
        if col not in df:
            df[col] = None
    df["pretrained"] = df["pretrained"].fillna("").astype(str)
    df["subset"] = df["subset"].fillna("").astype(str)
    df["date"] = df["date"].fillna("").astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    ci = [interval(r) for r in rows]
    df["ci_low"] = [c[0] if c else math.nan for c in ci]
    df["ci_high"] = [c[1] if c else math.nan for c in ci]
    return df


MAIN_COLUMNS = [*KEY, "task", "subset", "metric", "value", "ci_low", "ci_high"]


def main_values(rows: list[dict[str, Any]], protocol: str = "zeroshot") -> pd.DataFrame:
    """Latest standard main-metric value per model (fingerprint and variant), task and subset for one protocol.

    Columns: model and pretrained as shown (:func:`clip_bench.results.rows.shown_name`: a bf16 run is its own
    line, and two checkpoints with one file name are two), task, subset ("" when unset), metric, value,
    ci_low, ci_high.
    Each line is one row, whole: its metric and interval are the latest row's own, never an older row's filling
    a field the latest lacks (an interval it has none of, a metric it does not name).
    Aggregated and per-seed rows are not distinguished here; use :mod:`.fewshot` for few-shot protocols.
    """
    main = [r for r in labelled(rows) if r.get("is_main") and r.get("protocol") == protocol and is_standard(r)]
    if not main:
        return pd.DataFrame(columns=MAIN_COLUMNS)
    df = with_variant_labels(rows_frame(main), main).sort_values("date", kind="stable")
    keys = [*KEY, "task", "subset"]
    latest = df.drop_duplicates(keys, keep="last").sort_values(keys, kind="stable")
    return latest[MAIN_COLUMNS].reset_index(drop=True)


def line_values(rows: list[dict[str, Any]], line: str = "zeroshot") -> pd.DataFrame:
    """:func:`main_values` of the whole tasks (no class subset) of every row protocol one leaderboard line shows
    (the ``zeroshot`` line: zero-shot classification and retrieval, :data:`LEADERBOARD_PROTOCOLS`)."""
    parts = [main_values(rows, p) for p in LEADERBOARD_PROTOCOLS.get(line, (line,))]
    values = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
    return values[values["subset"] == ""].astype({"value": float}).reset_index(drop=True)


def task_order(tasks: Iterable[str]) -> list[str]:
    """Paper order for the 27 datasets, then the ImageNet shifts, then anything else alphabetically."""
    groups = headline_collections()
    known = [*groups["clip27"], *groups["imagenet_shifts"]]
    tasks = set(tasks)
    return [t for t in known if t in tasks] + sorted(tasks - set(known))


def all_metrics_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Every row with every provenance field (the full model reference) and ``label``, the model as the other
    tables name it; ``extra`` is kept as a compact JSON string."""
    rows = labelled(rows)
    df = rows_frame(rows)
    df["extra"] = [json.dumps(e, sort_keys=True, default=str) if isinstance(e, dict) else e for e in df["extra"]]
    for name in ("result_id", "standard"):
        df[name] = [field_of(r, name) for r in rows]
    optional = [c for c in OPTIONAL_FIELDS if c not in ROW_FIELDS and df[c].notna().any()]
    df["label"] = [model_label(r) for r in rows]
    cols = [*ROW_FIELDS, *optional, *(["results_file"] if "results_file" in df else []), "label"]
    order = ["model", "pretrained", "task", "subset", "protocol", "metric", "date"]
    return df[cols].sort_values(order, kind="stable", na_position="last").reset_index(drop=True)
