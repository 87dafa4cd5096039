"""What makes two numbers the same measurement: task-definition hashes and the arithmetic's identity.

Shared by the feature and text caches (their keys) and the result rows (``result_id``).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.io import sha256_json
from clip_bench.util.resources import data_dir

#: Task fields that only describe or locate data (they never change a number): left out of the task hash.
_DESCRIPTIVE_TASK_FIELDS = ("file", "description", "data_binding")
_DESCRIPTIVE_SOURCE_FIELDS = ("download", "files")
#: Source fields added after the first tasks were hashed: at these defaults they are left out, so the
#: definitions that do not use them keep their hash (and their cached features and result ids).
_LATER_SOURCE_DEFAULTS = {"prompts_from_data": False}
_UNSET = object()


def task_hash(task: TaskSpec) -> str:
    """Hash of a task's parsed definition (sources, splits, prompts refs, metric, class groups, ...).

    A user task that reuses a built-in name with other content gets another hash; descriptions,
    download hints and the file's location do not count.
    """
    raw = {k: v for k, v in dataclasses.asdict(task).items() if k not in _DESCRIPTIVE_TASK_FIELDS}
    raw["sources"] = {
        n: {k: v for k, v in src.items()
            if k not in _DESCRIPTIVE_SOURCE_FIELDS and _LATER_SOURCE_DEFAULTS.get(k, _UNSET) != v}
        for n, src in raw["sources"].items()
    }
    return sha256_json(raw)[:16]


@lru_cache(maxsize=256)
def builtin_task_hash(name: str) -> str | None:
    """The definition hash of the shipped task called `name`, or None if clip-bench ships none."""
    path = data_dir("tasks") / f"{name}.yaml"
    return task_hash(_get_task(str(path))) if path.is_file() else None


def is_builtin_definition(task: TaskSpec) -> bool:
    """Whether `task` is a shipped task's definition, or a user task whose name no shipped task has.

    A user file that shadows a built-in name with other content is not (its rows are not standard).
    """
    shipped = builtin_task_hash(task.name)
    return shipped is None or shipped == task_hash(task)


def _get_task(ref: str) -> TaskSpec:
    from clip_bench.tasks.catalog import get_task

    return get_task(ref)


def device_type(device: Any) -> str | None:
    """``cuda`` for ``cuda:1``; None when unknown."""
    return str(device).split(":", 1)[0] if device else None


def numeric_identity(precision: str | None, device: Any) -> dict[str, Any]:
    """The part of a cache key or result identity that the arithmetic adds.

    fp32 results agree across device types to rounding, so the device is left out; fp16/bf16 run
    under the device's own autocast kernels, so their device type is part of the identity.
    """
    precision = precision or "fp32"
    return {"precision": precision, "device_type": None if precision == "fp32" else device_type(device)}
