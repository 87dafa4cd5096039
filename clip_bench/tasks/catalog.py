"""Task plugins: small YAML files under tasks/, indexed by name, plus collections of tasks.

Every task file is checked against one schema, :data:`TASK_KEYS` (top level) and :data:`SOURCE_KEYS`
(inside each source): an unknown key, a value of the wrong type or an inconsistent file is one
:class:`ClipBenchError` naming the file, the key and what was expected. To add a key, add a row to
one of those tables (top-level keys that are not :class:`TaskSpec` fields land in ``TaskSpec.extra``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from clip_bench.metrics.classification import main_metric_names
from clip_bench.tasks.prompts import PromptSet, load_prompt_set
from clip_bench.util.errors import ClipBenchError, UnknownNameError
from clip_bench.util.io import sha256_json
from clip_bench.util.resources import data_dir

#: The metrics that score a multi-label task (an (N, C) target matrix); every other metric needs one label per image.
MULTILABEL_METRICS = ("map_11point",)

#: The main metrics a task file may name (its ``metric:``).
METRICS = ("accuracy", "mean_per_class_recall", "map_11point", "roc_auc", "mean_top1_top5", "mean_recall")
COLLECTIONS_FILE = "collections.yaml"
#: What a task measures; ``retrieval`` tasks (image-text retrieval) are run by their own protocol.
TASK_KINDS = ("classification", "retrieval")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


# --- the schema ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One allowed key of a task file: a check on its value and what the check expects (for errors)."""

    expected: str | Callable[[], str]
    check: Callable[[Any], bool]
    required: bool = False

    def describe(self) -> str:
        return self.expected() if callable(self.expected) else self.expected


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and _NAME_RE.fullmatch(v) is not None


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _list_of(check: Callable[[Any], bool], nonempty: bool = True) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (bool(v) or not nonempty) and all(check(x) for x in v)


def _map_of(check: Callable[[Any], bool], keys: Callable[[Any], bool] = _is_text) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(keys(k) and check(x) for k, x in v.items())


def _is_groups(v: Any) -> bool:
    """A class-group reference: a prompts file name, or a list of class indices / lists of them."""
    return _is_text(v) or _list_of(lambda g: _is_int(g) or _list_of(_is_int)(g))(v)


def _metrics() -> list[str]:
    """The built-in metrics, then those added with ``clip_bench.metrics.classification.register_metric``."""
    return [*METRICS, *(m for m in main_metric_names() if m not in METRICS)]


def _is_files(v: Any) -> bool:
    return _is_text(v) or _list_of(_is_text)(v)


#: Top-level keys of a task file.
TASK_KEYS: dict[str, Key] = {
    "name": Key("a task name (letters, digits, '_', '-', '.')", _is_name, required=True),
    "version": Key("a positive integer (bump it when the task's numbers change)", lambda v: _is_int(v, 1),
                   required=True),
    "kind": Key(f"one of {', '.join(TASK_KINDS)}", lambda v: v in TASK_KINDS),
    "description": Key("a string", _is_str),
    "prompts": Key("the name of a prompts file (prompts/<name>.json) or a file path", _is_text),
    "classnames": Key("the name of a prompts file or a class-names file path", _is_text),
    "templates": Key("the name of a prompts file or a templates file path", _is_text),
    "metric": Key(lambda: f"one of {', '.join(_metrics())}", lambda v: isinstance(v, str) and v in _metrics(),
                  required=True),
    "multilabel": Key("true or false", lambda v: isinstance(v, bool)),
    "splits": Key("a list of split names, e.g. [train, test]", _list_of(_is_name)),
    "eval_split": Key("one of the task's splits", _is_name),
    "class_groups": Key("a class-group file name (prompts/<name>.json) or a list of class indices", _is_groups),
    "subsets": Key("a mapping of subset name -> class-group file name", _map_of(_is_groups, _is_name)),
    "default_source": Key("the name of one of the task's sources", _is_name),
    "sources": Key("a mapping of source name -> source settings (loader, path, ...)",
                   lambda v: isinstance(v, dict) and bool(v) and all(_is_name(k) for k in v), required=True),
    "include": Key("the name of another task file in the same folder (without .yaml)", _is_text),
    # linear-probe protocol settings (folds, runs); their inner keys are checked by the probe code
    "probe": Key("a mapping of linear-probe settings (e.g. folds, runs)", lambda v: isinstance(v, dict) and bool(v)),
}

