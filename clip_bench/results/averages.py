"""Averages as open_clip and DataComp publish them: the plain mean of a fixed list of tasks' main metrics, which
exists only when every member is measured.

The members, and the row metric each must have, are in ``clip_bench/assets/reference/published_columns.yaml``
(``averages:``, and the metric of each task in its ``openclip:`` columns): ``openclip35`` and ``datacomp38`` are
open_clip's "Average perf. on 35 datasets" and "on 38 datasets" (mlfoundations/open_clip
``docs/openclip_classification_results.csv``, ``docs/openclip_results.csv``; the 38 are DataComp's average,
mlfoundations/datacomp ``evaluate.py``), and ``datacomp_shifts``, ``datacomp_vtab`` and ``datacomp_retrieval`` are
the groups of DataComp's ``aggregate_scores.py`` ("ImageNet dist. shifts", "VTAB", "Retrieval").

Unlike ``mean_clip27`` (the mean of whichever of the 27 datasets a model has), a mean over 34 of 35 datasets is
not the published average: with a member missing, or measured with another metric, the average is absent and
:func:`model_averages` says which members are missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd
import yaml

from clip_bench.results.tables import KEY
from clip_bench.util.resources import assets_dir

PUBLISHED_COLUMNS = "published_columns.yaml"
#: The line of the leaderboard the published averages are computed on: they are zero-shot averages.
AVERAGE_LINE = "zeroshot"


@cache
def published_columns() -> dict[str, Any]:
    """``published_columns.yaml``: every published column's task and metric, and the averages."""
    path = assets_dir() / "reference" / PUBLISHED_COLUMNS
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class AverageSpec:
    """One published average: its name (``openclip35``), what it is, and its members (task → row metric)."""

    name: str
    title: str
    members: dict[str, str]

    @property
    def column(self) -> str:
        """The leaderboard column of the average (``mean_openclip35``)."""
        return f"mean_{self.name}"

    @property
    def count_column(self) -> str:
        """The leaderboard column counting the members a model has (``n_openclip35``)."""
        return f"n_{self.name}"


@cache
def average_specs() -> dict[str, AverageSpec]:
    """The published averages, in the order of ``published_columns.yaml``."""
    cfg = published_columns()
    metric = {c["task"]: c["metric"] for c in cfg["openclip"].values() if "task" in c}
    return {name: AverageSpec(name, spec["title"], {t: metric[t] for t in spec["members"]})
            for name, spec in cfg["averages"].items()}


def average_columns() -> list[str]:
    """``mean_<name>, n_<name>`` for every published average, in order."""
    return [c for spec in average_specs().values() for c in (spec.column, spec.count_column)]


def average(values: Mapping[str, float], name: str) -> float | None:
    """The published average `name` of `values` (task → value of the member's metric): the plain mean of every
    member, or None when a member has no finite value."""
    spec = average_specs()[name]
    got = [values.get(task) for task in spec.members]
    if any(v is None or not math.isfinite(float(v)) for v in got):
        return None
    return math.fsum(float(v) for v in got) / len(got)


@dataclass(frozen=True)
class AverageResult:
    """One model's average: its value (None when absent), how many members it has, and the missing members (each a
    task name, with the metric its row has when that is not the member's metric)."""

    name: str
    value: float | None
    present: int
    missing: tuple[str, ...]


def model_averages(values: pd.DataFrame) -> dict[tuple[str, str], dict[str, AverageResult]]:
    """Every published average per model of `values`, the main values of one leaderboard line
    (:func:`clip_bench.results.tables.line_values`: standard rows, whole tasks). A member counts only when the
    model's main row of its task has the member's metric."""
    out: dict[tuple[str, str], dict[str, AverageResult]] = {}
    specs = average_specs().values()
    for key, group in values.groupby(KEY, sort=False):
        rows = {t: (m, float(v)) for t, m, v in group[["task", "metric", "value"]].itertuples(index=False)}
        per: dict[str, AverageResult] = {}
        for spec in specs:
            have = {t: rows[t][1] for t, m in spec.members.items() if t in rows and rows[t][0] == m}
            missing = tuple(t if t not in rows else f"{t} (its main metric is {rows[t][0]}, not {m})"
                            for t, m in spec.members.items() if t not in have)
            per[spec.name] = AverageResult(spec.name, average(have, spec.name), len(have), missing)
        out[(str(key[0]), str(key[1]))] = per
    return out


def averages_frame(values: pd.DataFrame) -> pd.DataFrame:
    """One line per model (``model``, ``pretrained``) with ``mean_<name>`` (NaN unless complete) and ``n_<name>``
    (members present) for every published average."""
    found = model_averages(values)
    records = []
    for (model, pretrained), per in found.items():
        rec: dict[str, Any] = {"model": model, "pretrained": pretrained}
        for spec in average_specs().values():
            res = per[spec.name]
            rec[spec.column] = math.nan if res.value is None else res.value
            rec[spec.count_column] = res.present
        records.append(rec)
    return pd.DataFrame(records, columns=[*KEY, *average_columns()])


def average_lines(values: pd.DataFrame, label: Callable[[tuple[str, str]], str] | None = None,
                  incomplete_only: bool = False) -> list[str]:
    """One line per (model, published average) the model has a member of: the average, or which members are
    missing (only those with `incomplete_only`). `label` names a model from its (model, pretrained) key (default:
    ``model (pretrained)``)."""
    lines = []
    for key, per in model_averages(values).items():
        name = label(key) if label else f"{key[0]} ({key[1]})"
        for res in per.values():
            total = res.present + len(res.missing)
            if res.value is not None and not incomplete_only:
                lines.append(f"{name}: {res.name} {res.value:.2f} (all {total} members)")
            elif res.value is None and res.present:
                lines.append(f"{name}: no {res.name} average, {len(res.missing)} of {total} members missing: "
                             + ", ".join(res.missing))
    return lines
