"""The tiny CLIP has real zero-shot skill, and the task's split is the documented one."""

from __future__ import annotations

from clip_bench import zeroshot
from clip_bench.loaders.digits import digits_splits


def test_digits_split_is_fixed_and_disjoint():
    s = digits_splits()
    assert [len(s[k]) for k in ("train", "val", "test")] == [1078, 359, 360]
    assert not set(s["train"]) & set(s["test"]) and not set(s["val"]) & set(s["test"])


def test_tiny_clip_zero_shot_on_digits_test_split(tiny_model, eval_config):
    rows = zeroshot(tiny_model, "digits", eval_config)
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["n"] == 360 and top1["is_main"]
    assert top1["value"] >= 85.0
