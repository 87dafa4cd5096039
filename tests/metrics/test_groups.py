"""Macro F1 and worst-group accuracy against independent computations: scikit-learn's f1_score over the classes
present in the labels, per-group accuracies by hand (an empty code is no group, a one-image group may set the
worst), and the bootstraps against brute-force resampling of the images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from clip_bench.metrics import groups as grouped
from clip_bench.metrics import intervals as stats
from clip_bench.metrics.classification import (
    all_metrics,
    group_table,
    macro_f1,
    main_metric,
    worst_group_top1,
    worst_group_top5,
)
from clip_bench.util.errors import ClipBenchError


def test_macro_f1_is_sklearns_over_the_classes_present_in_the_labels():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, n_classes = int(rng.integers(1, 400)), int(rng.integers(2, 40))
        labels = rng.choice(rng.permutation(n_classes)[: max(1, n_classes // 2)], n)  # half the classes absent
        scores = rng.normal(size=(n, n_classes + 3))  # 3 more columns: classes predicted, never labelled
        scores[np.arange(n), labels] += rng.uniform(0, 3)
        preds = scores.argmax(axis=1)
        expected = 100 * f1_score(labels, preds, average="macro", labels=np.unique(labels), zero_division=0)
        assert macro_f1(scores, labels) == pytest.approx(expected, abs=1e-9), trial
        assert grouped.macro_f1_from_predictions(labels, preds) == pytest.approx(expected, abs=1e-9)
    # absent classes really are left out: counting every score column gives another number
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 3])
    assert grouped.macro_f1_from_predictions(labels, preds) == pytest.approx(100 * 2 / 3)
    assert 100 * f1_score(labels, preds, average="macro", zero_division=0) == pytest.approx(100 / 3)


def by_hand_worst(hits: np.ndarray, groups: np.ndarray) -> tuple[float, dict[int, tuple[int, float]]]:
    """The worst accuracy over the codes that have samples, and {code: (size, accuracy)}, with plain loops."""
    table = {}
    for code in sorted(set(groups.tolist())):
        members = [h for h, g in zip(hits.tolist(), groups.tolist()) if g == code]
        table[code] = (len(members), 100.0 * sum(members) / len(members))
    return min(acc for _, acc in table.values()), table


def test_worst_group_accuracy_by_hand_with_an_empty_code_and_a_one_image_group():
    rng = np.random.default_rng(1)
    n, n_classes = 300, 12
    labels = rng.integers(0, n_classes, n)
    scores = rng.normal(size=(n, n_classes))
    scores[np.arange(n), labels] += 1.5
    groups = rng.choice([0, 1, 3, 4], n)  # code 2 has no image
    top1 = scores.argmax(axis=1) == labels
    lonely = int(np.flatnonzero(~top1)[0])
    groups[lonely] = 5  # a group of one image the model gets wrong: it sets the worst (0%)
    value, table = by_hand_worst(top1, groups)
    assert value == 0.0 and table[5] == (1, 0.0) and 2 not in table
    assert worst_group_top1(scores, labels, groups) == 0.0
    got = group_table("worst_group_top1", scores, labels, groups)
    assert got.records() == [{"code": c, "n": s, "value": pytest.approx(v)} for c, (s, v) in table.items()]
    assert got.worst_code == 5

    right = int(np.flatnonzero(top1)[0])  # the same group holding an image the model gets right: it no longer sets it
    groups[lonely], groups[right] = 0, 5
    value, table = by_hand_worst(top1, groups)
    assert worst_group_top1(scores, labels, groups) == pytest.approx(value) and table[5] == (1, 100.0)
    assert group_table("worst_group_top1", scores, labels, groups).worst_code != 5

    top5 = (np.argsort(-scores, axis=1)[:, :5] == labels[:, None]).any(axis=1)
    assert worst_group_top5(scores, labels, groups) == pytest.approx(by_hand_worst(top5, groups)[0])
    assert all_metrics(scores, labels, "worst_group_top5", groups)["worst_group_top5"] == pytest.approx(
        by_hand_worst(top5, groups)[0])


def test_group_metrics_need_groups_and_valid_codes():
    scores, labels = np.eye(3), np.arange(3)
    with pytest.raises(ClipBenchError, match="only a zero-shot run of a task with 'group_by'"):
        main_metric("worst_group_top1")(scores, labels)  # what the linear probe would call
    with pytest.raises(ClipBenchError, match="only a zero-shot run"):
        all_metrics(scores, labels, "worst_group_top5")
    with pytest.raises(ClipBenchError, match=">= 0"):
        worst_group_top1(scores, labels, np.array([0, -1, 0]))
    with pytest.raises(ClipBenchError, match="one value per sample"):
        worst_group_top1(scores, labels, np.array([0, 1]))
    with pytest.raises(ClipBenchError, match="integers"):
        worst_group_top1(scores, labels, np.array([0.5, 1, 0]))


def test_large_group_codes_are_groups_like_small_ones():
    """A metadata column of ids (a camera location, a 64-bit hash) has huge codes: each is still one group, with
    the same sizes and accuracies as the codes numbered 0, 1, 2 in the same order, and no table up to the largest."""
    rng = np.random.default_rng(3)
    n, n_classes = 200, 8
    labels = rng.integers(0, n_classes, n)
    scores = rng.normal(size=(n, n_classes))
    scores[np.arange(n), labels] += 1.0
    small = rng.integers(0, 3, n)
    big = np.array([7, 2**40, 2**62])[small]
    hits = scores.argmax(axis=1) == labels
    want = grouped.group_accuracies(hits, small)
    got = grouped.group_accuracies(hits, big)
    np.testing.assert_array_equal(got.codes, [7, 2**40, 2**62])
    np.testing.assert_array_equal(got.sizes, want.sizes)
    np.testing.assert_array_equal(got.hits, want.hits)
    assert worst_group_top1(scores, labels, big) == pytest.approx(by_hand_worst(hits, big)[0])
    assert grouped.paired_worst_group_unsupported(hits, ~hits, big) is None
    np.testing.assert_array_equal(grouped.paired_worst_group_bootstrap(hits, ~hits, big, B=50),
                                  grouped.paired_worst_group_bootstrap(hits, ~hits, small, B=50))


def test_worst_group_interval_is_simultaneous_clopper_pearson_and_covers_the_value():
    hits = np.r_[np.ones(90, bool), np.zeros(10, bool), np.ones(30, bool), np.zeros(20, bool), False]
    groups = np.r_[np.zeros(100, int), np.full(50, 2), [7]]  # 90/100, 30/50, 0/1 (one image)
    table = grouped.group_accuracies(hits, groups)
    lo, hi = table.worst_interval()
    level = 1 - 0.05 / 3  # Bonferroni over the three groups that have images
    cp = [stats.clopper_pearson(k, n, level) for k, n in ((90, 100), (30, 50), (0, 1))]
    assert lo == pytest.approx(100 * min(float(c[0]) for c in cp)) and lo == 0.0
    assert hi == pytest.approx(100 * min(float(c[1]) for c in cp))
    assert lo <= table.worst <= hi and hi > 50  # one image says little about its group
    assert table.can_be_worst().tolist() == [False, True, True]


def test_worst_group_interval_coverage():
    """Over repeated test sets drawn from known group accuracies, the interval holds the true worst accuracy at
    least 95% of the time (it is conservative)."""
    rng = np.random.default_rng(2)
    truth, sizes = np.array([0.62, 0.6, 0.9]), np.array([40, 200, 15])
    groups = np.repeat(np.arange(3), sizes)
    covered = []
    for _ in range(400):
        hits = rng.random(groups.size) < truth[groups]
        lo, hi = grouped.group_accuracies(hits, groups).worst_interval()
        covered.append(lo <= 60.0 <= hi)
    assert np.mean(covered) >= 0.95


def brute_force(stat, strata: np.ndarray, B: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates of stat(indices) with each stratum's images resampled within it, image by image."""
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    return np.array([stat(np.concatenate([rng.choice(m, m.size) for m in members])) for _ in range(B)])