#: Keys of one entry under ``sources:``.
SOURCE_KEYS: dict[str, Key] = {
    "loader": Key("a loader name (e.g. imagefolder, torchvision, wds)", _is_name, required=True),
    "path": Key("a folder under --data-root (a string)", _is_text),
    "args": Key("a mapping of loader arguments", _map_of(lambda v: True)),
    "label_map": Key("a list of task class indices (integers >= 0), one per source label", _list_of(_is_int)),
    "download": Key("a string saying how to get the data", _is_str),
    "splits": Key("a mapping of task split -> the source's own split name", _map_of(_is_text, _is_name)),
    "expected": Key("a mapping of split -> sample count (integers >= 1)", _map_of(lambda v: _is_int(v, 1), _is_name)),
    "files": Key("a mapping of split -> a file path or a list of them", _map_of(_is_files, _is_name)),
}

_KEYS_DOC = "see 'Task file schema' in docs/tasks.md"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_keys(where: str, raw: dict[str, Any], schema: dict[str, Key], scope: str, other: dict[str, Key]) -> None:
    """Unknown keys (with a did-you-mean) and wrongly typed values of one mapping."""
    for key, value in raw.items():
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean {close[0]!r}?"
            elif key in other:
                belongs = "inside a source (under sources:)" if scope == "task" else "at the top level"
                hint = f"; {key!r} belongs {belongs}."
            else:
                hint = f"; allowed keys: {', '.join(schema)} ({_KEYS_DOC})."
            raise ClipBenchError(f"task file {where}: unknown key {_shown(key)} {_scope(scope)}{hint}")
        spec = schema[key]
        if not spec.check(value):
            raise ClipBenchError(
                f"task file {where}: {key!r} {_scope(scope)} must be {spec.describe()}, got {_shown(value)}."
            )


def _scope(scope: str) -> str:
    return "at the top level" if scope == "task" else f"in source {scope!r}"


def check_task_file(raw: Any, where: str) -> dict[str, Any]:
    """Check one file's own keys and value types (a file may be partial: required keys are checked after
    ``include``)."""
    if not isinstance(raw, dict):
        raise ClipBenchError(
            f"task file {where} must hold a mapping of keys (name, version, metric, sources, ...), "
            f"got {type(raw).__name__ if raw is not None else 'an empty file'}."
        )
    _check_keys(where, raw, TASK_KEYS, "task", SOURCE_KEYS)
    for name, source in (raw.get("sources") or {}).items():
        if not isinstance(source, dict):
            raise ClipBenchError(
                f"task file {where}: source {name!r} must be a mapping of settings (loader, path, ...), got "
                f"{_shown(source)}."
            )
        _check_keys(where, source, SOURCE_KEYS, name, TASK_KEYS)
    return raw


def _check_complete(raw: dict[str, Any], where: str) -> None:
    """Required keys and the consistency of the merged task (after ``include``)."""
    for key, spec in TASK_KEYS.items():
        if spec.required and key not in raw:
            raise ClipBenchError(f"task file {where}: missing required key {key!r} ({spec.describe()}).")
    splits = raw.get("splits", ["test"])
    if len(set(splits)) != len(splits):
        raise ClipBenchError(f"task file {where}: 'splits' names a split twice: {splits}.")
    if "eval_split" in raw and raw["eval_split"] not in splits:
        raise ClipBenchError(
            f"task file {where}: 'eval_split' is {raw['eval_split']!r}, which is not in 'splits' ({', '.join(splits)})."
        )
    if raw.get("multilabel", False) != (raw["metric"] in MULTILABEL_METRICS):
        need = ", ".join(MULTILABEL_METRICS) if raw.get("multilabel") else "a single-label metric"
        raise ClipBenchError(
            f"task file {where}: metric {raw['metric']!r} does not fit multilabel: {raw.get('multilabel', False)} "
            f"(a multi-label task is scored with {', '.join(MULTILABEL_METRICS)}; a single-label task with any other "
            f"metric): use {need}, or set 'multilabel'."
        )
    if "default_source" in raw and raw["default_source"] not in raw["sources"]:
        raise ClipBenchError(
            f"task file {where}: 'default_source' is {raw['default_source']!r}, not one of the sources "
            f"({', '.join(raw['sources'])})."
        )
    for name, source in raw["sources"].items():
        for key, spec in SOURCE_KEYS.items():
            if spec.required and key not in source:
                raise ClipBenchError(f"task file {where}: source {name!r} has no {key!r} ({spec.describe()}).")
        for key in ("splits", "expected", "files"):
            unknown = [s for s in source.get(key) or {} if s not in splits]
            if unknown:
                raise ClipBenchError(
                    f"task file {where}: {key!r} in source {name!r} names split {unknown[0]!r}, which is not in the "
                    f"task's 'splits' ({', '.join(splits)})."
                )


