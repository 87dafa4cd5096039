"""The task key ``group_by`` (the metadata column of worst-group metrics): checked like every key, required by the
worst-group metrics, and part of the task's identity."""

from __future__ import annotations

import pytest

from clip_bench.cache.identity import task_hash
from clip_bench.tasks.catalog import parse_task
from clip_bench.util.errors import ClipBenchError


def raw(**changes) -> dict:
    task = {"name": "geo", "version": 1, "prompts": "digits", "metric": "worst_group_top1", "splits": ["test"],
            "group_by": {"column": 0, "name": "region"}, "sources": {"s": {"loader": "digits"}}}
    task.update(changes)
    return {k: v for k, v in task.items() if v is not None}


def test_group_by_is_kept_and_part_of_the_identity():
    task = parse_task(raw())
    assert task.extra["group_by"] == {"column": 0, "name": "region"} and task.metric == "worst_group_top1"
    assert task_hash(task) != task_hash(parse_task(raw(group_by={"column": 1, "name": "region"})))
    assert parse_task(raw(metric="macro_f1", group_by=None)).metric == "macro_f1"
    assert parse_task(raw(metric="accuracy")).extra["group_by"]["name"] == "region"  # per-group values only


@pytest.mark.parametrize("changes, message", [
    (dict(group_by=None), "metric 'worst_group_top1' scores each image's group; add 'group_by'"),
    (dict(metric="worst_group_top5", group_by=None), "add 'group_by'"),
    (dict(group_by={"column": -1, "name": "region"}), "'group_by' at the top level must be a mapping"),
    (dict(group_by={"column": 0}), "'group_by' at the top level must be a mapping"),
    (dict(group_by={"column": "0", "name": "region"}), "'group_by' at the top level must be a mapping"),
    (dict(group_by={"column": 0, "name": "region", "extra": 1}), "'group_by' at the top level must be a mapping"),
    (dict(group_by=[0]), "'group_by' at the top level must be a mapping"),
    (dict(metric="map_11point", multilabel=True), "'group_by' is for single-label classification tasks"),
])
def test_bad_group_by_is_one_line(changes, message):
    with pytest.raises(ClipBenchError) as err:
        parse_task(raw(**changes))
    assert message in str(err.value) and "\n" not in str(err.value)
