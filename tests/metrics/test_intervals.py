"""Intervals and paired tests: coverage by simulation, parity with the plain metrics and with direct resampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sst

from clip_bench.metrics import classification as metrics
from clip_bench.metrics import intervals as stats

REPS = 2000  # simulated test sets per coverage check


def test_wilson_interval_covers_the_true_accuracy_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    for p, n in ((0.9, 300), (0.72, 500), (0.55, 150)):
        k = rng.binomial(n, p, size=REPS)  # 2,000 synthetic test sets with known accuracy p
        lo, hi = stats.wilson(k, n)
        coverage = np.mean((lo <= p) & (p <= hi))
        assert 0.93 <= coverage <= 0.97, (p, n, coverage)
        lo_cp, hi_cp = stats.clopper_pearson(k, n)
        assert np.mean((lo_cp <= p) & (p <= hi_cp)) >= 0.94  # exact: never below nominal


def test_stratified_bootstrap_of_mean_per_class_recall_covers_the_truth():
    # B = 200 per repetition keeps the test fast (2,000 bootstraps); the rows use B = 1000.
    rng = np.random.default_rng(5)
    recall = np.linspace(0.55, 0.95, 8)  # true recall of each of 8 classes
    labels = np.repeat(np.arange(8), 60)
    truth = 100 * recall.mean()
    covered = 0
    for rep in range(REPS):
        correct = rng.random(labels.size) < recall[labels]
        lo, hi = stats.percentile_interval(stats.bootstrap_mean_per_class_recall(correct, labels, B=200, seed=rep))
        covered += lo <= truth <= hi
    assert 0.93 <= covered / REPS <= 0.97, covered / REPS


def test_count_bootstrap_matches_resampling_the_images():
    """The multinomial-count bootstrap has the distribution of resampling each class's images."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, 2000)
    correct = rng.random(2000) < rng.uniform(0.3, 0.95, 20)[labels]
    fast = stats.bootstrap_mean_per_class_recall(correct, labels, B=4000, seed=1)
    slow = []
    members = [np.flatnonzero(labels == c) for c in range(20)]
    for _ in range(1000):
        slow.append(100 * np.mean([correct[rng.choice(m, m.size)].mean() for m in members]))
    observed = 100 * np.mean([correct[m].mean() for m in members])
    assert fast.mean() == pytest.approx(observed, abs=0.1)
    assert np.std(fast) == pytest.approx(np.std(slow), rel=0.1)


def test_weighted_metrics_with_unit_weights_equal_the_plain_metrics():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(400, 6))
    targets = rng.random((400, 6)) < 0.25
    assert stats.weighted_map_11point(scores, targets, np.ones((1, 400)))[0] == pytest.approx(
        metrics.map_11point(scores, targets), abs=1e-9)
    margin = np.round(rng.normal(size=500), 1)  # many ties
    y = (rng.random(500) < 1 / (1 + np.exp(-margin))).astype(int)
    assert stats.weighted_roc_auc(margin, y, np.ones((1, 500)))[0] == pytest.approx(
        metrics.roc_auc(margin, y), abs=1e-9)


def test_weighted_map_equals_map_of_the_resampled_images():
    rng = np.random.default_rng(4)
    scores, targets = rng.normal(size=(120, 4)), rng.random((120, 4)) < 0.3
    w = stats.resample_weights(rng, 120, 5)
    for row in w:
        idx = np.repeat(np.arange(120), row)
        assert stats.weighted_map_11point(scores, targets, row[None])[0] == pytest.approx(
            metrics.map_11point(scores[idx], targets[idx]), abs=1e-9)


def test_mcnemar_exact_and_newcombe_interval():
    a = np.array([1] * 30 + [0] * 10 + [1] * 50 + [0] * 10, dtype=bool)
    b = np.array([0] * 30 + [1] * 10 + [1] * 50 + [0] * 10, dtype=bool)
    p, only_a, only_b = stats.mcnemar_exact(a, b)
    assert (only_a, only_b) == (30, 10)
    assert p == pytest.approx(sst.binomtest(10, 40, 0.5).pvalue)
    assert stats.mcnemar_exact(a, a)[0] == 1.0
    lo, hi = stats.newcombe_paired_interval(b, a)  # accuracy(a) - accuracy(b) = 0.2
    assert lo < 0.2 < hi and lo > 0  # clearly positive
    # Swapping the models negates the interval.
    lo2, hi2 = stats.newcombe_paired_interval(a, b)
    assert (lo2, hi2) == pytest.approx((-hi, -lo))


def test_holm_step_down():
    adjusted, rejected = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert list(rejected) == [True, False, False, True]


def test_seed_mean_interval_combines_between_and_within_seed_variance():
    lo, hi = stats.combine_seed_intervals([60.0, 62.0, 64.0], [57.0, 59.0, 61.0], [63.0, 65.0, 67.0])
    se_within = 6.0 / (2 * stats.Z95)
    expected = stats.Z95 * np.sqrt(4.0 / 3 + se_within ** 2)
    assert (lo, hi) == pytest.approx((62 - expected, 62 + expected))


def test_paired_difference_interval_covers_the_true_difference():
    """Newcombe's interval for accuracy(B) - accuracy(A) on correlated paired outcomes (what compare reports)."""
    rng = np.random.default_rng(9)
    n, p_a, p_b = 300, 0.8, 0.75
    covered = 0
    for _ in range(REPS):
        u = rng.random(n)
        a = u < p_a
        b = np.where(rng.random(n) < 0.8, u < p_b, rng.random(n) < p_b)  # B mostly errs where A does
        lo, hi = stats.newcombe_paired_interval(a, b)
        covered += lo <= p_b - p_a <= hi
    assert 0.93 <= covered / REPS <= 0.97, covered / REPS