def check_label_maps(task: TaskSpec) -> None:
    """Each source's ``label_map`` must map every source label to a distinct task class: a permutation of
    the task's class indices (its length is the number of class names, or of class groups)."""
    if task.extra.get("kind", "classification") != "classification":
        return
    maps = {n: s.label_map for n, s in task.sources.items() if s.label_map is not None}
    if not maps:
        return
    from clip_bench.tasks.class_groups import num_task_classes

    try:
        n_classes = num_task_classes(task)
    except ClipBenchError:
        return  # the prompts themselves are broken: that error is raised where they are used
    for name, lm in maps.items():
        if len(lm) != n_classes:
            raise ClipBenchError(
                f"task file {task.file}: 'label_map' in source {name!r} has {len(lm)} entries but the task has "
                f"{n_classes} classes; it must give the task class of every source label, in source label order."
            )
        if sorted(lm) != list(range(n_classes)):
            dup = sorted({i for i in lm if lm.count(i) > 1})
            bad = [i for i in lm if i >= n_classes]
            what = (f"repeats class {dup[0]}" if dup else f"has class {bad[0]}, out of range" if bad
                    else "is not a permutation")
            raise ClipBenchError(
                f"task file {task.file}: 'label_map' in source {name!r} {what}; it must be a permutation of "
                f"0..{n_classes - 1} (each task class once)."
            )


# --- specs -----------------------------------------------------------------------------------------

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
            {"loader": self.loader, "path": self.path, "args": self.args, "label_map": self.label_map,
             "splits": self.splits}
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
            close = difflib.get_close_matches(name, list(self.sources), n=1, cutoff=0.6)
            raise ClipBenchError(
                f"task {self.name!r} has no source {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                f"its sources are: {', '.join(self.sources)} (--source picks one; default {self.default_source})."
            )
        return self.sources[name]

    @property
    def train_split(self) -> str | None:
        return "train" if "train" in self.splits else None


def _parse_source(name: str, raw: dict[str, Any]) -> SourceSpec:
    lm = raw.get("label_map")
    return SourceSpec(
        name=name,
        loader=raw["loader"],
        path=raw.get("path"),
        args=dict(raw.get("args") or {}),
        label_map=tuple(lm) if lm is not None else None,
        download=raw.get("download"),
        splits=dict(raw.get("splits") or {}),
        expected=dict(raw.get("expected") or {}),
        files={k: tuple([v] if isinstance(v, str) else v) for k, v in (raw.get("files") or {}).items()},
    )


def parse_task(raw: Any, file: str = "") -> TaskSpec:
    """Validate a task's YAML mapping (after ``include``) against the schema and build its spec."""
    where = file or (raw.get("name", "?") if isinstance(raw, dict) else "?")
    raw = dict(check_task_file(raw, where))
    raw.pop("include", None)
    _check_complete(raw, where)
    prompts = raw.get("prompts", raw["name"])
    sources = {n: _parse_source(n, s) for n, s in raw["sources"].items()}
    splits = tuple(raw.get("splits", ["test"]))
    return TaskSpec(
        name=raw["name"],
        version=raw["version"],
        classnames_ref=raw.get("classnames", prompts),
        templates_ref=raw.get("templates", prompts),
        metric=raw["metric"],
        splits=splits,
        eval_split=raw.get("eval_split", "test" if "test" in splits else splits[-1]),
        sources=sources,
        default_source=raw.get("default_source", next(iter(sources))),
        description=raw.get("description", "").strip(),
        multilabel=raw.get("multilabel", False),
        extra={k: v for k, v in raw.items() if k not in TaskSpec.__dataclass_fields__ and k not in (
            "prompts", "classnames", "templates")},
        file=file,
    )


