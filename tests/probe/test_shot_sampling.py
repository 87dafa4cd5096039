"""k-shot sampling, the within-shots C rule and the few-shot protocol."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from clip_bench.probe import ProbeConfig, one_shot_C, run_fewshot, sample_k_shot, shot_folds
from clip_bench.probe.fewshot import PRIOR_SCALE, cv_train_size, prior_C, transfer_C
from clip_bench.util.errors import ClipBenchError


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return 100.0 * float(np.mean(scores.argmax(axis=1) == targets))


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).integers(0, 7, 500)


def test_sampling_is_reproducible_and_per_class(labels):
    a = sample_k_shot(labels, 4, seed=1)
    b = sample_k_shot(labels, 4, seed=1)
    c = sample_k_shot(labels, 4, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(c))
    assert a.dtype == np.int64 and len(set(a.tolist())) == 28
    assert np.bincount(labels[a]).tolist() == [4] * 7
    assert labels[a].tolist() == sorted(labels[a].tolist())  # grouped by class, in label order


def test_sampling_is_nested_across_k_and_independent_of_other_classes(labels):
    k2, k8 = sample_k_shot(labels, 2, seed=5), sample_k_shot(labels, 8, seed=5)
    for c in range(7):
        assert k2[labels[k2] == c].tolist() == k8[labels[k8] == c][:2].tolist()
    # dropping class 6 entirely does not change what class 0 draws
    keep = np.flatnonzero(labels != 6)
    sub = keep[sample_k_shot(labels[keep], 3, seed=5)]
    full = sample_k_shot(labels, 3, seed=5)
    assert sub[labels[sub] == 0].tolist() == full[labels[full] == 0].tolist()


def test_fewer_than_k_raises_naming_the_class():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 3 + [3] * 10)
    with pytest.raises(ClipBenchError, match="class index 2 has 3 examples, fewer than k=4"):
        sample_k_shot(labels, 4, seed=0)
    idx = sample_k_shot(labels, 4, seed=0, allow_fewer=True)
    assert np.bincount(labels[idx]).tolist() == [4, 4, 3, 4]
    with pytest.raises(ClipBenchError, match="class index 4 has 0 examples"):
        sample_k_shot(labels, 2, seed=0, n_classes=5)
    with pytest.raises(ClipBenchError):
        sample_k_shot(labels, 0, seed=0)


def test_shot_folds_keep_every_class_on_both_sides(labels):
    for k in (2, 3, 4, 8):
        idx = sample_k_shot(labels, k, seed=0)
        folds = shot_folds(labels[idx], k)
        assert len(folds) == min(k, 4)
        seen = np.concatenate([va for _, va in folds])
        assert sorted(seen.tolist()) == list(range(len(idx)))  # each shot validated exactly once
        for tr, va in folds:
            assert np.intersect1d(tr, va).size == 0
            assert set(labels[idx][tr]) == set(labels[idx][va]) == set(range(7))
    with pytest.raises(ClipBenchError):
        shot_folds(labels[:5], 1)


def test_one_shot_C_is_scale_aware():
    X = np.random.default_rng(0).standard_normal((10, 16))
    assert one_shot_C(10 * X + 3) == pytest.approx(one_shot_C(X) / 100)


def test_prior_C_fixes_the_per_example_regularisation():
    """C = 100 / (n * mean squared spread): 1 / (C n) is the same fraction of the squared feature scale
    for any n and any feature scale; k = 1 uses it with n = the number of shots."""
    X = np.random.default_rng(0).standard_normal((40, 16))
    spread = float(np.mean(np.sum((X - X.mean(0)) ** 2, axis=1)))
    assert prior_C(X) == pytest.approx(PRIOR_SCALE / (40 * spread))
    assert prior_C(X, n=80) == pytest.approx(prior_C(X) / 2)
    assert prior_C(3 * X - 1) == pytest.approx(prior_C(X) / 9)
    assert one_shot_C(X[:10]) == pytest.approx(prior_C(X[:10], n=10))
    assert transfer_C(0.4, 30, 40) == pytest.approx(0.3)
    with pytest.raises(ClipBenchError):
        prior_C(np.ones((5, 3)))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(y))
    return X[perm[:1200]], y[perm[:1200]], X[perm[1200:]], y[perm[1200:]]


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2, 4])
def test_fewshot_protocol(digits, k):
    trX, trY, teX, teY = digits
    cfg = ProbeConfig(n_threads=1)
    res = run_fewshot(trX, trY, teX, teY, accuracy, k=k, seed=0, config=cfg)
    assert res["n_shots"] == 10 * k and res["k"] == k
    assert res["test_score"] > {1: 40, 2: 55, 4: 70}[k]
    assert ("CV" in res["C_rule"]) == (k >= 2)
    # no peeking: the test labels influence neither the shots nor C
    blind = run_fewshot(trX, trY, teX, np.zeros_like(teY), accuracy, k=k, seed=0, config=cfg)
    assert (blind["C"], blind["shots_sha1"]) == (res["C"], res["shots_sha1"])
    other = run_fewshot(trX, trY, teX, teY, accuracy, k=k, seed=1, config=cfg)
    assert other["shots_sha1"] != res["shots_sha1"]


def test_fewshot_fixed_one_shot_C(digits):
    trX, trY, teX, teY = digits
    res = run_fewshot(trX, trY, teX, teY, accuracy, k=1, seed=0, config=ProbeConfig(one_shot_C=0.5, n_threads=1))
    assert res["C"] == 0.5 and res["C_rule"] == "fixed C (k=1)"


def test_fewshot_C_does_not_collapse_to_the_grid_floor(digits):
    """Within-shot CV accuracy ties across most of the grid at k = 2; the previous rule sent those
    ties to C = 1e-6 (seeds 1-4 here). Ties now go to the prior C."""
    trX, trY, teX, teY = digits
    cfg = ProbeConfig(n_threads=1)
    for seed in range(1, 5):
        res = run_fewshot(trX, trY, teX, teY, accuracy, k=2, seed=seed, config=cfg)
        assert res["C"] > 1e-6 and res["C_at_grid_edge"] is None, (seed, res["C"])
        assert res["sweep_converged"] and res["converged"]
        assert 15 <= res["sweep_n_fits"] <= 2 * 33  # bounded and recorded (2 folds at k = 2)


def test_fewshot_C_is_the_tied_C_nearest_the_prior_transferred_to_all_shots(digits):
    """k = 4: 4 folds of 3 training shots per class. Among the C whose CV accuracy is within one SE of
    the best, the one nearest the prior (in log C) is picked, then scaled by 30 / 40 for the final fit."""
    from clip_bench.probe.c_search import proportion_se

    trX, trY, teX, teY = digits
    res = run_fewshot(trX, trY, teX, teY, accuracy, k=4, seed=0, config=ProbeConfig(n_threads=1))
    idx = sample_k_shot(trY, 4, 0)
    n_cv = cv_train_size(shot_folds(trY[idx], 4))
    assert n_cv == 30
    assert res["C_prior"] == pytest.approx(prior_C(trX[idx], n=30))
    assert res["C"] == pytest.approx(res["C_cv"] * 30 / 40)
    top = max(s for _, s in res["sweep"])
    tied = [c for c, s in res["sweep"] if s >= top - proportion_se(top, 40) - 1e-9]
    assert res["C_prior_refuted"] is False  # the prior's C ties the best on this draw
    assert res["C_cv"] == min(tied, key=lambda c: (abs(np.log10(c / res["C_prior"])), c))
    assert res["C_rule"].endswith("ties to the prior C")


def test_fewshot_C_ignores_a_prior_the_CV_refutes(digits):
    """A prior far below the data's scale (prior_scale 1e-10 puts it at the grid floor): on this draw
    the CV resolves the floor as worse than the best, so the prior ranks nothing; the tied C with the
    lowest CV log-loss is picked, and the row says so."""
    from clip_bench.probe.c_search import proportion_se

    trX, trY, teX, teY = digits
    res = run_fewshot(trX, trY, teX, teY, accuracy, k=4, seed=0, config=ProbeConfig(n_threads=1, prior_scale=1e-10))
    assert res["C_prior"] < 1e-12 and res["C_prior_refuted"] is True
    assert "refutes the prior" in res["C_rule"]
    top = max(s for _, s in res["sweep"])
    tied = {c for c, s in res["sweep"] if s >= top - proportion_se(top, 40) - 1e-9}
    assert min(res["sweep"])[1] < top - proportion_se(top, 40)  # the floor (the prior's C) is resolved as worse
    assert res["C_cv"] == min((v, c) for c, v in res["sweep_log_loss"] if c in tied)[1]
    assert res["C_cv"] > 1e-3


def test_fewer_than_k_names_the_cli_flag():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ClipBenchError, match="--allow-fewer"):
        sample_k_shot(labels, 4, seed=0)


@pytest.mark.parametrize("scale", [1e-160, 1e200])
def test_features_far_from_unit_scale_name_the_features_in_the_prior(scale):
    from clip_bench.probe.fewshot import prior_C

    X = np.random.default_rng(0).standard_normal((8, 4)) * scale
    with pytest.raises(ClipBenchError, match="spread .* check the features"):
        prior_C(X)
