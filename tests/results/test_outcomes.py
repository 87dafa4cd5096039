"""Per-sample outcomes beside the rows: every metric row has an interval and evidence that reproduces its value."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.config import EvalConfig
from clip_bench.results import outcomes
from clip_bench.results.rows import read_rows


@pytest.mark.slow
def test_every_row_has_an_interval_and_its_evidence(digits_runs):
    cfg, zs, lp, fs = digits_runs
    for row in [*zs, *lp, *fs]:
        assert row["ci_low"] <= row["value"] <= row["ci_high"], row["metric"]
        if row["extra"].get("aggregate"):
            continue
        out = outcomes.load_for_row(row, cfg.output_dir)  # checks the stored value against the row
        assert out is not None and out.n == 360 and out.recompute() == pytest.approx(row["value"], abs=1e-9)
        # the test labels and the test data's content: the same for every protocol's rows
        assert row["extra"]["data_fingerprint"] == zs[0]["extra"]["data_fingerprint"]
        assert out.sample_hash == outcomes.sample_hash(np.asarray(read_labels(cfg)), zs[0]["extra"]["data_fingerprint"])
    top1 = next(r for r in zs if r["metric"] == "top1")
    assert top1["ci_method"] == "wilson" and top1["outcomes"].startswith("outcomes/")
    assert (top1["ci_low"], top1["ci_high"]) == pytest.approx((88.35, 94.10), abs=0.01)  # 330/360 correct
    mpcr = next(r for r in zs if r["metric"] == "mean_per_class_recall")
    assert mpcr["ci_method"] == "bootstrap-stratified-1000" and mpcr["ci_high"] - mpcr["ci_low"] < 8
    assert lp[0]["ci_method"] == "wilson"
    mean = fs[-1]
    assert mean["extra"]["aggregate"] == "mean" and mean["ci_method"] == "seeds+wilson"
    stored = {r["outcomes"] for r in read_rows(cfg.output_dir) if r.get("outcomes")}
    assert stored == {p.relative_to(cfg.output_dir).as_posix() for p in (cfg.output_dir / "outcomes").glob("*.npz")}


def read_labels(cfg: EvalConfig) -> np.ndarray:
    from clip_bench.models.resolve import ModelHandle
    from clip_bench.protocols.runner import get_features
    from clip_bench.tasks.catalog import get_task

    return get_features(ModelHandle.of("tiny-clip-digits", device="cpu"), get_task("digits"), "test", cfg).labels


def test_storage_round_trip_is_compact(tmp_path):
    """ImageNet scale (50,000 images, 1,000 classes): a few KiB per accuracy row, tens of KiB with labels."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1000), 50)
    top1 = rng.random(50_000) < 0.76
    top5 = top1 | (rng.random(50_000) < 0.7)
    sizes = {}
    stored = {"top1": dict(top1=top1), "top5": dict(top5=top5), "mean_per_class_recall": dict(top1=top1, labels=labels),
              "mean_top1_top5": dict(top1=top1, top5=top5, labels=labels)}  # what outcomes_for keeps per metric
    for metric, arrays in stored.items():
        out = outcomes.Outcomes(metric, 50_000, outcomes.sample_hash(labels), 0.0, **arrays)
        out.value = out.recompute()
        back = outcomes.load(outcomes.save(out, tmp_path / f"{metric}.npz"))
        assert back.recompute() == out.value and back.sample_hash == out.sample_hash
        assert all(np.array_equal(getattr(back, k), v) for k, v in arrays.items())
        sizes[metric] = (tmp_path / f"{metric}.npz").stat().st_size
    assert sizes["top1"] < 8_000 and sizes["top5"] < 8_000 and sizes["mean_per_class_recall"] < 12_000, sizes


@pytest.mark.slow
def test_a_stale_outcomes_file_is_never_used(digits_runs, tmp_path):
    cfg, zs, _, _ = digits_runs
    row = dict(next(r for r in zs if r["metric"] == "top1"), value=50.0)  # another run of the same evaluation
    with pytest.raises(outcomes.OutcomeError, match="belongs to another run"):
        outcomes.load_for_row(row, cfg.output_dir)