# --- files -----------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML would keep the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if isinstance(key, list | dict):
            continue  # unhashable: the schema check reports it
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, what: str = "task file") -> Any:
    """A YAML file's data; unreadable, non-UTF-8 or invalid YAML (or a repeated key) is one clear error."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ClipBenchError(f"{what} {path} is a directory, not a YAML file.") from None
    except UnicodeDecodeError as exc:
        raise ClipBenchError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except OSError as exc:
        raise ClipBenchError(f"{what} {path} cannot be read: {exc.strerror or exc}.") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ClipBenchError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None


def _read_task_file(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task file's keys with its ``include:`` chain merged in (a key this file sets replaces the parent's)."""
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(p.name for p in (*chain, resolved))
        raise ClipBenchError(f"task file {chain[0]}: 'include' loop: {loop}; remove one of the includes.")
    raw = check_task_file(read_yaml(path), str(path))
    parent_name = raw.get("include")
    if not parent_name:
        return dict(raw)
    parent_path = path.parent / f"{parent_name}.yaml"
    if not parent_path.is_file():
        raise ClipBenchError(f"task file {path}: 'include' names task {parent_name!r}, "
                             f"but {parent_path} does not exist.")
    merged = _read_task_file(parent_path, (*chain, resolved))
    merged.pop("include", None)
    merged.update((k, v) for k, v in raw.items() if k != "include")
    return merged


def _task_dirs() -> list[Path]:
    dirs = [data_dir("tasks")]
    extra = os.environ.get("CLIP_BENCH_TASKS")
    if extra:
        dirs.extend(Path(p).expanduser() for p in extra.split(os.pathsep) if p)
    return dirs


@dataclass(frozen=True)
class _Catalogue:
    index: dict[str, Path]  # task name -> file
    conflicts: dict[str, str]  # task name -> why the name cannot be used (one line)
    problems: tuple[str, ...] = ()  # other one-line problems (a CLIP_BENCH_TASKS entry that is not a folder)


@cache
def _catalogue(user_dirs: str) -> _Catalogue:
    """The task index for one value of CLIP_BENCH_TASKS (cached per value)."""
    builtin = data_dir("tasks")
    index: dict[str, Path] = {}
    conflicts: dict[str, str] = {}
    problems: list[str] = []
    for d in _task_dirs():
        if d != builtin and not d.is_dir():
            problems.append(f"CLIP_BENCH_TASKS names {d}, which is not a folder.")
            continue
        for path in sorted(d.glob("*.yaml")):
            if path.name == COLLECTIONS_FILE or path.name.startswith("_"):
                continue
            name = path.stem
            if name in index:
                other = index[name]
                why = (f"shadows the built-in task {name!r}; rename it" if other.parent == builtin
                       else f"has the same name as {other}; rename one of them")
                conflicts[name] = f"task file {path} {why} (a task name must identify one task)."
                continue
            index[name] = path
    return _Catalogue(index, conflicts, tuple(problems))


def _current() -> _Catalogue:
    return _catalogue(os.environ.get("CLIP_BENCH_TASKS", ""))


def catalogue_problems() -> list[str]:
    """One line for each problem of the catalogue that no task name carries (a CLIP_BENCH_TASKS entry that
    is not a folder). A task name that cannot be used (a user file shadowing a built-in task) fails in
    :func:`get_task` instead."""
    return list(_current().problems)


def list_tasks() -> list[str]:
    """Names of all tasks in the catalogue."""
    return sorted(_current().index)


