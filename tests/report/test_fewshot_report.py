"""Few-shot curves from seed / aggregate rows, and shots-to-match interpolation in log2(k)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from clip_bench.results import fewshot
from clip_bench.results.rows import make_row


def _row(task, protocol, value, model="m", date="2024-01-01", **extra):
    return make_row(model=model, pretrained="p", task=task, protocol=protocol, metric="top1", value=value,
                    is_main=True, date=date, **extra)


def test_shots_of_parses_only_fewshot_protocols():
    assert fewshot.shots_of("fewshot_k16") == 16
    assert fewshot.shots_of("zeroshot") is None and fewshot.shots_of(None) is None


def test_curves_average_seeds_and_prefer_them_over_aggregates():
    rows = [
        _row("a", "fewshot_k1", 10.0, seed=0), _row("a", "fewshot_k1", 20.0, seed=1),
        _row("a", "fewshot_k1", 99.0, seed=1, date="2023-01-01"),  # older run of seed 1: superseded
        _row("a", "fewshot_k1", 50.0, aggregate="mean", std=1.0),  # ignored: seeds are present
        _row("b", "fewshot_k2", 40.0, aggregate="mean", std=2.5, n_seeds=3),  # aggregate only
        _row("a", "zeroshot", 30.0),
    ]
    c = fewshot.curves(rows).set_index(["task", "k"])
    assert c.loc[("a", 1), "mean"] == pytest.approx(15.0)
    assert c.loc[("a", 1), "std"] == pytest.approx(pd.Series([10.0, 20.0]).std())
    assert c.loc[("a", 1), "n_seeds"] == 2
    assert c.loc[("b", 2), "mean"] == pytest.approx(40.0) and c.loc[("b", 2), "std"] == pytest.approx(2.5)
    assert len(c) == 2


FS = fewshot


@pytest.mark.parametrize(
    ("acc", "target", "full", "shots", "status"),
    [
        ([10, 20, 30], 25, None, 2 ** 1.5, FS.INTERPOLATED),  # halfway between k=2 and k=4 in log2 space
        ([10, 20, 30], 20, None, 2.0, FS.INTERPOLATED),
        ([10, 20, 30], 5, None, 2 ** -0.5, FS.BELOW),  # below 1 shot, like the paper's sub-1 values
        ([10, 20, 30], 10, None, 1.0, FS.AT_MIN),
        ([10, 30, 20], 25, None, 2 ** 0.75, FS.INTERPOLATED),  # first crossing wins on a noisy curve
        # beyond the largest k: the full-data probe (here 64 examples per class, 50 %) is the next point
        ([10, 20, 30], 40, (64, 50.0), 2 ** 4.0, FS.TO_FULL),
        ([10, 20, 30], 40, None, math.nan, FS.NO_FULL),  # never extrapolated upwards
        ([10, 20, 30], 60, (64, 50.0), math.nan, FS.NOT_REACHED),
        ([10, 20, 30], 40, (3, 50.0), math.nan, FS.NO_FULL),  # a "full" set smaller than the largest k is ignored
    ],
)
def test_match_shots(acc, target, full, shots, status):
    got, why = fewshot.match_shots([1, 2, 4], acc, target, *(full or (None, None)))
    assert why == status
    assert (math.isnan(got) and math.isnan(shots)) or got == pytest.approx(shots)


def test_shots_to_match_uses_the_full_data_probe_and_keeps_summaries_apart():
    rows = []
    for task, zs in (("a", 25.0), ("b", 35.0), ("c", 50.0), ("e", 90.0)):
        rows.append(_row(task, "zeroshot", zs))
        rows.append(_row(task, "linear_probe", 70.0, n_refit=1600))
        for k, v in ((1, 10.0), (2, 20.0), (4, 30.0), (8, 40.0)):
            rows.append(_row(task, f"fewshot_k{k}", v, aggregate="mean", std=2.0))
            rows.append(_row(task, f"fewshot_k{k}", v, seed=0, k=k, n_train=10 * k))  # 10 classes
    rows.append(_row("d", "fewshot_k1", 10.0, aggregate="mean", std=1.0))  # lacks k>1 and zero-shot
    curve = fewshot.curves(rows)
    zs = fewshot.reference_lines(rows, "zeroshot")
    lp = fewshot.reference_lines(rows, "linear_probe")
    full = fewshot.full_data_shots(rows)
    assert full[("m", "p", "a")] == pytest.approx(160.0)  # 1600 training images / 10 classes
    match = fewshot.shots_to_match(curve, zs, lp, full).set_index("task")
    assert match.loc["a", "shots"] == pytest.approx(2 ** 1.5)
    assert match.loc["b", "shots"] == pytest.approx(2 ** 2.5)
    # 50 lies between 8-shot (40) and the full probe (70 at 160 per class): a third of the way in log2
    assert match.loc["c", "status"] == FS.TO_FULL
    assert match.loc["c", "shots"] == pytest.approx(2 ** (3 + (10 / 30) * (math.log2(160) - 3)))
    assert math.isnan(match.loc["e", "shots"]) and match.loc["e", "status"] == FS.NOT_REACHED
    summary = fewshot.match_summary(match.reset_index()).iloc[0]
    assert summary["median_shots"] == pytest.approx(2 ** 2.5) and summary["n_tasks"] == 3
    assert summary["n_not_reached"] == 1 and "task" not in summary.index
    avg, refs = fewshot.average_curve(curve, zs, lp)
    assert set(avg["n_tasks"]) == {4}  # task d is left out
    assert avg.set_index("k").loc[4, "mean"] == pytest.approx(30.0)
    assert avg.set_index("k").loc[4, "err_low"] == pytest.approx(math.sqrt(4 * 0.0) / 4)  # seed rows: one seed, std 0
    assert refs[("m", "p")]["zeroshot"] == pytest.approx((25 + 35 + 50 + 90) / 4)
    assert refs[("m", "p")]["linear_probe"] == pytest.approx(70.0)


def test_intervals_on_aggregate_rows_become_the_error_bars():
    rows = [_row("a", "fewshot_k1", v, seed=s) for s, v in enumerate((10.0, 20.0))]
    rows.append(_row("a", "fewshot_k1", 15.0, aggregate="mean", std=7.07))
    rows[-1]["ci_low"], rows[-1]["ci_high"] = 12.0, 19.0
    c = fewshot.curves(rows).iloc[0]
    assert c["mean"] == pytest.approx(15.0) and c["err_kind"] == fewshot.CI_BARS
    assert (c["err_low"], c["err_high"]) == pytest.approx((3.0, 4.0))
    del rows[-1]["ci_low"]
    c = fewshot.curves(rows).iloc[0]
    assert c["err_kind"] == fewshot.STD_BARS and c["err_low"] == pytest.approx(c["std"])


def test_seeds_measured_on_other_training_data_are_never_averaged_together():
    """Three seeds on one training set, then one seed after the training images changed: the curve is the
    latest measurement's seed alone (with that run's interval), not a mean of seeds from two data sets."""
    old = {"data_fingerprint": "t" * 64, "train_data_fingerprint": "a" * 64}
    new = {**old, "train_data_fingerprint": "b" * 64}
    rows = [_row("a", "fewshot_k1", v, seed=s, k=1, solver="torch", date="2024-01-01", **old)
            for s, v in enumerate((78.0, 82.0, 80.0))]
    rows.append(_row("a", "fewshot_k1", 80.0, aggregate="mean", std=2.0, seeds=3, k=1, date="2024-01-01", **old))
    rows[-1]["ci_low"], rows[-1]["ci_high"] = 77.0, 83.0
    rows.append(_row("a", "fewshot_k1", 8.0, seed=0, k=1, solver="torch", date="2024-02-01", **new))
    rows.append(_row("a", "fewshot_k1", 8.0, aggregate="mean", std=0.0, seeds=1, k=1, date="2024-02-01", **new))
    rows[-1]["ci_low"], rows[-1]["ci_high"] = 4.0, 13.0
    c = fewshot.curves(rows).iloc[0]
    assert (c["mean"], c["n_seeds"]) == (8.0, 1)
    assert (c["err_kind"], c["err_low"], c["err_high"]) == (fewshot.CI_BARS, 4.0, 5.0)
    # the same data again with one seed: seeds 1 and 2 of the first run belong to the same measurement,
    # and the one-seed run's interval is not that of their mean
    rows.append(_row("a", "fewshot_k1", 78.0, seed=0, k=1, solver="torch", date="2024-03-01", **old))
    rows.append(_row("a", "fewshot_k1", 78.0, aggregate="mean", std=0.0, seeds=1, k=1, date="2024-03-01", **old))
    rows[-1]["ci_low"], rows[-1]["ci_high"] = 70.0, 85.0
    c = fewshot.curves(rows).iloc[0]
    assert (c["mean"], c["n_seeds"], c["err_kind"]) == (80.0, 3, fewshot.STD_BARS)


def test_a_newer_aggregate_without_an_interval_never_takes_an_older_rows_interval():
    """The latest aggregate row is taken whole: its missing interval is not filled in from an older run's row."""
    old = _row("a", "fewshot_k1", 15.0, date="2024-01-01", aggregate="mean", std=7.07)
    old["ci_low"], old["ci_high"] = 12.0, 19.0
    new = _row("a", "fewshot_k1", 30.0, date="2024-02-01", aggregate="mean", std=1.0)
    c = fewshot.curves([old, new]).iloc[0]
    assert c["mean"] == pytest.approx(30.0)
    assert c["err_kind"] == fewshot.STD_BARS and (c["err_low"], c["err_high"]) == pytest.approx((1.0, 1.0))
