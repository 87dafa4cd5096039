"""WinoGAViL's Jaccard maths against hand-worked instances and scikit-learn (DataComp's jaccard_score)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from clip_bench.metrics.winogavil import group_mask, instance_jaccards, jaccard_means, pick_top, true_mask
from clip_bench.util.errors import ClipBenchError


def test_true_candidates_are_those_named_in_the_associations():
    assert true_mask(["bison", "beard", "flea", "shave"], ["bison", "shave", "not-shown"]).tolist() == [
        True, False, False, True]


def test_pick_top_and_its_tie_rule():
    assert pick_top(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist() == [False, True, False, True]
    # equal scores: the later candidate first, as np.argsort sorts DataComp's float16 similarities
    scores = np.array([0.5, 0.3, 0.5, 0.5], dtype=np.float16)
    assert pick_top(scores, 2).tolist() == [False, False, True, True]
    assert pick_top(scores, 2).tolist() == np.isin(np.arange(4), np.argsort(scores)[-2:]).tolist()
    with pytest.raises(ClipBenchError, match="cannot pick 0 of 4"):
        pick_top(scores, 0)


def test_jaccard_by_hand_and_against_scikit_learn():
    rng = np.random.default_rng(0)
    scores, truths, by_hand = [], [], []
    for size in (5, 6, 10, 12) * 10:
        s = rng.standard_normal(size)
        t = np.zeros(size, bool)
        t[rng.choice(size, rng.integers(1, 4), replace=False)] = True
        picked = set(np.argsort(-s)[: t.sum()].tolist())
        true = set(np.flatnonzero(t).tolist())
        by_hand.append(len(picked & true) / len(picked | true))
        scores.append(s)
        truths.append(t)
    jac = instance_jaccards(scores, truths)
    np.testing.assert_allclose(jac, by_hand, atol=0)
    for s, t, j in zip(scores, truths, jac):
        assert j == pytest.approx(jaccard_score(t, pick_top(s, int(t.sum()))))
    n = np.array([len(s) for s in scores])
    means = jaccard_means(jac, n)
    assert list(means) == ["jaccard_10_12", "jaccard_5_6", "jaccard_all"]
    assert means["jaccard_10_12"] == pytest.approx(100 * np.mean(np.asarray(by_hand)[n >= 10]))
    assert means["jaccard_5_6"] == pytest.approx(100 * np.mean(np.asarray(by_hand)[n <= 6]))
    assert jaccard_means(jac[n <= 6], n[n <= 6]).keys() == {"jaccard_5_6", "jaccard_all"}  # an empty group: no row


def test_groups_follow_datacomp():
    n = np.array([5, 6, 10, 12, 8])
    assert group_mask("jaccard_10_12", n).tolist() == [False, False, True, True, False]
    assert group_mask("jaccard_5_6", n).tolist() == [True, True, False, False, False]
    assert group_mask("jaccard_all", n).all()
    with pytest.raises(ClipBenchError, match="not a WinoGAViL metric"):
        group_mask("top1", n)


def test_bad_scores_are_errors():
    with pytest.raises(ClipBenchError, match="NaN or infinite"):
        instance_jaccards([np.array([0.1, np.nan])], [np.array([True, False])])
    with pytest.raises(ClipBenchError, match="2 candidate scores but 3 candidates"):
        instance_jaccards([np.array([0.1, 0.2])], [np.array([True, False, False])])
