"""Tasks whose classes are groups of a larger class list, and class subsets for extra result rows.

ImageNet-R/-A/-O score the ImageNet-1k zero-shot classifier on 200 of its classes; ObjectNet scores it
on 113 ObjectNet classes, several of which map to more than one ImageNet class. A task says so with
``class_groups: <prompts ref>``, a JSON list whose entry ``j`` is the prompt-list index (or list of
indices) making up task class ``j``. Task class ``j`` gets the **max** logit over its group: the same
top-1 as imagenet-testbed's ObjectNet rule (argmax over every mapped class, correct if it lands in
the image's group). A one-element group simply selects a column.

The same files serve ``subsets:`` (extra rows restricted to some classes): there the groups are
flattened into one sorted set of class indices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from clip_bench.tasks.prompts import resolve_prompt_file
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.errors import ClipBenchError

GroupsRef = str | Sequence[int | Sequence[int]]


def load_class_groups(ref: GroupsRef) -> tuple[tuple[int, ...], ...]:
    """Groups of class indices from a prompts ref (a JSON list, or an object with ``class_groups``) or a list."""
    where = str(ref)
    if isinstance(ref, str):
        path = resolve_prompt_file(ref)
        where = str(path)
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ClipBenchError(f"class-group file {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            if "class_groups" not in data:
                raise ClipBenchError(f"{path} has no 'class_groups' key (a list of class indices or lists of them).")
            data = data["class_groups"]
    else:
        data = ref
    groups = []
    for entry in data if isinstance(data, list | tuple) else [None]:
        members = [entry] if isinstance(entry, int) and not isinstance(entry, bool) else entry
        if not isinstance(members, list | tuple) or not members or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in members
        ):
            raise ClipBenchError(f"{where}: class group {entry!r} must be a class index or a non-empty list of them.")
        groups.append(tuple(members))
    if not groups:
        raise ClipBenchError(f"{where}: the class-group list is empty.")
    return tuple(groups)


def class_indices(ref: GroupsRef) -> np.ndarray:
    """The sorted distinct class indices named by a class-group file (for ``subsets:`` rows)."""
    return np.asarray(sorted({i for g in load_class_groups(ref) for i in g}), dtype=np.int64)


def pool_logits(logits: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """(N, len(groups)) logits: each group's max over its member columns."""
    return np.stack([logits[:, list(g)].max(axis=1) for g in groups], axis=1)


def task_class_groups(task: TaskSpec) -> tuple[tuple[int, ...], ...] | None:
    """The task's ``class_groups``, or None for a task scored on its own class list."""
    ref = task.extra.get("class_groups")
    return load_class_groups(ref) if ref is not None else None


def num_task_classes(task: TaskSpec) -> int:
    """How many classes a task's labels index: its groups if it has them, else its class names."""
    groups = task_class_groups(task)
    return len(groups) if groups is not None else len(task.prompt_set().classnames)


def apply_class_groups(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Pool zero-shot logits into the task's classes.

    A class-name list with exactly one name per task class (e.g. a user's ``--classnames`` with
    ObjectNet's own 113 names) is used as it is; any other length must be the list the groups index.
    """
    groups = task_class_groups(task)
    if groups is None or logits.shape[1] == len(groups):
        return logits
    top = max(i for g in groups for i in g)
    if top >= logits.shape[1]:
        raise ClipBenchError(
            f"task {task.name!r}: its class_groups index class {top}, but the class-name list has only "
            f"{logits.shape[1]} names; give the full list the groups refer to, or one name per task class "
            f"({len(groups)})."
        )
    return pool_logits(logits, groups)
