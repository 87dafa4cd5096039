"""Task plugins: small YAML files under tasks/, indexed by name, plus collections of tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import ClipBenchError, UnknownNameError
from .io_utils import sha256_json
from .prompts import PromptSet, load_prompt_set
from .resources import data_dir

METRICS = ("accuracy", "mean_per_class_recall", "map_11point", "roc_auc", "mean_top1_top5", "mean_recall")
COLLECTIONS_FILE = "collections.yaml"


@dataclass(frozen=True)
class SourceSpec:
    """One place a task's data can come from: a loader, its arguments, and its label order."""

    name: str
    loader: str
    path: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    #: How the source's label indices map to the task's class indices. None means identical order.
    label_map: tuple[int, ...] | None = None
    download: str | None = None  # how to get the data, shown when it is missing
    splits: dict[str, str] = field(default_factory=dict)  # task split -> the source's own split name
    #: Samples each complete split holds; a loaded split of another size is an error (never a silent subset).
    expected: dict[str, int] = field(default_factory=dict)
    #: Per split, files (relative to the source's root) whose presence means the split is there; checked
    #: by ``clip-bench tasks`` without opening the dataset.
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def source_split(self, split: str) -> str:
        return self.splits.get(split, split)

    @property
    def config_hash(self) -> str:
        return sha256_json(
            {"loader": self.loader, "path": self.path, "args": self.args, "label_map": self.label_map, "splits": self.splits}
        )[:16]


@dataclass(frozen=True)
class TaskSpec:
    """A declarative evaluation task, read from ``tasks/<name>.yaml``."""

    name: str
    version: int
    classnames_ref: str
    templates_ref: str
    metric: str
    splits: tuple[str, ...]
    eval_split: str
    sources: dict[str, SourceSpec]
    default_source: str
    description: str = ""
    multilabel: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    file: str = ""

    def prompt_set(self, classnames: str | None = None, templates: str | None = None) -> PromptSet:
        """The task's class names and templates, optionally overridden by user files."""
        return load_prompt_set(classnames or self.classnames_ref, templates or self.templates_ref)

    def source(self, name: str | None = None) -> SourceSpec:
        name = name or self.default_source
        if name not in self.sources:
            raise UnknownNameError(f"source of task {self.name!r}", name, self.sources)
        return self.sources[name]

    @property
    def train_split(self) -> str | None:
        return "train" if "train" in self.splits else None


def _parse_source(task: str, name: str, raw: dict[str, Any]) -> SourceSpec:
    if "loader" not in raw:
        raise ClipBenchError(f"task {task!r}: source {name!r} names no loader.")
    lm = raw.get("label_map")
    return SourceSpec(
        name=name,
        loader=raw["loader"],
        path=raw.get("path"),
        args=dict(raw.get("args") or {}),
        label_map=tuple(int(i) for i in lm) if lm is not None else None,
        download=raw.get("download"),
        splits=dict(raw.get("splits") or {}),
        expected={str(k): int(v) for k, v in (raw.get("expected") or {}).items()},
        files={str(k): tuple([v] if isinstance(v, str) else v) for k, v in (raw.get("files") or {}).items()},
    )


def parse_task(raw: dict[str, Any], file: str = "") -> TaskSpec:
    """Validate a task's YAML mapping and build its spec."""
    where = file or raw.get("name", "?")
    for key in ("name", "version", "metric", "sources"):
        if key not in raw:
            raise ClipBenchError(f"task file {where}: missing required key {key!r}.")
    if raw["metric"] not in METRICS:
        raise ClipBenchError(f"task file {where}: metric {raw['metric']!r} is not one of {', '.join(METRICS)}.")
    prompts = raw.get("prompts", raw["name"])
    sources = {n: _parse_source(raw["name"], n, s) for n, s in raw["sources"].items()}
    splits = tuple(raw.get("splits", ["test"]))
    return TaskSpec(
        name=raw["name"],
        version=int(raw["version"]),
        classnames_ref=raw.get("classnames", prompts),
        templates_ref=raw.get("templates", prompts),
        metric=raw["metric"],
        splits=splits,
        eval_split=raw.get("eval_split", "test" if "test" in splits else splits[-1]),
        sources=sources,
        default_source=raw.get("default_source", next(iter(sources))),
        description=raw.get("description", "").strip(),
        multilabel=bool(raw.get("multilabel", False)),
        extra={k: v for k, v in raw.items() if k not in TaskSpec.__dataclass_fields__ and k not in (
            "prompts", "classnames", "templates")},
        file=file,
    )


def _task_dirs() -> list[Path]:
    dirs = [data_dir("tasks")]
    extra = os.environ.get("CLIP_BENCH_TASKS")
    if extra:
        dirs.extend(Path(p) for p in extra.split(os.pathsep) if p)
    return dirs


@lru_cache(maxsize=1)
def _index() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in _task_dirs():
        for path in sorted(d.glob("*.yaml")):
            if path.name != COLLECTIONS_FILE and not path.name.startswith("_"):
                found[path.stem] = path
    return found


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClipBenchError(f"task file {path} is not valid YAML: {exc}") from None


def _resolve_includes(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """``include: parent`` merges the parent task's keys under this file's own (one level deep for dicts)."""
    parent_name = raw.pop("include", None)
    if not parent_name:
        return raw
    parent_path = path.parent / f"{parent_name}.yaml"
    if not parent_path.exists():
        raise ClipBenchError(f"task file {path}: included task {parent_name!r} not found at {parent_path}.")
    merged = _resolve_includes(dict(_read_yaml(parent_path)), parent_path)
    for key, value in raw.items():
        merged[key] = value
    return merged


def list_tasks() -> list[str]:
    """Names of all tasks in the catalogue."""
    return sorted(_index())


@cache
def get_task(name: str) -> TaskSpec:
    """The task called `name`, or a task YAML file path."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")) and path.exists():
        return parse_task(_resolve_includes(dict(_read_yaml(path)), path), str(path))
    index = _index()
    if name not in index:
        raise UnknownNameError("task", name, [*index, *list_collections()], hint="Run `clip-bench tasks` to list them.")
    return parse_task(_resolve_includes(dict(_read_yaml(index[name])), index[name]), str(index[name]))


@lru_cache(maxsize=1)
def list_collections() -> dict[str, list[str]]:
    """Named groups of tasks (``clip27``, ``imagenet_shifts``, ``all``...)."""
    path = data_dir("tasks") / COLLECTIONS_FILE
    groups: dict[str, list[str]] = {}
    if path.exists():
        groups = {k: list(v) for k, v in (_read_yaml(path) or {}).items()}
    groups["all"] = list_tasks()
    return groups


def expand_tasks(names: list[str]) -> list[str]:
    """Expand collection names into task names, keeping order and dropping repeats."""
    out: list[str] = []
    collections = list_collections()
    for n in names:
        out.extend(collections.get(n, [n]))
    return list(dict.fromkeys(out))
