"""Intervals and paired tests for retrieval rows: coverage with correlated captions, outcomes that reproduce
the recalls, storage, the test-set hash, and paired comparisons (identical never significant)."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.metrics import intervals as stats
from clip_bench.metrics.retrieval import KS, RetrievalRanks, retrieval_ranks
from clip_bench.report.compare import compare_outcomes
from clip_bench.results import outcomes
from clip_bench.results.outcomes import retrieval_sample_hash

METRICS = [*(f"text_retrieval_recall@{k}" for k in KS), *(f"image_retrieval_recall@{k}" for k in KS), "mean_recall"]


def clustered_ranks(rng: np.random.Generator, n_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(caption→image, image ranks, caption ranks): 1-5 captions per image, all of an image's queries
    sharing its difficulty (so its captions hit or miss together, as real captions do)."""
    caps = rng.integers(1, 6, n_images)
    p = rng.beta(0.9, 0.6, n_images)  # per-image ease: P(rank = r) = p (1 - p)^r
    groups = np.repeat(np.arange(n_images), caps)
    log_q = np.log(np.clip(1 - p, 1e-12, 1 - 1e-12))
    r_img = np.floor(np.log(rng.random(n_images)) / log_q).astype(np.int64)
    r_cap = np.floor(np.log(rng.random(groups.size)) / log_q[groups]).astype(np.int64)
    return groups, np.minimum(r_img, 10), np.minimum(r_cap, 10)


def test_cluster_bootstrap_covers_text_to_image_recall_and_mean_recall():
    """1,000 synthetic test sets of 150 images: the 95% intervals (text→image recall, mean_recall and DataComp's
    mean_recall@1) cover the population value 93-97% of the time; a Wilson interval that treats the captions as
    independent does not (about 81%)."""
    groups, r_img, r_cap = clustered_ranks(np.random.default_rng(123), 400_000)  # the population
    truth_t2i = 100 * np.mean(r_cap < 5)
    truth_mean = np.mean([100 * np.mean(r_img < k) for k in KS] + [100 * np.mean(r_cap < k) for k in KS])
    truth_mean1 = (100 * np.mean(r_img < 1) + 100 * np.mean(r_cap < 1)) / 2
    rng = np.random.default_rng(0)
    reps, covered = 1000, {"t2i": 0, "mean": 0, "mean1": 0, "naive": 0}
    for rep in range(reps):  # B = 200 keeps this fast; rows use B = 1000
        groups, r_img, r_cap = clustered_ranks(rng, 150)
        t2i = outcomes.Outcomes("image_retrieval_recall@5", r_cap.size, "", 0.0, hits=r_cap < 5, groups=groups)
        lo, hi, method = t2i.interval(B=200, seed=rep)
        covered["t2i"] += lo <= truth_t2i <= hi
        mean = outcomes.Outcomes("mean_recall", 150 + r_cap.size, "", 0.0, groups=groups, ranks_i2t=r_img,
                                 ranks_t2i=r_cap)
        lo, hi, _ = mean.interval(B=200, seed=rep)
        covered["mean"] += lo <= truth_mean <= hi
        mean1 = outcomes.Outcomes("mean_recall@1", 150 + r_cap.size, "", 0.0, groups=groups, ranks_i2t=r_img,
                                  ranks_t2i=r_cap)
        lo, hi, _ = mean1.interval(B=200, seed=rep)
        covered["mean1"] += lo <= truth_mean1 <= hi
        lo, hi = stats.wilson(int(np.sum(r_cap < 5)), r_cap.size)
        covered["naive"] += 100 * lo <= truth_t2i <= 100 * hi
    assert method == "bootstrap-cluster-200"
    assert 0.93 <= covered["t2i"] / reps <= 0.97, covered
    assert 0.93 <= covered["mean"] / reps <= 0.97, covered
    assert 0.93 <= covered["mean1"] / reps <= 0.97, covered
    assert covered["naive"] / reps < 0.88, covered  # why the captions are resampled with their image


def test_cluster_bootstrap_matches_resampling_the_images():
    rng = np.random.default_rng(4)
    groups, _, r_cap = clustered_ranks(rng, 80)
    hits = r_cap < 1
    fast = 100 * stats.cluster_bootstrap_ratios(np.bincount(groups, weights=hits)[:, None],
                                                np.bincount(groups).astype(float)[:, None], B=4000, seed=1)[:, 0]
    members = [np.flatnonzero(groups == g) for g in range(80)]
    slow = []
    for _ in range(1500):
        drawn = np.concatenate([members[g] for g in rng.integers(0, 80, 80)])
        slow.append(100 * hits[drawn].mean())
    assert fast.mean() == pytest.approx(100 * hits.mean(), abs=0.3)
    assert np.std(fast) == pytest.approx(np.std(slow), rel=0.1)


def random_ranks(seed: int, n_img: int = 40) -> tuple[RetrievalRanks, np.ndarray]:
    rng = np.random.default_rng(seed)
    text_image = rng.permutation(np.repeat(np.arange(n_img), rng.integers(1, 5, n_img)))
    img = rng.standard_normal((n_img, 8)).astype(np.float32)
    txt = img[text_image] + rng.standard_normal((text_image.size, 8)).astype(np.float32)
    return retrieval_ranks(img, txt, text_image), text_image


def test_outcomes_reproduce_every_recall_and_round_trip(tmp_path):
    ranks, text_image = random_ranks(0)
    for metric, value in ranks.recalls().items():
        out = outcomes.retrieval_outcomes(metric, ranks, text_image, value, "h")
        assert out.recompute() == value, metric  # exactly: ranks are clipped at 10 >= every k
        back = outcomes.load(outcomes.save(out, tmp_path / "o.npz"))
        assert back.recompute() == value and back.n == out.n and back.interval() == out.interval()
        lo, hi, method = out.interval()
        assert lo <= value <= hi
        assert method == ("wilson" if metric.startswith("text_") else "bootstrap-cluster-1000")
    assert outcomes.retrieval_outcomes("mean_recall", ranks, text_image, 0, "h").n == 40 + text_image.size


