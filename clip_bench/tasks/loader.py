"""Reading one task file: strict YAML, its ``include:`` chain merged, checked against the schema, built into a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clip_bench.tasks.class_groups import num_task_classes
from clip_bench.tasks.schema import check_complete, check_task_file
from clip_bench.tasks.spec import SourceSpec, TaskSpec
from clip_bench.util.errors import ClipBenchError


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
        prompts_from_data=bool(raw.get("prompts_from_data", False)),
    )


def parse_task(raw: Any, file: str = "") -> TaskSpec:
    """Validate a task's YAML mapping (after ``include``) against the schema and build its spec."""
    where = file or (raw.get("name", "?") if isinstance(raw, dict) else "?")
    raw = dict(check_task_file(raw, where))
    raw.pop("include", None)
    check_complete(raw, where)
    sources = {n: _parse_source(n, s) for n, s in raw["sources"].items()}
    # a task whose prompts are its data's own files has none of its own, unless it names some (for other sources)
    from_data = any(s.prompts_from_data for s in sources.values())
    prompts = raw.get("prompts", "" if from_data else raw["name"])
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


def read_task_file(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
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
    merged = read_task_file(parent_path, (*chain, resolved))
    merged.pop("include", None)
    merged.update((k, v) for k, v in raw.items() if k != "include")
    return merged


def check_label_maps(task: TaskSpec) -> None:
    """Each source's ``label_map`` must map every source label to a distinct task class: a permutation of
    the task's class indices (its length is the number of class names, or of class groups)."""
    if task.extra.get("kind", "classification") != "classification":
        return
    maps = {n: s.label_map for n, s in task.sources.items() if s.label_map is not None}
    if not maps:
        return
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
