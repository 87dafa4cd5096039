"""Outcomes of macro F1 and worst-group rows: the evidence reproduces the value, the interval covers it (or the row
has none and says why), and rows grouped another way are other samples."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.metrics.classification import all_metrics
from clip_bench.results import outcomes
from clip_bench.results.rows import make_row


def _rows(scores: np.ndarray, labels: np.ndarray, main: str, groups: np.ndarray | None, out, **fields) -> list[dict]:
    rows = [make_row(model="m", pretrained="tag", model_fingerprint="m", task="t", task_version=1, source="s",
                     split="test", protocol="zeroshot", metric=k, value=v, is_main=(k == main), n=len(labels),
                     date="2026-01-01", **fields)
            for k, v in all_metrics(scores, labels, main, groups).items()]
    return outcomes.attach_outcomes(rows, scores, labels, out, groups=groups)


def _data(seed: int = 0, n: int = 400, n_classes: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    scores = rng.normal(size=(n, n_classes))
    scores[np.arange(n), labels] += 1.2
    groups = rng.choice([0, 2, 3], n)  # code 1 has no image
    groups[np.flatnonzero(scores.argmax(axis=1) != labels)[0]] = 6  # a one-image group, wrong: it sets the worst
    return scores, labels, groups


@pytest.mark.parametrize("main", ["worst_group_top1", "worst_group_top5", "macro_f1"])
def test_new_metric_rows_have_an_interval_and_evidence_that_reproduces_them(tmp_path, main):
    scores, labels, groups = _data()
    rows = _rows(scores, labels, main, groups if main != "macro_f1" else None, tmp_path)
    row = next(r for r in rows if r["metric"] == main)
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert row["ci_method"] == ("bootstrap-stratified-1000" if main == "macro_f1" else "clopper-pearson-bonferroni")
    out = outcomes.load_for_row(row, tmp_path)
    assert out.recompute() == pytest.approx(row["value"], abs=1e-9) and out.n == len(labels)
    if main == "macro_f1":
        assert np.array_equal(out.preds, scores.argmax(axis=1)) and np.array_equal(out.labels, labels)
        assert out.sample_hash == outcomes.sample_hash(labels)
    else:
        assert np.array_equal(out.groups, groups)
        assert out.sample_hash == outcomes.grouped_sample_hash(outcomes.sample_hash(labels), groups)
        lo, hi = out.group_table().worst_interval()
        assert (row["ci_low"], row["ci_high"]) == (lo, hi)


def test_a_macro_f1_row_without_a_supported_interval_has_none_and_says_why(tmp_path):
    labels = np.repeat(np.arange(6), 5)
    scores = np.eye(6)[labels]  # every image right: no class has any spread to resample
    rows = _rows(scores, labels, "macro_f1", None, tmp_path)
    row = next(r for r in rows if r["metric"] == "macro_f1")
    assert row["value"] == 100.0 and row["ci_low"] is None and row["ci_high"] is None and row["ci_method"] is None
    assert "no interval" in row["extra"]["no_interval"]
    assert outcomes.load_for_row(row, tmp_path).recompute() == 100.0  # the evidence is still there for compare


def test_grouping_is_part_of_the_sample_identity_and_required(tmp_path):
    scores, labels, groups = _data()
    row = next(r for r in _rows(scores, labels, "worst_group_top1", groups, tmp_path / "a")
               if r["metric"] == "worst_group_top1")
    regrouped = np.where(groups == 0, 2, groups)
    other = next(r for r in _rows(scores, labels, "worst_group_top1", regrouped, tmp_path / "b")
                 if r["metric"] == "worst_group_top1")
    a, b = outcomes.load_for_row(row, tmp_path / "a"), outcomes.load_for_row(other, tmp_path / "b")
    assert a.sample_hash != b.sample_hash
    with pytest.raises(outcomes.OutcomeError, match="group code"):
        outcomes.outcomes_for("worst_group_top1", scores, labels, row["value"])


def test_damaged_group_evidence_is_refused(tmp_path):
    scores, labels, groups = _data()
    row = next(r for r in _rows(scores, labels, "worst_group_top1", groups, tmp_path)
               if r["metric"] == "worst_group_top1")
    path = tmp_path / row["outcomes"]
    out = outcomes.load(path)
    out.groups = out.groups[:-1]  # one code lost
    outcomes.save(out, path)
    with pytest.raises(outcomes.DamagedOutcomesError, match="damaged"):
        outcomes.load_for_row(row, tmp_path)
    out.groups = np.where(groups == 6, 0, groups)  # the one-image group merged into another: another value
    outcomes.save(out, path)
    with pytest.raises(outcomes.DamagedOutcomesError, match="does not reproduce|not the"):
        outcomes.load_for_row(row, tmp_path)


def test_sorted_group_codes_with_large_ids_round_trip(tmp_path):
    """Data sorted by a metadata column of ids (code 0, then large location ids): the evidence holds each image's
    code as it was, and writing it allocates nothing the size of the largest code."""
    scores, labels, small = _data()
    order = np.argsort(small, kind="stable")
    scores, labels, small = scores[order], labels[order], small[order]  # in group order, from code 0
    big = np.array([0, 1, 2**40, 2**41, 4, 5, 2**62])[small]
    rows = {r["metric"]: r for r in _rows(scores, labels, "worst_group_top1", big, tmp_path)}
    out = outcomes.load_for_row(rows["worst_group_top1"], tmp_path)
    np.testing.assert_array_equal(out.groups, big)
    assert out.recompute() == pytest.approx(rows["worst_group_top1"]["value"], abs=1e-9)
    assert out.group_table().worst_code == 2**62  # the one-image group the model gets wrong
