"""Result rows → the report's tables: latest main values, the leaderboard with means, all metrics."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..results import RESULTS_FILE, ROW_FIELDS, leaderboard, read_rows
from .reference import collections

KEY = ["model", "pretrained"]


def find_rows(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """Every row of ``results.jsonl`` in `results_dir` and its subfolders (or of one .jsonl file).

    Each row gets a ``results_file`` key (path relative to `results_dir`) for provenance.
    """
    root = Path(results_dir)
    if root.is_file():
        files = [root]
        root = root.parent
    else:
        files = sorted(root.rglob(RESULTS_FILE)) if root.is_dir() else []
    rows: list[dict[str, Any]] = []
    for path in files:
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        rows.extend({**r, "results_file": rel} for r in read_rows(path))
    return rows, files


def rows_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every ROW_FIELDS column; blank pretrained/subset/date become ""."""
    df = pd.DataFrame(list(rows))
    for col in ROW_FIELDS:
        if col not in df:
            df[col] = None
    df["pretrained"] = df["pretrained"].fillna("").astype(str)
    df["subset"] = df["subset"].fillna("").astype(str)
    df["date"] = df["date"].fillna("").astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def main_values(rows: list[dict[str, Any]], protocol: str = "zeroshot") -> pd.DataFrame:
    """Latest main-metric value per (model, pretrained, task, subset) for one protocol.

    Columns: model, pretrained, task, subset ("" when unset), metric, value. Aggregated and per-seed
    rows are not distinguished here; use :mod:`.fewshot` for few-shot protocols.
    """
    cols = [*KEY, "task", "subset", "metric", "value"]
    main = [r for r in rows if r.get("is_main") and r.get("protocol") == protocol]
    if not main:
        return pd.DataFrame(columns=cols)
    df = rows_frame(main).sort_values("date", kind="stable")
    return df.groupby([*KEY, "task", "subset"], as_index=False, sort=True).last()[cols]


def task_order(tasks: Iterable[str]) -> list[str]:
    """Paper order for the 27 datasets, then the ImageNet shifts, then anything else alphabetically."""
    groups = collections()
    known = [*groups["clip27"], *groups["imagenet_shifts"]]
    tasks = set(tasks)
    return [t for t in known if t in tasks] + sorted(tasks - set(known))


def leaderboard_table(rows: list[dict[str, Any]], protocol: str = "zeroshot") -> pd.DataFrame:
    """One line per (model, pretrained): each task's main metric, plus the clip27 and shift means.

    ``mean_clip27`` / ``mean_shifts`` average the tasks each model has; ``n_clip27`` / ``n_shifts``
    say how many that is, so partial means are visible as such.
    """
    board = leaderboard(rows, protocol=protocol)
    if board.empty:
        return board
    tasks = task_order(c for c in board.columns if c not in KEY)
    board = board[[*KEY, *tasks]].copy()
    for name, group in (("clip27", "clip27"), ("shifts", "imagenet_shifts")):
        present = [t for t in collections()[group] if t in board]
        values = board[present] if present else pd.DataFrame(index=board.index)
        board[f"mean_{name}"] = values.mean(axis=1) if present else float("nan")
        board[f"n_{name}"] = values.notna().sum(axis=1).astype(int) if present else 0
    board = board.sort_values(["mean_clip27", *KEY], ascending=[False, True, True], na_position="last")
    return board.reset_index(drop=True)


def all_metrics_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Every row with every provenance field; ``extra`` is kept as a compact JSON string."""
    df = rows_frame(rows)
    df["extra"] = [json.dumps(e, sort_keys=True, default=str) if isinstance(e, dict) else e for e in df["extra"]]
    cols = [*ROW_FIELDS, *(["results_file"] if "results_file" in df else [])]
    order = ["model", "pretrained", "task", "subset", "protocol", "metric", "date"]
    return df[cols].sort_values(order, kind="stable", na_position="last").reset_index(drop=True)
