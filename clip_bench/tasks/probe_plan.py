"""Which linear probes a task's protocol runs, read from the task file's ``probe:`` key (data, not code).

Without a ``probe:`` key a task runs one probe: C chosen on its val split (or a held-out part of train),
refitted on train (+ val), scored on the eval split. The paper's Table 9 asks for more on some datasets:

``probe: {runs: [...]}``
    several probes on different splits, e.g. UCF101's 3 official train/test splits; each run is a
    mapping ``{name, train, test}`` (and optionally ``val``) naming splits of the task.
``probe: {folds: {split: train, count: 10, files: {<source>: <file>}}}``
    one probe per predefined fold of a split, e.g. STL-10's 10 training folds of 1,000 images. The
    file (relative to the source's data folder) has one line per fold of whitespace-separated 0-based
    indices into the split; a source not listed under ``files`` cannot run the protocol.

A task with several runs reports one row per run and a mean row (its main value) with the spread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.tasks.spec import SourceSpec, TaskSpec
from clip_bench.util.errors import ClipBenchError

RUN_KEYS = ("name", "train", "val", "test")
FOLD_KEYS = ("split", "count", "files")
PROBE_KEYS = ("runs", "folds")


@dataclass(frozen=True)
class ProbeRun:
    """One linear probe: its splits, and for a fold protocol the fold it trains on."""

    name: str | None  # None: the task's single standard run
    train: str
    val: str | None
    test: str
    fold: int | None = None


@dataclass(frozen=True)
class ProbePlan:
    """Every probe a task's linear-probe protocol runs."""

    runs: tuple[ProbeRun, ...]
    fold_files: dict[str, str] = field(default_factory=dict)  # source name -> fold file (folds only)

    @property
    def aggregate(self) -> str | None:
        """``folds`` or ``splits`` when the reported value is a mean over runs, else None."""
        if len(self.runs) == 1 and self.runs[0].fold is None:
            return None
        return "folds" if self.runs[0].fold is not None else "splits"


def _where(task: TaskSpec) -> str:
    return f"task file {task.file or task.name}"


def _split(task: TaskSpec, value: Any, key: str) -> str:
    if not isinstance(value, str) or value not in task.splits:
        raise ClipBenchError(
            f"{_where(task)}: probe {key} {value!r} is not one of the task's splits ({', '.join(task.splits)})."
        )
    return value


def _mapping(task: TaskSpec, value: Any, what: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClipBenchError(f"{_where(task)}: {what} must be a mapping with keys {', '.join(allowed)}.")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ClipBenchError(f"{_where(task)}: {what} has unknown key {unknown[0]!r} (allowed: {', '.join(allowed)}).")
    return value


def probe_plan(task: TaskSpec) -> ProbePlan:
    """The task's probe runs (see the module docstring); a malformed ``probe:`` key is a one-line error."""
    raw = task.extra.get("probe")
    default_val = "val" if "val" in task.splits else None
    if raw is None:
        if task.train_split is None:
            raise ClipBenchError(
                f"task {task.name!r} has no train split, so it cannot be probed (splits: {', '.join(task.splits)})."
            )
        return ProbePlan((ProbeRun(None, task.train_split, default_val, task.eval_split),))
    raw = _mapping(task, raw, "probe", PROBE_KEYS)
    if ("runs" in raw) == ("folds" in raw):
        raise ClipBenchError(f"{_where(task)}: probe needs exactly one of 'runs' or 'folds'.")
    if "runs" in raw:
        items = raw["runs"]
        if not isinstance(items, list) or not items:
            raise ClipBenchError(f"{_where(task)}: probe runs must be a non-empty list of {{name, train, test}} "
                                 "mappings.")
        runs = []
        for i, item in enumerate(items):
            item = _mapping(task, item, f"probe run {i}", RUN_KEYS)
            if "train" not in item or "test" not in item:
                raise ClipBenchError(f"{_where(task)}: probe run {i} needs 'train' and 'test' splits.")
            runs.append(ProbeRun(
                str(item.get("name", f"run{i}")), _split(task, item["train"], "train"),
                _split(task, item["val"], "val") if item.get("val") is not None else None,
                _split(task, item["test"], "test"),
            ))
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ClipBenchError(f"{_where(task)}: probe run names repeat ({', '.join(names)}).")
        return ProbePlan(tuple(runs))
    folds = _mapping(task, raw["folds"], "probe folds", FOLD_KEYS)
    count, files = folds.get("count"), folds.get("files")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ClipBenchError(f"{_where(task)}: probe folds need 'count', a positive number of folds.")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise ClipBenchError(f"{_where(task)}: probe folds need 'files', a mapping of source name -> fold file.")
    unknown = sorted(set(files) - set(task.sources))
    if unknown:
        raise ClipBenchError(f"{_where(task)}: probe folds name unknown source {unknown[0]!r}.")
    split = _split(task, folds.get("split", "train"), "folds split")
    runs = tuple(ProbeRun(f"fold{i}", split, None, task.eval_split, fold=i) for i in range(count))
    return ProbePlan(runs, {str(k): v for k, v in files.items()})


@dataclass(frozen=True)
class Folds:
    """The fold index lists of one source, with the file's hash (recorded in the rows)."""

    indices: tuple[np.ndarray, ...]
    sha256: str
    path: Path


def check_fold_source(plan: ProbePlan, source: SourceSpec) -> None:
    """A clear error, before any data is read, when a fold protocol runs on a source without folds."""
    if plan.aggregate == "folds" and source.name not in plan.fold_files:
        listed = ", ".join(plan.fold_files)
        raise ClipBenchError(
            f"source {source.name!r} has no predefined folds, and this task's linear probe runs on them "
            f"(one probe per fold); use --source {next(iter(plan.fold_files))} (sources with folds: {listed})."
        )


def read_folds(plan: ProbePlan, source: SourceSpec, data_root: Path, split_size: int) -> Folds:
    """The source's fold file, checked: `count` lines of indices in ``[0, split_size)``."""
    check_fold_source(plan, source)
    path = Path(data_root).expanduser() / (source.path or "") / plan.fold_files[source.name]
    if not path.is_file():
        raise ClipBenchError(f"the fold file {path} is missing; it ships with the dataset (re-download or restore it).")
    data = path.read_bytes()
    folds = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            idx = np.asarray([int(t) for t in line.split()], dtype=np.int64)
        except ValueError:
            raise ClipBenchError(f"fold file {path}, line {n}: expected whitespace-separated integers.") from None
        if idx.size == 0 or idx.min() < 0 or idx.max() >= split_size or np.unique(idx).size != idx.size:
            raise ClipBenchError(
                f"fold file {path}, line {n}: indices must be distinct and in [0, {split_size}) (the split's size)."
            )
        folds.append(idx)
    want = len(plan.runs)
    if len(folds) != want:
        raise ClipBenchError(f"fold file {path} has {len(folds)} folds; the task expects {want}.")
    return Folds(tuple(folds), hashlib.sha256(data).hexdigest(), path)
