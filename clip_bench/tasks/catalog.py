"""The task catalogue: task files found by name (built-in and under CLIP_BENCH_TASKS), and collections of tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from clip_bench.tasks.loader import check_label_maps, parse_task, read_task_file, read_yaml
from clip_bench.tasks.schema import parse_collections
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.errors import ClipBenchError, UnknownNameError
from clip_bench.util.resources import data_dir

COLLECTIONS_FILE = "collections.yaml"


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
        task = parse_task(read_task_file(path), str(path))
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
    task = parse_task(read_task_file(path), str(path))
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


def expand_tasks(names: list[str]) -> list[str]:
    """Expand collection names into task names, keeping order and dropping repeats."""
    out: list[str] = []
    collections = list_collections()
    for n in names:
        out.extend(collections.get(n, [n]))
    return list(dict.fromkeys(out))


def headline_collections() -> dict[str, list[str]]:
    """Task groups the leaderboard averages over: ``clip27`` (paper order) and ``imagenet_shifts``, as
    ``tasks/collections.yaml`` declares them."""
    groups = list_collections()
    return {k: list(groups[k]) for k in ("clip27", "imagenet_shifts")}


#: What the Python API accepts as tasks: a task name, collection or task file, or a list of them.
TaskRefs = str | list[str]