def test_macro_f1_bootstraps_match_resampling_the_images():
    rng = np.random.default_rng(3)
    n, n_classes = 600, 15
    labels = rng.integers(0, n_classes, n)
    a = np.where(rng.random(n) < 0.6, labels, rng.integers(0, n_classes + 2, n))
    b = np.where(rng.random(n) < 0.5, labels, rng.integers(0, n_classes, n))
    reps = grouped.bootstrap_macro_f1(labels, a, B=2000)
    ref = brute_force(lambda i: grouped.macro_f1_from_predictions(labels[i], a[i]), labels, 2000, rng)
    assert reps.mean() == pytest.approx(ref.mean(), abs=0.15) and reps.std() == pytest.approx(ref.std(), rel=0.1)
    paired = grouped.paired_macro_f1_bootstrap(labels, a, b, B=2000)
    ref = brute_force(lambda i: grouped.macro_f1_from_predictions(labels[i], b[i])
                      - grouped.macro_f1_from_predictions(labels[i], a[i]), labels, 2000, rng)
    assert paired.mean() == pytest.approx(ref.mean(), abs=0.2) and paired.std() == pytest.approx(ref.std(), rel=0.1)
    assert np.array_equal(reps, grouped.bootstrap_macro_f1(labels, a, B=2000))  # seed 0: reproducible
    assert np.all(grouped.paired_macro_f1_bootstrap(labels, a, a.copy()) == 0)  # one model against itself


