"""The one leaderboard builder: ``leaderboard.csv`` has this schema whoever writes it (a run or the report).

Columns: ``model, pretrained, protocol, mean_clip27, n_clip27, mean_shifts, n_shifts``, then the published
averages of :mod:`clip_bench.results.averages` (``mean_openclip35, n_openclip35, mean_datacomp38, n_datacomp38``,
then DataComp's sub-averages ``datacomp_shifts``, ``datacomp_vtab``, ``datacomp_retrieval``), then one column per
task's main metric (paper order, then the shifts, then other tasks alphabetically). ``mean_clip27`` and
``mean_shifts`` average whichever of their tasks a model has (``n_*`` says how many); a published average is filled
only when every member is there (``n_*`` counts the members present), and only on the zero-shot line (it is a
zero-shot average; the count is blank on the other lines). One
line per model and protocol: ``zeroshot`` (with zero-shot retrieval tasks beside the classification
ones), ``linear_probe`` and ``fewshot_k{K}`` (mean over seeds). A model is a fingerprint (two checkpoints
with one file name are two lines) and a variant (``[bf16]``); ``model`` and ``pretrained`` name it as
:func:`clip_bench.results.rows.model_labels` does. Only standard rows count; the latest run of each (model,
task) wins.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clip_bench.results.averages import AVERAGE_LINE, average_columns, averages_frame
from clip_bench.results.rows import LEADERBOARD_FILE, LEADERBOARD_PROTOCOLS, labelled, read_rows
from clip_bench.results.tables import KEY, is_standard, line_values, task_order, valid_row
from clip_bench.tasks.catalog import headline_collections
from clip_bench.util.io import write_text_atomic

MEANS = ["mean_clip27", "n_clip27", "mean_shifts", "n_shifts", *average_columns()]
HEAD = [*KEY, "protocol", *MEANS]
#: Count columns: integers in ``leaderboard.csv`` (blank where a published average is not computed).
COUNTS = [c for c in MEANS if c.startswith("n_")]
_FEWSHOT = re.compile(r"^fewshot_k(\d+)$")


def _protocol_order(protocol: str) -> tuple[int, int, str]:
    m = _FEWSHOT.match(protocol)
    if m:
        return (2, int(m.group(1)), protocol)
    return ({"zeroshot": 0, "linear_probe": 1}.get(protocol, 3), 0, protocol)


def protocol_table(rows: list[dict[str, Any]], protocol: str = "zeroshot", curve: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """One line per (model, pretrained) for `protocol`: means first, then each task's main metric.

    For ``fewshot_k{K}`` the value is the mean over seeds, from `curve` (:func:`.fewshot.curves`) when given.
    """
    m = _FEWSHOT.match(protocol)
    if m:
        from clip_bench.results.fewshot import curves

        c = curves(rows) if curve is None else curve
        values = c[c["k"] == int(m.group(1))].rename(columns={"mean": "value"})[[*KEY, "task", "value"]]
    else:
        values = line_values(rows, protocol)
    if values.empty:
        return pd.DataFrame(columns=HEAD)
    wide = values.pivot_table(index=KEY, columns="task", values="value", aggfunc="last")
    wide.columns.name = None
    tasks = task_order(wide.columns)
    wide = wide[tasks].reset_index()
    groups = headline_collections()
    for name, group in (("clip27", "clip27"), ("shifts", "imagenet_shifts")):
        present = [t for t in groups[group] if t in wide]
        part = wide[present] if present else pd.DataFrame(index=wide.index)
        wide[f"mean_{name}"] = part.mean(axis=1) if present else np.nan
        wide[f"n_{name}"] = part.notna().sum(axis=1).astype(int) if present else 0
    if protocol == AVERAGE_LINE:
        wide = wide.merge(averages_frame(values), on=KEY, how="left")
    else:
        wide = wide.assign(**{c: np.nan for c in average_columns()})
    wide["protocol"] = protocol
    wide = wide[[*HEAD, *tasks]]
    wide = wide.sort_values(["mean_clip27", "mean_shifts", *KEY], ascending=[False, False, True, True],
                            na_position="last", kind="stable")
    return wide.reset_index(drop=True)


def protocols(rows: list[dict[str, Any]]) -> list[str]:
    """Protocols of the standard main-metric rows, in leaderboard order."""
    shown_as = {p: line for line, group in LEADERBOARD_PROTOCOLS.items() for p in group}
    found = {shown_as.get(str(r.get("protocol")), str(r.get("protocol"))) for r in rows
             if r.get("is_main") and is_standard(r)}
    return sorted(found, key=_protocol_order)


def leaderboard_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Every protocol's :func:`protocol_table`, stacked, with the union of task columns in task order."""
    from clip_bench.results.fewshot import curves

    rows = labelled(rows)
    found = protocols(rows)
    curve = curves(rows) if any(_FEWSHOT.match(p) for p in found) else None
    parts = [protocol_table(rows, p, curve) for p in found]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=HEAD)
    tasks = task_order({c for p in parts for c in p.columns if c not in HEAD})
    return pd.concat([p.reindex(columns=[*HEAD, *tasks]) for p in parts], ignore_index=True)


def leaderboard_csv(rows: list[dict[str, Any]]) -> str:
    """``leaderboard.csv`` text: values with 2 decimals, counts as integers, blanks for missing."""
    table = leaderboard_table([r for r in rows if valid_row(r)])
    for col in COUNTS:
        table[col] = table[col].astype("Int64")  # blank where a published average is not computed
    return table.to_csv(index=False, float_format="%.2f")


def write_leaderboard_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write :func:`leaderboard_csv` atomically to `path`."""
    path = Path(path)
    write_text_atomic(path, leaderboard_csv(rows))
    return path


def write_leaderboard(output_dir: str | Path) -> Path:
    """Rebuild ``leaderboard.csv`` from all rows of ``results.jsonl``, atomically (the report's schema)."""
    return write_leaderboard_csv(read_rows(output_dir), Path(output_dir) / LEADERBOARD_FILE)
