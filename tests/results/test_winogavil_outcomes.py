"""WinoGAViL rows' outcomes: the bootstrap over instances covers the truth, outcomes reproduce and round-trip,
the instance-set hash, and the paired test."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.report.compare import compare_outcomes
from clip_bench.results import outcomes
from clip_bench.results.outcomes import winogavil_outcomes, winogavil_sample_hash

LEVELS = np.array([0.0, 1 / 5, 1 / 3, 1 / 2, 3 / 5, 1.0])  # Jaccard values of instances with 1-3 true candidates


def test_bootstrap_over_instances_covers_the_mean_jaccard():
    """1,000 synthetic sets of 200 instances: the 95% intervals cover the population mean 93-97% of the time."""
    p = np.array([0.3, 0.1, 0.15, 0.1, 0.05, 0.3])
    truth = 100 * float(LEVELS @ p)
    rng = np.random.default_rng(0)
    covered, reps = 0, 1000
    for rep in range(reps):
        jac = rng.choice(LEVELS, 200, p=p)
        lo, hi, method = outcomes.Outcomes("jaccard_all", 200, "", 0.0, scores=jac).interval(B=200, seed=rep)
        covered += lo <= truth <= hi
    assert method == "bootstrap-200" and 0.93 <= covered / reps <= 0.97, covered


def test_outcomes_reproduce_round_trip_and_count_their_group(tmp_path):
    rng = np.random.default_rng(1)
    n_cand = rng.choice([5, 6, 10, 12], 300)
    jac = rng.choice(LEVELS, 300)
    for metric, mask in (("jaccard_10_12", n_cand >= 10), ("jaccard_5_6", n_cand <= 6), ("jaccard_all", None)):
        value = 100 * jac[mask].mean() if mask is not None else 100 * jac.mean()
        out = winogavil_outcomes(metric, jac, n_cand, value, "h")
        assert out.n == (mask.sum() if mask is not None else 300) and out.recompute() == pytest.approx(value)
        back = outcomes.load(outcomes.save(out, tmp_path / "o.npz"))
        assert back.recompute() == out.recompute() and back.interval() == out.interval()
        lo, hi, method = out.interval()
        assert method == "bootstrap-1000" and lo < value < hi
    assert (tmp_path / "o.npz").stat().st_size < 4_000  # 300 instances


def test_every_instance_right_gets_a_conservative_interval():
    out = outcomes.Outcomes("jaccard_10_12", 40, "", 100.0, scores=np.ones(40))
    lo, hi, method = out.interval()
    assert method == "wilson-instances" and hi == 100 and 90 < lo < 100


def test_sample_hash_covers_cues_candidates_associations_and_data():
    cues, cands, assoc = ["7", "Eight"], [["a", "b"], ["c", "d", "e"]], [["a"], ["d", "e"]]
    h = winogavil_sample_hash(cues, cands, assoc, "fp")
    assert h == winogavil_sample_hash(list(cues), [list(c) for c in cands], [list(a) for a in assoc], "fp")
    assert h != winogavil_sample_hash(["7", "eight"], cands, assoc, "fp")
    assert h != winogavil_sample_hash(cues, [["a", "b"], ["c", "e", "d"]], assoc, "fp")
    assert h != winogavil_sample_hash(cues, cands, [["a"], ["d"]], "fp")
    assert h != winogavil_sample_hash(cues, cands, assoc, "other data")


def test_paired_test_identical_and_known_difference():
    rng = np.random.default_rng(2)
    n_cand = np.full(200, 12)
    a = rng.choice(LEVELS, 200)
    b = np.maximum(a - 0.2, 0)  # every instance worse or as good
    oa = winogavil_outcomes("jaccard_10_12", a, n_cand, 100 * a.mean(), "h")
    ob = winogavil_outcomes("jaccard_10_12", b, n_cand, 100 * b.mean(), "h")
    assert compare_outcomes(oa, oa)[4] == 1.0
    diff, lo, hi, test, p, reps, _ = compare_outcomes(oa, ob, B=500)
    assert test == "paired bootstrap (500)" and reps.shape == (500,) and 0 < lo <= diff <= hi and p < 0.01
    assert diff == pytest.approx(100 * (a - b).mean())
