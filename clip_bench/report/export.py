"""Export one model's results in another tool's format: DataComp's ``eval_results.jsonl``.

mlfoundations/datacomp ``evaluate.py`` writes one JSON line per task, ``{"key": <tasklist.yml key>, "dataset":
<its name>, "metrics": {...}}``, whose ``metrics`` holds the task's metrics as fractions (0-1) and ``main_metric``,
the one ``tasklist.yml`` names (default ``acc1``); ``aggregate_scores.py`` reads ``dataset`` and ``main_metric`` of
the 38 tasks that have one. The export writes, per DataComp-protocol task the model has (a standard zero-shot main
row of exactly the task's metric, ``published_columns.yaml``), that metric under DataComp's name and as
``main_metric``, divided by 100. Rows of the paper-protocol tasks are never exported: they measure something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clip_bench.results.averages import AVERAGE_LINE, published_columns
from clip_bench.results.rows import RESULTS_FILE, display_name
from clip_bench.results.tables import KEY, line_values, load_rows
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import write_text_atomic

FORMATS = ("datacomp",)
DEFAULT_FILE = "eval_results.jsonl"


@dataclass
class Export:
    """What an export wrote: the lines, the model, the DataComp tasks it lacks and what to tell the user."""

    model: tuple[str, str]
    lines: list[dict[str, Any]]
    missing: list[str] = field(default_factory=list)
    path: Path | None = None

    def messages(self) -> list[str]:
        """Lines for the command line: what was written, and what DataComp's aggregation still needs."""
        total = len(self.lines) + len(self.missing)
        out = [f"{display_name(*self.model)}: {len(self.lines)} of {total} DataComp tasks"
               + (f" written to {self.path}" if self.path else "")]
        if self.missing:
            out.append(f"missing (no standard zero-shot row of the task's metric): {', '.join(self.missing)}; "
                       f"DataComp's aggregate_scores.py averages only a file with all {total}")
        return out


def _datacomp_columns() -> list[tuple[str, dict[str, Any]]]:
    """(DataComp's name of the task, which is open_clip's column, its entry) for every DataComp-protocol task."""
    return [(name, c) for name, c in published_columns()["openclip"].items() if "task" in c]


def datacomp_line(key: str, dataset: str, metric: str, value: float) -> dict[str, Any]:
    """One ``eval_results.jsonl`` line as DataComp's ``evaluate.py`` writes it: `value` in percent becomes a fraction,
    under `metric` (DataComp's name) and ``main_metric``."""
    fraction = float(value) / 100.0
    return {"key": key, "dataset": dataset, "metrics": {metric: fraction, "main_metric": fraction}}


def _pick_model(values: pd.DataFrame, model: str | None) -> tuple[str, str]:
    keys = [(str(m), str(p)) for m, p in values[KEY].drop_duplicates().itertuples(index=False)]
    if model is None:
        if len(keys) == 1:
            return keys[0]
        raise ClipBenchError(f"the results hold DataComp-protocol rows of {len(keys)} models; name one with --model: "
                             + "; ".join(display_name(*k) for k in keys) + ".")
    found = [k for k in keys if model in (k[0], f"{k[0]}:{k[1]}", display_name(*k))]
    if len(found) == 1:
        return found[0]
    known = "; ".join(display_name(*k) for k in keys) or "none"
    how = "name it with its pretrained tag, as 'MODEL (PRETRAINED)'" if found else f"models with them: {known}"
    raise ClipBenchError(f"--model {model!r} names {len(found)} models with DataComp-protocol rows; {how}.")


def datacomp_export(rows: list[dict[str, Any]], model: str | None = None) -> Export:
    """The ``eval_results.jsonl`` lines of `model` (a name as the leaderboard shows it; may be omitted when only one
    model has DataComp-protocol rows) from standard `rows`."""
    columns = _datacomp_columns()
    tasks = {c["task"] for _, c in columns}
    values = line_values(rows, AVERAGE_LINE)
    values = values[values["task"].isin(tasks)]
    if values.empty:
        raise ClipBenchError("no standard zero-shot rows of DataComp-protocol tasks in the results; run e.g. "
                             "`clip-bench zeroshot --task datacomp38 --model ...` first (the datacomp_* tasks).")
    key = _pick_model(values, model)
    mine = values[(values["model"] == key[0]) & (values["pretrained"] == key[1])]
    have = {t: (m, float(v)) for t, m, v in mine[["task", "metric", "value"]].itertuples(index=False)}
    lines, missing = [], []
    for dataset, c in columns:
        metric, value = have.get(c["task"], (None, 0.0))
        if metric != c["metric"]:
            missing.append(c["task"])
            continue
        lines.append(datacomp_line(c["key"], dataset, c["datacomp_metric"], value))
    return Export(key, lines, missing)


def jsonl_text(lines: list[dict[str, Any]]) -> str:
    """The lines as ``evaluate.py`` writes them: ``json.dumps`` of each, one per line."""
    return "".join(json.dumps(line) + "\n" for line in lines)


def export_results(results_dir: str | Path, out: str | Path, fmt: str = "datacomp", model: str | None = None
                   ) -> Export:
    """Write `model`'s results under `results_dir` to `out` in format `fmt` (``datacomp``: ``eval_results.jsonl``)."""
    if fmt not in FORMATS:
        raise ClipBenchError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
    if not Path(results_dir).exists():
        raise ClipBenchError(f"results folder {results_dir} does not exist; pass --results DIR (the --output-dir "
                             "of your runs).")
    loaded = load_rows(results_dir)
    if not loaded.rows:
        raise ClipBenchError(f"no result rows under {results_dir}; pass --results DIR (the --output-dir of your runs).")
    export = datacomp_export(loaded.standard, model)
    path = Path(out)
    if path.is_dir():
        path = path / DEFAULT_FILE
    if path.name == RESULTS_FILE or path.resolve() in {f.resolve() for f in loaded.files}:
        raise ClipBenchError(f"--out {path} is a results file of clip-bench; writing the export there would replace "
                             f"its result rows. Pass --out {path.with_name(DEFAULT_FILE)} (or another file).")
    try:
        write_text_atomic(path, jsonl_text(export.lines))
    except OSError as exc:
        raise ClipBenchError(f"cannot write {path} ({exc.strerror or type(exc).__name__}); pass --out to a "
                             "writable file.") from None
    export.path = path
    return export
