"""Result rows: one flat record per (model, pretrained, task, protocol, metric), with provenance.

Rows are appended to ``<output-dir>/results.jsonl`` under a file lock, so concurrent runs lose
nothing; ``leaderboard.csv`` is rebuilt from all rows after each run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .io_utils import file_lock, write_text_atomic

RESULTS_FILE = "results.jsonl"
LEADERBOARD_FILE = "leaderboard.csv"

#: Columns every row has. ``value`` is in percent (0-100) for every metric, as the paper prints them.
ROW_FIELDS = (
    "model", "pretrained", "model_fingerprint", "task", "task_version", "source", "split", "protocol",
    "metric", "value", "is_main", "subset", "n", "templates_hash", "classnames_hash", "feature_kind",
    "clip_bench_version", "torch_version", "open_clip_version", "device", "precision", "date", "extra",
)


def versions() -> dict[str, str]:
    """Versions of clip-bench, torch and open_clip, for provenance."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from . import __version__

    try:
        open_clip_version = version("open_clip_torch")
    except PackageNotFoundError:  # pragma: no cover - a source checkout of open_clip
        open_clip_version = "unknown"
    return {
        "clip_bench_version": __version__,
        "torch_version": torch.__version__,
        "open_clip_version": open_clip_version,
        "python_version": platform.python_version(),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def make_row(**fields: Any) -> dict[str, Any]:
    """A result row with every ROW_FIELDS key present (missing ones are None)."""
    row = {k: fields.pop(k, None) for k in ROW_FIELDS}
    row["extra"] = {**(row["extra"] or {}), **fields}
    return row


def append_rows(output_dir: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Append rows to results.jsonl under an exclusive lock, one fsync'd write per call."""
    path = Path(output_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
    if not payload:
        return path
    with file_lock(path.with_name(RESULTS_FILE + ".lock")):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def read_rows(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of results.jsonl; a torn last line (a crash mid-write) is skipped."""
    path = Path(output_dir) / RESULTS_FILE if Path(output_dir).is_dir() else Path(output_dir)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def model_label(row: dict[str, Any]) -> str:
    return f"{row['model']}" + (f" ({row['pretrained']})" if row.get("pretrained") else "")


#: Row protocols shown in a protocol's leaderboard: zero-shot retrieval tasks sit beside zero-shot classification.
LEADERBOARD_PROTOCOLS = {"zeroshot": ("zeroshot", "retrieval")}


def leaderboard(rows: list[dict[str, Any]], protocol: str = "zeroshot") -> Any:
    """DataFrame: one line per (model, pretrained), one column per task's main metric (latest run wins)."""
    import pandas as pd

    protocols = LEADERBOARD_PROTOCOLS.get(protocol, (protocol,))
    main = [r for r in rows if r.get("is_main") and r.get("protocol") in protocols and not r.get("subset")]
    if not main:
        return pd.DataFrame(columns=["model", "pretrained"])
    df = pd.DataFrame(main).sort_values("date", kind="stable")
    df["pretrained"] = df["pretrained"].fillna("")
    latest = df.groupby(["model", "pretrained", "task"], as_index=False, sort=False).last()
    table = latest.pivot(index=["model", "pretrained"], columns="task", values="value").reset_index()
    table.columns.name = None
    return table


def write_leaderboard(output_dir: str | Path) -> Path:
    """Rebuild ``leaderboard.csv`` from all rows of ``results.jsonl``, atomically."""
    path = Path(output_dir) / LEADERBOARD_FILE
    table = leaderboard(read_rows(output_dir))
    write_text_atomic(path, table.to_csv(index=False, float_format="%.2f"))
    return path