def test_paired_worst_group_bootstrap_matches_resampling_and_refuses_tiny_groups():
    rng = np.random.default_rng(4)
    groups = np.repeat([0, 1, 3], [150, 120, 90])
    a = rng.random(groups.size) < np.array([0.8, 0.7, 0.0, 0.75])[groups]
    b = rng.random(groups.size) < np.array([0.7, 0.72, 0.0, 0.8])[groups]
    reps = grouped.paired_worst_group_bootstrap(a, b, groups, B=2000)
    ref = brute_force(lambda i: grouped.worst_group_accuracy(b[i], groups[i]) -
                      grouped.worst_group_accuracy(a[i], groups[i]), groups, 2000, rng)
    assert reps.mean() == pytest.approx(ref.mean(), abs=0.3) and reps.std() == pytest.approx(ref.std(), rel=0.1)
    assert grouped.paired_worst_group_unsupported(a, b, groups) is None

    tiny = np.r_[groups, 9, 9, 9, 9]  # a 4-image group, 2 of 4 right: it can be the worst
    why = grouped.paired_worst_group_unsupported(np.r_[a, 1, 1, 0, 0], np.r_[b, 1, 0, 1, 0], tiny)
    assert why is not None and "group 9 (4 images)" in why and "30 needed" in why
    low = np.repeat([0, 1, 9], [200, 200, 4])  # the worst group near 10%: a 4-image group with 4/4 cannot be it
    safe = [np.r_[rng.random(400) < np.repeat([0.1, 0.5], 200), True, True, True, True] for _ in range(2)]
    assert grouped.group_accuracies(safe[0], low).can_be_worst().tolist() == [True, False, False]
    assert grouped.paired_worst_group_unsupported(*safe, low) is None
    big = np.repeat([0, 1], [200, 200])  # all wrong in a group that sets the worst: no spread to bootstrap
    why = grouped.paired_worst_group_unsupported(np.r_[np.ones(200), np.zeros(200)].astype(bool),
                                                 rng.random(400) < 0.5, big)
    assert why is not None and "all wrong" in why


def test_stratified_cell_bootstrap_draws_each_strata_total():
    strata = np.array([0, 0, 0, 5, 5, 9])
    sizes = np.array([3, 1, 6, 2, 2, 7])
    seen = []
    stats.stratified_cell_bootstrap(strata, sizes, lambda c: seen.append(c) or c[:, 0], B=500)
    counts = np.concatenate(seen)
    assert counts.shape == (500, 6)
    assert np.all(counts[:, :3].sum(axis=1) == 10) and np.all(counts[:, 3:5].sum(axis=1) == 4)
    assert np.all(counts[:, 5] == 7)  # a stratum of one cell never changes
    assert counts[:, 0].mean() == pytest.approx(3, abs=0.2) and counts[:, 3].mean() == pytest.approx(2, abs=0.15)