def test_storage_at_coco_size(tmp_path):
    """COCO's 5,000 images and 25,000 captions: a few KiB per recall@k row, tens of KiB for mean_recall."""
    rng = np.random.default_rng(0)
    text_image = np.repeat(np.arange(5000), 5)
    ranks = RetrievalRanks(rng.geometric(0.45, 5000) - 1, rng.geometric(0.35, 25_000) - 1)
    sizes = {}
    for metric, value in ranks.recalls().items():
        path = outcomes.save(outcomes.retrieval_outcomes(metric, ranks, text_image, value, "h"), tmp_path / "o.npz")
        sizes[metric] = path.stat().st_size
    # measured: 1.2-1.8 KiB (image→text), 2.0-4.4 KiB (text→image), 13.5 KiB (mean_recall); 28 KiB in all
    assert max(sizes[f"text_retrieval_recall@{k}"] for k in KS) < 2_000, sizes
    # captions per image, not 25,000 indices
    assert max(sizes[f"image_retrieval_recall@{k}"] for k in KS) < 5_000, sizes
    assert sizes["mean_recall"] < 16_000 and sum(sizes.values()) < 32_000, sizes
    back = outcomes.load(tmp_path / "o.npz")
    assert np.array_equal(back.groups, text_image) and back.recompute() == ranks.recalls()["mean_recall"]


def test_degenerate_recall_gets_a_conservative_interval():
    """Every caption a hit: the bootstrap has no spread, so Wilson with the number of images as the sample size."""
    groups = np.repeat(np.arange(30), 5)
    out = outcomes.Outcomes("image_retrieval_recall@10", 150, "", 100.0, hits=np.ones(150, bool), groups=groups)
    lo, hi, method = out.interval()
    assert method == "wilson-images" and hi == 100 and lo == pytest.approx(100 * stats.wilson(30, 30)[0][()])


def test_sample_hash_covers_images_captions_and_pairing():
    ids, texts, owner = np.arange(3), ["a", "b", "c", "d"], np.array([0, 0, 1, 2])
    h = retrieval_sample_hash(ids, texts, owner)
    assert h == retrieval_sample_hash(ids.tolist(), list(texts), owner.astype(np.int32))
    assert h != retrieval_sample_hash(ids, ["a", "b", "c", "e"], owner)  # another caption
    assert h != retrieval_sample_hash(ids, texts, np.array([0, 1, 1, 2]))  # another pairing
    assert h != retrieval_sample_hash(np.array([0, 1, 5]), texts, owner)  # another image


def test_paired_tests_identical_and_known_difference():
    ranks, text_image = random_ranks(1, n_img=200)
    worse = RetrievalRanks(ranks.image_to_text + 3, ranks.text_to_image + 3)  # every query 3 places lower
    for metric, value in ranks.recalls().items():
        oa = outcomes.retrieval_outcomes(metric, ranks, text_image, value, "h")
        ob = outcomes.retrieval_outcomes(metric, worse, text_image, worse.recalls()[metric], "h")
        diff, lo, hi, test, p, reps, disc = compare_outcomes(oa, oa)
        assert diff == 0 and p == 1.0, metric
        diff, lo, hi, test, p, reps, disc = compare_outcomes(oa, ob, B=500)
        assert diff > 0 and lo <= diff <= hi, metric
        if metric.startswith("text_"):
            assert test == "McNemar exact" and disc[1] == 0
        else:
            assert test == "paired cluster bootstrap (500)" and reps.shape == (500,)
        if metric.endswith("@5") or metric == "mean_recall":
            assert p < 0.01 and lo > 0, (metric, p, lo)


def test_mean_recall_at_1_outcomes_interval_and_paired_test(tmp_path):
    """mean_recall@1 (DataComp's summary) is rebuilt from the stored ranks, resampled by image (its two recalls
    at 1 as the cluster sums), stored like mean_recall, and paired in compare by the same cluster bootstrap."""
    ranks, text_image = random_ranks(2, n_img=200)
    value = ranks.summary("mean_recall@1")
    by_hand = (100 * np.mean(ranks.image_to_text == 0) + 100 * np.mean(ranks.text_to_image == 0)) / 2
    assert value == pytest.approx(by_hand, abs=1e-12)
    out = outcomes.retrieval_outcomes("mean_recall@1", ranks, text_image, value, "h")
    assert out.recompute() == value and out.n == 200 + text_image.size
    sums, sizes = out.cluster_sums()
    assert sums.shape == (200, 2)
    np.testing.assert_array_equal(sums[:, 1], np.bincount(text_image, weights=ranks.text_to_image == 0, minlength=200))
    lo, hi, method = out.interval()
    assert method == "bootstrap-cluster-1000" and lo < value < hi
    back = outcomes.load(outcomes.save(out, tmp_path / "o.npz"))
    assert back.recompute() == value and back.interval() == (lo, hi, method)
    worse = RetrievalRanks(ranks.image_to_text + 1, ranks.text_to_image + 1)  # no query is first any more
    ob = outcomes.retrieval_outcomes("mean_recall@1", worse, text_image, worse.summary("mean_recall@1"), "h")
    diff, lo, hi, test, p, reps, _ = compare_outcomes(out, ob, B=500)
    assert diff == pytest.approx(value) and test == "paired cluster bootstrap (500)" and lo <= diff <= hi and p < 0.01
    assert compare_outcomes(out, out)[4] == 1.0
