"""register_metric: a task can name a metric added at run time; its rows carry no interval rather than a wrong one,
and compare refuses it with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from task_fixtures import main_row

from clip_bench import zeroshot
from clip_bench.metrics.classification import (
    MAIN_METRICS,
    all_metrics,
    main_metric,
    main_metric_names,
    register_metric,
    top1,
    unregister_metric,
)
from clip_bench.protocols.replay import backfill
from clip_bench.report.compare import compare
from clip_bench.results.outcomes import CI_METHODS, attach_outcomes, has_outcomes
from clip_bench.results.rows import append_rows, make_row, result_id
from clip_bench.tasks.catalog import parse_task
from clip_bench.util.errors import ClipBenchError, UnknownNameError

BUILTIN = ["accuracy", "mean_per_class_recall", "map_11point", "roc_auc", "mean_top1_top5", "macro_f1",
           "worst_group_top1", "worst_group_top5"]


def top2_accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    top = np.argsort(-scores, axis=1)[:, :2]
    return 100.0 * float(np.mean((top == targets[:, None]).any(axis=1)))


@pytest.fixture
def top2():
    register_metric("top2_accuracy", top2_accuracy)
    yield "top2_accuracy"
    unregister_metric("top2_accuracy")


def task_raw(metric: str, name: str = "digits_top2") -> dict:
    return {"name": name, "version": 1, "prompts": "digits", "metric": metric, "splits": ["train", "val", "test"],
            "sources": {"sklearn": {"loader": "digits"}}}


def test_a_registered_metric_is_a_main_metric_a_task_can_name(top2):
    assert main_metric(top2) is top2_accuracy
    assert main_metric_names() == [*BUILTIN, top2]
    assert parse_task(task_raw(top2)).metric == top2
    unregister_metric(top2)
    with pytest.raises(UnknownNameError):
        main_metric(top2)
    with pytest.raises(ClipBenchError, match="'metric' .*one of accuracy, mean_per_class_recall, map_11point, "
                                             "roc_auc, mean_top1_top5, mean_recall"):
        parse_task(task_raw(top2))


def test_register_metric_refuses_builtin_and_reserved_names_and_bad_input(top2):
    for name in [*BUILTIN, "top1", "top5", "mean_recall"]:
        with pytest.raises(ValueError, match="built-in metric name"):
            register_metric(name, top2_accuracy)
        with pytest.raises(ValueError, match="cannot be removed"):
            unregister_metric(name)
    for name in ["Top2", "text_retrieval_recall@3", "", "2top", None]:
        with pytest.raises(ValueError, match="lower-case letters"):
            register_metric(name, top2_accuracy)
    with pytest.raises(ValueError, match="already registered"):
        register_metric(top2, top1)
    with pytest.raises(ValueError, match="must be functions"):
        register_metric("not_a_function", 3)
    register_metric(top2, top1, replace=True)
    assert main_metric(top2) is top1
    assert set(MAIN_METRICS) == {*BUILTIN, top2}


def test_per_example_shares_reach_the_probe_c_search():
    def shares(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return 100.0 * (scores.argmax(axis=1) == targets) / len(targets)

    def plain(scores: np.ndarray, targets: np.ndarray) -> float:
        return 100.0 * float(np.mean(scores.argmax(axis=1) == targets))

    register_metric("plain_top1", plain, per_example=shares)
    try:
        assert main_metric("plain_top1").per_example is shares  # what probe.c_search reads
    finally:
        unregister_metric("plain_top1")


def test_a_registered_metric_row_gets_no_interval_and_no_outcomes_file(top2, tmp_path):
    rng = np.random.default_rng(0)
    scores, targets = rng.normal(size=(50, 6)), rng.integers(0, 6, size=50)
    values = all_metrics(scores, targets, top2)
    assert list(values) == ["top1", "top5", "mean_per_class_recall", top2]
    rows = [make_row(model="m", task="t", protocol="zeroshot", metric=m, value=v, is_main=m == top2, n=50)
            for m, v in values.items()]
    attach_outcomes(rows, scores, targets, tmp_path)
    by_metric = {r["metric"]: r for r in rows}
    assert not has_outcomes(top2) and top2 not in CI_METHODS and has_outcomes("top1")
    assert [by_metric[top2][k] for k in ("ci_low", "ci_high", "ci_method", "outcomes")] == [None] * 4
    assert all(by_metric[m]["ci_low"] is not None for m in ("top1", "top5", "mean_per_class_recall"))
    assert len(list((tmp_path / "outcomes").glob("*.npz"))) == 3


def test_zeroshot_on_a_registered_metric_and_compare_refuses_it(top2, tmp_path, eval_config, monkeypatch):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "digits_top2.yaml").write_text(yaml.safe_dump(task_raw(top2), sort_keys=False))
    monkeypatch.setenv("CLIP_BENCH_TASKS", str(folder))
    rows = zeroshot("tiny-clip-digits", "digits_top2", eval_config, device="cpu")
    row = main_row(rows)
    assert row["metric"] == top2 and row["ci_method"] is None and row["outcomes"] is None
    assert row_value(rows, "top1") < row["value"] < row_value(rows, "top5")

    other = {**row, "model": "other-model", "model_fingerprint": "f" * 20}
    other["result_id"] = result_id(other)
    append_rows(eval_config.output_dir, [other])
    with pytest.raises(ClipBenchError, match="nothing to compare: digits_top2: skipped, .*compare has no paired test "
                                             "for metric 'top2_accuracy'"):
        compare("tiny-clip-digits", "other-model", eval_config.output_dir)
    with pytest.raises(ClipBenchError, match="compare has no paired test for metric 'top2_accuracy'"):
        compare("tiny-clip-digits", "other-model", eval_config.output_dir, tasks=["digits_top2"],
                cache_dir=eval_config.cache_dir)
    with pytest.raises(ClipBenchError, match="has no per-sample outcomes .*none to rebuild"):
        backfill(row, eval_config.output_dir, eval_config.cache_dir, eval_config.data_root)


def row_value(rows: list[dict], metric: str) -> float:
    (row,) = [r for r in rows if r["metric"] == metric and r["subset"] is None]
    return row["value"]
