"""Effective robustness: the testbed-style baseline fits and the per-shift ER of known models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clip_bench.report import reference
from clip_bench.report.baseline import BaselineFit, Line, fit_baseline, logit, shift_fits
from clip_bench.report.robustness import effective_robustness
from clip_bench.results.rows import make_row

# Rows of the shipped imagenet_testbed_logit_fits_DERIVED.csv for each of our shifts.
DERIVED_FIT = {
    "imagenetv2": "ImageNetV2 (matched-freq)",
    "imagenet_sketch": "ImageNet-Sketch",
    "objectnet": "ObjectNet",
    "imagenet_r": "ImageNet-R",
    "imagenet_a": "ImageNet-A (x<91.86 piece)",
}
FALLBACK_FIT = {"objectnet": "[val-x] ObjectNet", "imagenet_r": "[val-x] ImageNet-R",
                "imagenet_a": "[val-x] ImageNet-A"}
TESTBED_COL = {
    "imagenetv2": "imagenetv2-matched-frequency-format-val", "imagenet_sketch": "imagenet-sketch",
    "objectnet": "objectnet-1.0-beta", "imagenet_r": "imagenet-r", "imagenet_a": "imagenet-a",
}
SUBSET_COL = {"objectnet": "val-on-objectnet-classes", "imagenet_r": "val-on-imagenet-r-classes",
              "imagenet_a": "val-on-imagenet-a-classes"}


def _derived(name: str) -> pd.Series:
    d = reference.testbed_derived_fits().set_index("fit")
    return d.loc[name]


def _rows_for_testbed_model(name: str, with_subsets: bool = True) -> list[dict]:
    """Our result rows carrying the testbed's own numbers for `name`."""
    t = reference.testbed_top1().loc[name]
    common = dict(model=name, pretrained="testbed", protocol="zeroshot", metric="top1", is_main=True)
    rows = [make_row(task="imagenet", value=float(t["val"]), **common)]
    rows += [make_row(task=s, value=float(t[c]), **common) for s, c in TESTBED_COL.items()]
    if with_subsets:
        rows += [make_row(task="imagenet", subset=s, value=float(t[c]), **common) for s, c in SUBSET_COL.items()]
    return rows


def test_fits_reproduce_the_derived_coefficients():
    fits = shift_fits()
    for shift, fit_name in DERIVED_FIT.items():
        d = _derived(fit_name)
        piece = fits[shift].pieces[0]
        assert fits[shift].x_col == d["x_col"]
        assert piece.n == d["n_models"], shift
        assert piece.slope == pytest.approx(d["slope"], abs=2e-3), shift
        assert piece.intercept == pytest.approx(d["intercept"], abs=2e-3), shift
    upper = _derived("ImageNet-A (x>91.86 piece)")
    assert len(fits["imagenet_a"].pieces) == 2
    assert fits["imagenet_a"].pieces[1].n == upper["n_models"]
    assert fits["imagenet_a"].pieces[1].slope == pytest.approx(upper["slope"], abs=2e-3)
    for shift, fit_name in FALLBACK_FIT.items():
        fb = shift_fits(fallback=True)[shift]
        assert fb.x_col == "val" and len(fb.pieces) == 1
        assert fb.pieces[0].slope == pytest.approx(_derived(fit_name)["slope"], abs=2e-3)


@pytest.mark.parametrize("model", ["vit_b_32_clip_zeroshot", "resnet50_clip_zeroshot"])
def test_testbed_clip_rows_match_derived_effective_robustness(model):
    er, notes = effective_robustness(_rows_for_testbed_model(model))
    assert notes == []
    per_shift = er.set_index("shift")["effective_robustness"]
    for shift, fit_name in DERIVED_FIT.items():
        expected = _derived(fit_name)[f"{model}_eff_rob"]
        assert abs(per_shift[shift] - expected) < 1.0, (shift, per_shift[shift], expected)
    assert per_shift["mean"] == pytest.approx(np.mean([per_shift[s] for s in DERIVED_FIT]))
    assert er.set_index("shift").loc["mean", "n_shifts"] == 5
    # CLIP is far above the standard-model trend on every shift: the headline of Taori et al.
    assert (per_shift[list(DERIVED_FIT)] > 4).all()


def test_missing_subset_rows_fall_back_to_full_imagenet_and_say_so():
    er, notes = effective_robustness(_rows_for_testbed_model("vit_b_32_clip_zeroshot", with_subsets=False))
    rows = er.set_index("shift")
    assert rows.loc["imagenet_r", "x_axis"] == "val"
    assert rows.loc["imagenet_r", "effective_robustness"] == pytest.approx(
        _derived("[val-x] ImageNet-R")["vit_b_32_clip_zeroshot_eff_rob"], abs=1.0)
    assert len(notes) == 3 and all("full-ImageNet baseline" in n for n in notes)


def test_shift_rows_without_imagenet_are_reported_not_fatal():
    rows = [r for r in _rows_for_testbed_model("vit_b_32_clip_zeroshot") if r["task"] != "imagenet"]
    er, notes = effective_robustness(rows)
    assert er.empty
    assert any("no ImageNet result" in n for n in notes)


def test_piecewise_prediction_uses_the_piece_of_x():
    fit = BaselineFit("a", "x", "y", 75, (Line(1.0, 0.0, 5, 1.0, 75, 90), Line(2.0, -1.0, 5, 1.0, 90, 100)))
    below, above = fit.predict([80.0, 95.0])
    assert below == pytest.approx(80.0)  # identity piece
    z = 2.0 * logit(95.0) - 1.0
    assert above == pytest.approx(100 / (1 + np.exp(-z)))


def test_fit_baseline_is_ols_in_logit_space_and_drops_saturated_points():
    x = pd.Series([60.0, 70.0, 80.0, 90.0, 100.0])
    y = pd.Series(100 / (1 + np.exp(-(0.5 * logit(x) - 1.0))))
    fit = fit_baseline(x, y, x_min=55)
    assert fit.n == 4  # the 100 % model has no finite logit
    assert fit.pieces[0].slope == pytest.approx(0.5) and fit.pieces[0].intercept == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        fit_baseline(x, y, x_min=95)
