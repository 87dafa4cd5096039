"""Worst-group and macro-F1 tasks end to end: the tiny CLIP on the digits with a synthetic region column (codes
0, 2, 4, one image alone in code 5, codes 1 and 3 empty). The rows equal the by-hand worst-group accuracy of the
same logits, carry every group, their intervals cover them, the outcomes rebuild from the caches, and compare
pairs two models (or says in one line why it cannot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from model_fixtures import checkpoint_folder

from clip_bench.config import EvalConfig, ExtractConfig
from clip_bench.loaders import LOADERS
from clip_bench.loaders.base import ArrayImages, LoadContext
from clip_bench.loaders.digits import digits_arrays
from clip_bench.util.errors import ClipBenchError

LOADER = "digit_regions"


def load_digit_regions(ctx: LoadContext, lonely: int = -1, halves: bool = False) -> ArrayImages:
    """The digits test split with metadata [year, region]: region i % 3 * 2 (or i % 2 with `halves`), image
    `lonely` alone in region 5."""
    images, labels = digits_arrays("test", 32)
    n = len(labels)
    region = np.arange(n) % 2 if halves else (np.arange(n) % 3) * 2
    if lonely >= 0:
        region[lonely] = 5
    return ArrayImages(images, labels, metadata=np.column_stack([np.full(n, 2016), region]))


def write_task(folder: Path, name: str, metric: str, args: dict[str, Any] | None = None,
               group_by: dict[str, Any] | None = None, loader: str = LOADER) -> None:
    raw: dict[str, Any] = {"name": name, "version": 1, "prompts": "digits", "metric": metric, "splits": ["test"],
                           "sources": {"mem": {"loader": loader, "args": args or {}}}}
    if loader == LOADER:
        raw["sources"]["mem"]["label_map"] = list(range(10))  # Remapped passes the metadata on
    if group_by is not None:
        raw["group_by"] = group_by
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


REGION = {"column": 1, "name": "region"}


def logits_of(model: Any, task_name: str, cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The zero-shot logits, labels and group codes of a task, from its features and class embeddings."""
    from clip_bench.cache.features import cached_group_codes
    from clip_bench.models.resolve import ModelHandle
    from clip_bench.protocols.runner import get_features
    from clip_bench.protocols.zeroshot_head import build_classifier, zeroshot_logits
    from clip_bench.tasks.catalog import get_task

    handle, task = ModelHandle.of(model, device="cpu"), get_task(task_name)
    feats = get_features(handle, task, "test", cfg)
    classifier = build_classifier(handle, task.prompt_set(), cfg.cache_dir, quiet=True)
    return zeroshot_logits(feats.features, classifier), np.asarray(feats.labels), cached_group_codes(task, feats)


