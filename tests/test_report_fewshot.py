"""Few-shot curves from seed / aggregate rows, and shots-to-match interpolation in log2(k)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from clip_bench.report import fewshot
from clip_bench.results import make_row


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


@pytest.mark.parametrize(
    ("acc", "target", "shots", "status"),
    [
        ([10, 20, 30], 25, 2 ** 1.5, "interpolated"),  # halfway between k=2 and k=4 in log2 space
        ([10, 20, 30], 20, 2.0, "interpolated"),
        ([10, 20, 30], 5, 2 ** -0.5, "extrapolated"),  # below 1 shot, like the paper's 0.9
        ([10, 20, 30], 40, 8.0, "extrapolated"),
        ([30, 20, 10], 50, math.nan, "not reached"),
        ([10, 30, 20], 25, 2 ** 0.75, "interpolated"),  # first crossing wins on a noisy curve
    ],
)
def test_match_shots(acc, target, shots, status):
    got, why = fewshot.match_shots([1, 2, 4], acc, target)
    assert why == status
    assert (math.isnan(got) and math.isnan(shots)) or got == pytest.approx(shots)


def test_shots_to_match_summary_and_average_curve():
    rows = []
    for task, zs in (("a", 25.0), ("b", 35.0), ("c", 50.0)):
        rows.append(_row(task, "zeroshot", zs))
        for k, v in ((1, 10.0), (2, 20.0), (4, 30.0), (8, 40.0)):
            rows.append(_row(task, f"fewshot_k{k}", v, aggregate="mean", std=2.0))
    rows.append(_row("d", "fewshot_k1", 10.0, aggregate="mean", std=1.0))  # lacks k>1 and zero-shot
    curve = fewshot.curves(rows)
    zs = fewshot.reference_lines(rows, "zeroshot")
    match = fewshot.shots_to_match(curve, zs).set_index("task")
    assert match.loc["a", "shots"] == pytest.approx(2 ** 1.5)
    assert match.loc["b", "shots"] == pytest.approx(2 ** 2.5)
    assert match.loc["c", "status"] == "extrapolated" and match.loc["c", "shots"] == pytest.approx(16.0)
    summary = fewshot.with_summary(match.reset_index()).set_index("task")
    assert summary.loc["median", "shots"] == pytest.approx(2 ** 2.5)
    assert summary.loc["mean", "shots"] == pytest.approx((2 ** 1.5 + 2 ** 2.5 + 16) / 3)
    avg, avg_zs = fewshot.average_curve(curve, zs)
    assert set(avg["n_tasks"]) == {3}  # task d is left out
    assert avg.set_index("k").loc[4, "mean"] == pytest.approx(30.0)
    assert avg.set_index("k").loc[4, "std"] == pytest.approx(math.sqrt(3 * 4.0) / 3)
    assert avg_zs[("m", "p")][0] == pytest.approx((25 + 35 + 50) / 3)
