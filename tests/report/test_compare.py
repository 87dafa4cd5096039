"""`compare`: a known large difference is significant, identical models never are, different test samples
are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clip_bench.metrics import intervals as stats
from clip_bench.metrics.classification import all_metrics, main_metric_key
from clip_bench.report.compare import compare, format_comparison
from clip_bench.results.outcomes import attach_outcomes
from clip_bench.results.rows import append_rows, make_row
from clip_bench.util.errors import ClipBenchError


def _scores(rng: np.random.Generator, labels: np.ndarray, accuracy: float, n_classes: int) -> np.ndarray:
    """Random logits whose argmax is the label with probability `accuracy`."""
    scores = rng.normal(size=(labels.size, n_classes))
    right = rng.random(labels.size) < accuracy
    scores[np.arange(labels.size), labels] = np.where(right, 10.0, -10.0)
    return scores


def _write(out: Path, model: str, task: str, scores: np.ndarray, labels: np.ndarray, main: str = "accuracy",
           **fields) -> list[dict]:
    key = main_metric_key(main)
    rows = [make_row(model=model, pretrained="tag", model_fingerprint=model, task=task, task_version=1,
                     source="s", split="test", protocol="zeroshot", metric=m, value=v, is_main=(m == key),
                     n=int(labels.shape[0]), **{"date": "2026-01-01", **fields})
            for m, v in all_metrics(scores, labels, main).items()]
    attach_outcomes(rows, scores, labels, out)
    append_rows(out, rows)
    return rows


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Model `good` (90% top-1) vs `bad` (70%) on two tasks; `twin` makes exactly good's predictions."""
    rng = np.random.default_rng(0)
    out = tmp_path / "results"
    for task, n in (("t1", 600), ("t2", 400)):
        labels = rng.integers(0, 10, n)
        good = _scores(rng, labels, 0.9, 10)
        _write(out, "good", task, good, labels)
        _write(out, "twin", task, good.copy(), labels)
        _write(out, "bad", task, _scores(rng, labels, 0.7, 10), labels)
    return out


def test_a_large_known_difference_is_significant(results):
    c = compare("good", "bad", results)
    assert [t.task for t in c.tasks] == ["t1", "t2"]
    for t in c.tasks:
        assert t.test == "McNemar exact" and t.p_value < 1e-6 and t.significant and t.result == "A better"
        assert 10 < t.ci_low < t.diff < t.ci_high < 30  # true difference: 20 points
    assert (c.wins, c.losses, c.ties) == (2, 0, 0)
    assert 10 < c.mean_ci_low < c.mean_diff < c.mean_ci_high < 30
    flipped = compare("bad", "good", results)
    assert (flipped.wins, flipped.losses) == (0, 2) and flipped.mean_diff == pytest.approx(-c.mean_diff)


def test_bootstrap_metric_comparison(results):
    c = compare("good:tag", "bad:tag", results, metric="mean_per_class_recall", B=500)
    assert all(t.test == "paired bootstrap (500)" and t.significant and t.p_value < 0.01 for t in c.tasks)


@pytest.mark.parametrize("metric", [None, "top5", "mean_per_class_recall"])
def test_identical_models_are_never_significant(results, metric):
    c = compare("good", "twin", results, metric=metric)
    assert all(t.diff == 0 and t.p_value == 1.0 and not t.significant for t in c.tasks)
    assert (c.wins, c.losses, c.ties) == (0, 0, 2) and c.mean_ci_low == c.mean_ci_high == 0


def test_identical_models_over_many_test_sets(tmp_path):
    """Whatever the data, two models with the same predictions get p = 1 (mAP and ROC AUC too)."""
    rng = np.random.default_rng(1)
    for i in range(3):
        labels = rng.integers(0, 5, 150)
        s = _scores(rng, labels, rng.uniform(0.2, 0.95), 5)
        _write(tmp_path, "a", f"acc{i}", s, labels)
        _write(tmp_path, "b", f"acc{i}", s, labels)
        targets = rng.random((150, 4)) < 0.3
        multi = rng.normal(size=(150, 4)) + targets
        _write(tmp_path, "a", f"map{i}", multi, targets, main="map_11point")
        _write(tmp_path, "b", f"map{i}", multi, targets, main="map_11point")
        y = rng.integers(0, 2, 150)
        binary = rng.normal(size=(150, 2)) + np.eye(2)[y]
        _write(tmp_path, "a", f"auc{i}", binary, y, main="roc_auc")
        _write(tmp_path, "b", f"auc{i}", binary, y, main="roc_auc")
    c = compare("a", "b", tmp_path, B=200)
    assert len(c.tasks) == 9 and c.ties == 9
    assert {t.metric for t in c.tasks} == {"top1", "map_11point", "roc_auc"}


