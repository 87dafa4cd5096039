"""The task-file schema: the allowed keys and kinds, and the checks of a task file's or collections file's mapping.

Every task file is checked against one schema, :data:`TASK_KEYS` (top level) and :data:`SOURCE_KEYS`
(inside each source): an unknown key, a value of the wrong type or an inconsistent file is one
:class:`ClipBenchError` naming the file, the key and what was expected. To add a key, add a row to
one of those tables (top-level keys that are not :class:`~clip_bench.tasks.spec.TaskSpec` fields land in
``TaskSpec.extra``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clip_bench.metrics.classification import GROUP_METRICS, main_metric_names
from clip_bench.util.errors import ClipBenchError

#: The metrics that score a multi-label task (an (N, C) target matrix); every other metric needs one label per image.
MULTILABEL_METRICS = ("map_11point",)

#: The main metrics a task file may name (its ``metric:``).
METRICS = ("accuracy", "mean_per_class_recall", "map_11point", "roc_auc", "mean_top1_top5", "mean_recall",
           "macro_f1", "worst_group_top1", "worst_group_top5")
#: What a task measures; ``retrieval`` tasks (image-text retrieval) and ``winogavil`` tasks (WinoGAViL's
#: cue-image associations) are run by their own protocols.
TASK_KINDS = ("classification", "retrieval", "winogavil")
#: The main metrics of the task kinds other than classification: a task of such a kind names one of these, and
#: no other task does (their rows come from their own protocol).
KIND_METRICS = {"retrieval": ("mean_recall", "mean_recall@1"), "winogavil": ("jaccard_10_12",)}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class Key:
    """One allowed key of a task file: a check on its value and what the check expects (for errors)."""

    expected: str | Callable[[], str]
    check: Callable[[Any], bool]
    required: bool = False

    def describe(self) -> str:
        """What a valid value looks like, for an error message."""
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
    """The built-in metrics (the task kinds' own last), then those added with
    ``clip_bench.metrics.classification.register_metric``."""
    own = [m for ms in KIND_METRICS.values() for m in ms if m not in METRICS]
    return [*METRICS, *own, *(m for m in main_metric_names() if m not in METRICS)]


def _is_group_by(v: Any) -> bool:
    """``{column: <metadata column, an integer >= 0>, name: <what the groups are>}``."""
    return isinstance(v, dict) and set(v) == {"column", "name"} and _is_int(v["column"]) and _is_text(v["name"])


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
    "group_by": Key("a mapping {column: <the metadata column, an integer >= 0>, name: <what the groups are, e.g. "
                    "region>}", _is_group_by),
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
    "prompts_from_data": Key("true or false (class names and templates are the data folder's classnames.txt and "
                             "zeroshot_classification_templates.txt)", lambda v: isinstance(v, bool)),
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


def check_complete(raw: dict[str, Any], where: str) -> None:
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
    if raw["metric"] in GROUP_METRICS and "group_by" not in raw:
        raise ClipBenchError(
            f"task file {where}: metric {raw['metric']!r} scores each image's group; add 'group_by' "
            "({column: <metadata column>, name: <what the groups are>}) naming the metadata column of the groups."
        )
    if "group_by" in raw and (raw.get("multilabel") or raw.get("kind", "classification") != "classification"):
        raise ClipBenchError(f"task file {where}: 'group_by' is for single-label classification tasks; remove it.")
    kind = raw.get("kind", "classification")
    own = KIND_METRICS.get(kind)
    other = {m: k for k, ms in KIND_METRICS.items() if k != kind for m in ms}
    if (own is not None and raw["metric"] not in own) or raw["metric"] in other:
        want = f"one of {', '.join(own)}" if own else "a classification metric"
        whose = f" (a {other[raw['metric']]} metric)" if raw["metric"] in other else ""
        raise ClipBenchError(
            f"task file {where}: metric {raw['metric']!r}{whose} does not fit kind {kind!r}: a {kind} task is scored "
            f"with {want}."
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
        if source.get("prompts_from_data") and ("path" not in source or "label_map" in source):
            why = ("its data folder: give it a 'path'" if "path" not in source
                   else "the data's own class list, in the data's label order: remove its 'label_map'")
            raise ClipBenchError(f"task file {where}: source {name!r} has prompts_from_data: true, so its class names "
                                 f"come from {why}.")
        for key in ("splits", "expected", "files"):
            unknown = [s for s in source.get(key) or {} if s not in splits]
            if unknown:
                raise ClipBenchError(
                    f"task file {where}: {key!r} in source {name!r} names split {unknown[0]!r}, which is not in the "
                    f"task's 'splits' ({', '.join(splits)})."
                )


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