def by_hand(hits: np.ndarray, groups: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for code in sorted(set(groups.tolist())):
        mine = [bool(h) for h, g in zip(hits, groups) if g == code]
        out.append({"code": code, "n": len(mine), "value": 100.0 * sum(mine) / len(mine)})
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Rows of the tiny CLIP and a perturbed copy on three tasks: regions (worst_group_top1, a one-image region
    the tiny CLIP gets wrong), halves (worst_group_top1 over two regions of 180) and macro F1."""
    from clip_bench.protocols.zeroshot import zeroshot

    tmp = tmp_path_factory.mktemp("groups")
    tasks = tmp / "tasks"
    tasks.mkdir()
    cfg = EvalConfig(data_root=tmp / "data", cache_dir=tmp / "cache", output_dir=tmp / "results",
                     extract=ExtractConfig(batch_size=128, workers=0, quiet=True))
    logits, labels, _ = logits_of(tiny_model, "digits", cfg)  # the same images, in the same order
    lonely = int(np.flatnonzero(logits.argmax(axis=1) != labels)[0])
    write_task(tasks, "digit_halves", "worst_group_top1", {"halves": True}, REGION)
    write_task(tasks, "digit_regions", "worst_group_top1", {"lonely": lonely}, REGION)
    write_task(tasks, "digit_f1", "macro_f1", loader="digits")
    LOADERS.register(LOADER, load_digit_regions)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIP_BENCH_TASKS", str(tasks))
        other = checkpoint_folder(tmp / "perturbed", perturb=True)
        names = ["digit_regions", "digit_halves", "digit_f1"]
        rows = {"tiny": zeroshot(tiny_model, names, cfg),
                "perturbed": zeroshot(str(other / "tiny.json"), names, cfg,
                                      pretrained=str(other / "epoch_32.safetensors"), device="cpu")}
        yield cfg, rows, lonely
    del LOADERS._entries[LOADER]


def row_of(rows: list[dict[str, Any]], task: str, metric: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["task"] == task and r["metric"] == metric and r["subset"] is None]
    return row


def test_worst_group_rows_equal_the_by_hand_value_of_the_same_logits(runs, tiny_model):
    cfg, rows, lonely = runs
    logits, labels, groups = logits_of(tiny_model, "digit_regions", cfg)
    expected_groups = np.where(np.arange(len(labels)) == lonely, 5, (np.arange(len(labels)) % 3) * 2)
    assert np.array_equal(groups, expected_groups)
    top1 = logits.argmax(axis=1) == labels
    table = by_hand(top1, expected_groups)
    assert [g["code"] for g in table] == [0, 2, 4, 5]  # codes 1 and 3 have no image: no group
    main = row_of(rows["tiny"], "digit_regions", "worst_group_top1")
    assert main["is_main"] and main["value"] == min(g["value"] for g in table) == 0.0
    assert main["extra"]["groups"] == [{**g, "value": pytest.approx(g["value"])} for g in table]
    assert main["extra"]["worst_group"] == 5 and main["extra"]["group_by"] == REGION
    assert main["ci_method"] == "clopper-pearson-bonferroni" and main["ci_low"] == 0.0 < main["ci_high"]
    plain = row_of(rows["tiny"], "digit_regions", "top1")
    assert not plain["is_main"] and plain["value"] == pytest.approx(100 * top1.mean())
    assert plain["extra"]["groups"] == [{**g, "value": pytest.approx(g["value"])} for g in table]
    top5 = (np.argsort(-logits, axis=1)[:, :5] == labels[:, None]).any(axis=1)
    assert row_of(rows["tiny"], "digit_regions", "top5")["extra"]["groups"] == [
        {**g, "value": pytest.approx(g["value"])} for g in by_hand(top5, expected_groups)]
    assert "groups" not in row_of(rows["tiny"], "digit_regions", "mean_per_class_recall")["extra"]

    logits, labels, groups = logits_of(tiny_model, "digit_halves", cfg)
    halves = row_of(rows["tiny"], "digit_halves", "worst_group_top1")
    assert halves["value"] == pytest.approx(min(g["value"] for g in by_hand(logits.argmax(1) == labels, groups)))
    assert halves["ci_low"] <= halves["value"] <= halves["ci_high"]
    f1 = row_of(rows["tiny"], "digit_f1", "macro_f1")
    from sklearn.metrics import f1_score

    logits, labels, groups = logits_of(tiny_model, "digit_f1", cfg)
    assert groups is None and f1["is_main"] and "groups" not in f1["extra"]
    assert f1["value"] == pytest.approx(100 * f1_score(labels, logits.argmax(1), average="macro"))
    assert f1["ci_low"] <= f1["value"] <= f1["ci_high"] and f1["ci_method"] == "bootstrap-stratified-1000"


def test_compare_pairs_two_models_or_says_why_not(runs):
    from clip_bench.report.compare import compare, format_comparison

    cfg, rows, _ = runs
    a_model, b_model = rows["tiny"][0]["model_fingerprint"], rows["perturbed"][0]["model_fingerprint"]
    c = compare(a_model, b_model, cfg.output_dir)
    by_task = {t.task: t for t in c.tasks}
    assert set(by_task) == {"digit_halves", "digit_f1"}
    for task, metric in (("digit_halves", "worst_group_top1"), ("digit_f1", "macro_f1")):
        t = by_task[task]
        a, b = row_of(rows["tiny"], task, metric), row_of(rows["perturbed"], task, metric)
        assert t.metric == metric and t.test == "paired bootstrap (1000)"
        assert t.diff == pytest.approx(a["value"] - b["value"]) and t.ci_low <= t.diff <= t.ci_high
    (refused,) = c.refused
    assert refused.startswith("digit_regions: refused, no paired interval for worst_group_top1: group 5 (1 image) "
                              "can be the worst group") and "\n" not in refused
    assert refused in format_comparison(c)
    with pytest.raises(ClipBenchError, match="group 5 \\(1 image\\)"):
        compare(a_model, b_model, cfg.output_dir, tasks=["digit_regions"])


def test_worst_group_outcomes_rebuild_from_the_caches(runs, tmp_path):
    from clip_bench.protocols.replay import backfill
    from clip_bench.results import outcomes

    cfg, rows, _ = runs
    for task in ("digit_regions", "digit_f1"):
        main = next(r for r in rows["tiny"] if r["task"] == task and r["is_main"])
        old = {k: v for k, v in main.items() if k not in ("ci_low", "ci_high", "ci_method", "outcomes")}
        rebuilt = backfill(old, tmp_path, cfg.cache_dir, cfg.data_root)
        original = outcomes.load(cfg.output_dir / main["outcomes"])
        assert rebuilt.sample_hash == original.sample_hash and rebuilt.value == original.value
        if task == "digit_regions":
            assert np.array_equal(rebuilt.groups, original.groups)


def test_a_second_run_reads_the_groups_from_the_cache(runs, tiny_model):
    from clip_bench.protocols.zeroshot import zeroshot

    cfg, rows, _ = runs
    again = zeroshot(tiny_model, "digit_regions", cfg, output_dir=None)
    first = [r for r in rows["tiny"] if r["task"] == "digit_regions"]
    assert [r["result_id"] for r in again] == [r["result_id"] for r in first]
    assert [r["extra"].get("groups") for r in again] == [r["extra"].get("groups") for r in first]


def test_group_by_on_data_without_metadata_is_one_line(runs, tiny_model, tmp_path):
    from clip_bench.protocols.zeroshot import zeroshot

    cfg = runs[0]
    folder = tmp_path
    write_task(folder, "digit_plain_groups", "worst_group_top1", group_by=REGION, loader="digits")
    write_task(folder, "digit_far_column", "worst_group_top1", {"halves": True}, {"column": 2, "name": "zone"})
    with pytest.MonkeyPatch.context() as local:
        local.setenv("CLIP_BENCH_TASKS", str(folder))
        with pytest.raises(ClipBenchError) as err:
            zeroshot(tiny_model, "digit_plain_groups", cfg, output_dir=None)
        assert "carries no per-sample metadata" in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(ClipBenchError, match="metadata column 2 \\(zone\\), but its data has 2 metadata columns"):
            zeroshot(tiny_model, "digit_far_column", cfg, output_dir=None)