def test_different_test_samples_are_refused(results, tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 300)  # t1 again, but another sample of 300 images
    _write(results, "other", "t1", _scores(rng, labels, 0.8, 10), labels, limit=300)
    with pytest.raises(ClipBenchError, match=r"t1: refused, A and B were not evaluated on the same test samples "
                                             r"\(--limit 300 vs None, 300 vs 600 test samples"):
        compare("other", "good", results, tasks=["t1"])
    with pytest.raises(ClipBenchError, match="nothing to compare"):
        compare("other", "good", results)


def test_model_names(results):
    with pytest.raises(ClipBenchError, match="no result rows for model 'nope'; models in the results: bad \\(tag\\)"):
        compare("nope", "good", results)
    with pytest.raises(ClipBenchError, match="name the same model rows"):
        compare("good", "good:tag", results)


def test_paired_bootstrap_null_calibration():
    """Two different models of equal true accuracy: the bootstrap p-value is below 0.05 about 5% of the time."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(5), 40)
    rejections = 0
    for rep in range(300):
        a = rng.random(200) < 0.8
        b = rng.random(200) < 0.8
        reps = stats.paired_mean_per_class_recall_bootstrap(a, b, labels, B=200, seed=rep)
        observed = 100 * (np.mean([b[labels == c].mean() for c in range(5)])
                          - np.mean([a[labels == c].mean() for c in range(5)]))
        rejections += stats.bootstrap_p_value(reps, observed) < 0.05
    assert rejections / 300 <= 0.09


def test_cli_table_and_json(results, capsys):
    from clip_bench.cli.app import main

    assert main(["compare", "good", "bad", "--results", str(results)]) == 0
    table = capsys.readouterr().out
    assert "McNemar exact" in table and "A better on 2, B better on 0" in table
    assert main(["compare", "good", "bad", "--results", str(results), "--format", "json", "--task", "t2"]) == 0
    data = json.loads(capsys.readouterr().out)  # stdout is the JSON and nothing else
    assert [t["task"] for t in data["tasks"]] == ["t2"] and data["wins"] == 1
    assert main(["compare", "good", "nope", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no result rows for model 'nope'" in err


def test_format_comparison_lists_refusals(results):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 200)
    _write(results, "good", "t3", _scores(rng, labels, 0.9, 10), labels)
    _write(results, "bad", "t3", _scores(rng, labels[::-1].copy(), 0.9, 10), labels[::-1].copy())
    text = format_comparison(compare("good", "bad", results))
    assert "t3: refused" in text and "A better on 2" in text


def test_a_later_override_row_never_displaces_the_standard_row(results):
    """A --classnames/--limit run written after the full evaluation is not what compare compares."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 600)
    _write(results, "good", "t1", _scores(rng, labels, 0.1, 10), labels, standard=False,
           date="2026-06-01", classnames_file="wrong.txt", classnames_hash="0123456789abcdef")
    c = compare("good", "bad", results)
    t1 = next(t for t in c.tasks if t.task == "t1")
    assert t1.result == "A better" and 10 < t1.diff < 30  # the standard 90% row, not the 10% override


def test_outcomes_whose_evidence_was_altered_are_refused(results):
    """A valid .npz whose per-sample bits no longer give its recorded value is damaged, never evidence."""
    from clip_bench.results.outcomes import OutcomeError, load, load_for_row, outcome_relpath
    from clip_bench.results.rows import read_rows

    row = next(r for r in read_rows(results) if r["model"] == "good" and r["task"] == "t1" and r["is_main"])
    path = results / outcome_relpath(row)
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    key = next(k for k, v in data.items() if v.dtype == np.uint8 and v.ndim == 1 and v.size > 10)
    data[key] = np.bitwise_xor(data[key], np.uint8(0xFF))  # flip the evidence, keep the recorded value
    np.savez(path, **data)
    assert load(path).value == pytest.approx(row["value"])
    with pytest.raises(OutcomeError, match="damaged"):
        load_for_row(row, results)


def test_report_has_a_paired_comparison_section(results, tmp_path):
    """With two or more models, the report compares each against the first (same tests as `compare`)."""
    import csv

    from clip_bench.report import build_report

    out = tmp_path / "report"
    build_report(results, out, quiet=True)
    with open(out / "comparisons.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    first = table[0]["model A"]
    assert len(table) == 2 and all(r["model A"] == first for r in table)  # every model against the first
    assert {first} | {r["model B"] for r in table} == {"good (tag)", "twin (tag)", "bad (tag)"}
    for r in table:
        if "bad (tag)" in (r["model A"], r["model B"]):  # 90% vs 70% on both tasks: two significant results
            assert int(r["A better"]) + int(r["B better"]) == 2 and 10 < abs(float(r["mean A - B"])) < 30
            assert (float(r["mean A - B"]) > 0) == (r["model B"] == "bad (tag)")
        else:  # good vs twin: identical predictions, never significant
            assert (r["ties"], float(r["mean A - B"])) == ("2", 0.0)
    assert "Paired comparisons" in (out / "report.html").read_text(encoding="utf-8")