def get_task(name: str) -> TaskSpec:
    """The task called `name`, or a task YAML file path (re-read when the file changes).

    Args:
        name: A task name (see :func:`list_tasks`) or the path of a task YAML file.
    """
    path = Path(name)
    stat = path.stat() if name.endswith((".yaml", ".yml")) and path.is_file() else None
    stamp = (stat.st_mtime_ns, stat.st_size) if stat is not None else None
    return _get_task(name, os.environ.get("CLIP_BENCH_TASKS", ""), stamp)


@cache
def _get_task(name: str, user_dirs: str, stamp: tuple[int, int] | None) -> TaskSpec:
    path = Path(name)
    if stamp is not None:
        task = parse_task(_read_task_file(path), str(path))
        check_label_maps(task)
        return task
    if name.endswith((".yaml", ".yml")):  # a path, but not a file
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ClipBenchError(f"task file {path} {what}; give a task name (see `clip-bench tasks`) or a task YAML file.")
    cat = _catalogue(user_dirs)
    if name in cat.conflicts:
        raise ClipBenchError(cat.conflicts[name])
    if name not in cat.index:
        raise UnknownNameError("task", name, [*cat.index, *list_collections()],
                               hint="Run `clip-bench tasks` to list them.")
    path = cat.index[name]
    task = parse_task(_read_task_file(path), str(path))
    if task.name != name:
        raise ClipBenchError(
            f"task file {path}: 'name' is {task.name!r} but the file is {path.name}; they must match "
            f"(rename the file to {task.name}.yaml or set name: {name})."
        )
    check_label_maps(task)
    return task


def list_collections() -> dict[str, list[str]]:
    """Named groups of tasks (``clip27``, ``imagenet_shifts``, ``all``...)."""
    return {k: list(v) for k, v in _collections(os.environ.get("CLIP_BENCH_TASKS", "")).items()}


@cache
def _collections(user_dirs: str) -> dict[str, tuple[str, ...]]:
    path = data_dir("tasks") / COLLECTIONS_FILE
    raw = read_yaml(path, "collections file") if path.exists() else None
    return parse_collections(raw, path, set(_catalogue(user_dirs).index))


def parse_collections(raw: Any, path: Path | str, tasks: set[str]) -> dict[str, tuple[str, ...]]:
    """Check a collections file (collection name -> list of task names) and add ``all`` (every task)."""
    if raw is not None and not isinstance(raw, dict):
        raise ClipBenchError(
            f"collections file {path} must map collection names to lists of task names, got {type(raw).__name__}."
        )
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in (raw or {}).items():
        if name == "all" or name in tasks or not _is_name(name):
            why = ("is reserved (every task)" if name == "all" else "is a task's name" if name in tasks
                   else "is not a valid name")
            raise ClipBenchError(f"collections file {path}: collection {_shown(name)} {why}; rename it.")
        if not _list_of(_is_name)(members):
            raise ClipBenchError(
                f"collections file {path}: collection {name!r} must be a list of task names, got {_shown(members)}."
            )
        unknown = [m for m in members if m not in tasks]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(tasks), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ClipBenchError(
                f"collections file {path}: collection {name!r} names {unknown[0]!r}, which is not a task{hint}."
            )
        groups[name] = tuple(members)
    groups["all"] = tuple(sorted(tasks))
    return groups


def expand_tasks(names: list[str]) -> list[str]:
    """Expand collection names into task names, keeping order and dropping repeats."""
    out: list[str] = []
    collections = list_collections()
    for n in names:
        out.extend(collections.get(n, [n]))
    return list(dict.fromkeys(out))


def task_kind(task: Any) -> str:
    """``classification`` (default) or ``retrieval``: the task file's ``kind``, which picks the protocol."""
    kind = getattr(task, "kind", None) or (getattr(task, "extra", None) or {}).get("kind") or "classification"
    return str(kind)


def headline_collections() -> dict[str, list[str]]:
    """Task groups the leaderboard averages over: ``clip27`` (paper order) and ``imagenet_shifts``, as
    ``tasks/collections.yaml`` declares them."""
    groups = list_collections()
    return {k: list(groups[k]) for k in ("clip27", "imagenet_shifts")}
