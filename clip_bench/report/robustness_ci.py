"""95% intervals on effective robustness: the model's test-set noise plus the baseline fit's uncertainty.

ER = shift accuracy - baseline(ImageNet accuracy). Each bootstrap replicate (B = 1000, seed 0)

1. resamples the testbed models that enter the baseline fit, with replacement, and refits the line(s)
   in logit space (each piece of a piecewise fit within its own range), as imagenet-testbed
   bootstraps its fits (``num_bootstrap_samples=1000``);
2. redraws the model's own ImageNet accuracy and shift accuracy from their test sets: the accuracy
   of a resample of the n test images is Binomial(n, p)/n (n from the rows; skipped when unknown);
3. takes shift accuracy* - baseline*(ImageNet accuracy*).

The interval is the 2.5-97.5 percentile of the replicates. The ``mean`` line averages the per-shift
replicates (same seed, so the shared ImageNet draw is shared); the ``average`` line redraws each
shift's accuracy and uses the bootstrap of the average baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clip_bench.metrics import intervals as stats
from clip_bench.report.baseline import baseline_pieces, fit_models, inv_logit, logit
from clip_bench.report.reference import testbed_shifts, testbed_top1
from clip_bench.results.rows import labelled, shown_name

#: Columns this module adds to the effective-robustness table.
CI_COLUMNS = ["er_ci_low", "er_ci_high"]


def _fit_pieces(x: pd.Series, y: pd.Series, x_min: float, split_at: float | None, rng: np.random.Generator,
                B: int) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """Bootstrap (lo, hi, slopes (B,), intercepts (B,)) of each piece of a testbed baseline fit."""
    pieces = []
    for lo, hi, part in baseline_pieces(x, y, x_min, split_at):
        lx, ly = logit(part["x"]), logit(part["y"])
        w = stats.resample_weights(rng, len(part), B).astype(float)
        sw = w.sum(axis=1)
        mx, my = (w @ lx) / sw, (w @ ly) / sw
        sxx = (w @ (lx * lx)) / sw - mx * mx
        sxy = (w @ (lx * ly)) / sw - mx * my
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(sxx > 1e-12, sxy / sxx, np.nan)  # a resample of one repeated model has no line
        pieces.append((lo, hi, slope, my - slope * mx))
    return pieces


def _predict(pieces: list[tuple[float, float, np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Baseline replicates (percent) at replicate ImageNet accuracies `x` (B,)."""
    out = np.full(x.shape, np.nan)
    z = logit(x)
    for i, (lo, hi, slope, intercept) in enumerate(pieces):
        sel = (x >= (-np.inf if i == 0 else lo)) & (x < (np.inf if i == len(pieces) - 1 else hi))
        out[sel] = inv_logit(slope[sel] * z[sel] + intercept[sel])
    return out


def _draw(rng: np.random.Generator, value: float, n: Any, B: int) -> np.ndarray:
    """Replicates of an accuracy (percent) from its n test samples; constant when n is unknown."""
    if n is None or not np.isfinite(float(n)) or int(n) <= 0:
        return np.full(B, float(value))
    n = int(n)
    return 100.0 * rng.binomial(n, min(max(float(value) / 100.0, 0.0), 1.0), size=B) / n


def _sample_sizes(rows: list[dict[str, Any]]) -> dict[tuple, Any]:
    """n of the latest main row per (model, pretrained as shown, protocol, task, subset)."""
    out: dict[tuple, Any] = {}
    for r in sorted((r for r in labelled(rows) if r.get("is_main")), key=lambda r: str(r.get("date") or "")):
        key = (*shown_name(r), r.get("protocol"), r.get("task"), r.get("subset") or "")
        out[key] = r.get("n")
    return out


def er_replicates(er: pd.DataFrame, rows: list[dict[str, Any]], B: int = stats.DEFAULT_B,
                  seed: int = stats.DEFAULT_SEED) -> list[np.ndarray | None]:
    """Bootstrap replicates of each line's effective robustness (None where there is none)."""
    cfg = testbed_shifts()
    models = fit_models()
    sizes = _sample_sizes(rows)
    reps: list[np.ndarray | None] = [None] * len(er)
    per_model: dict[tuple, list[np.ndarray]] = {}
    for i, line in enumerate(er.to_dict("records")):
        key = (line["model"], line["pretrained"] or "", line["protocol"])
        shift = line["shift"]
        if shift not in cfg["shifts"]:
            continue
        spec = cfg["shifts"][shift]
        primary = line["x_axis"] == spec["x"]
        fit_spec = spec if primary else spec["fallback"]
        rng = np.random.default_rng(seed)
        pieces = _fit_pieces(models[fit_spec["x"]], models[spec["y"]], fit_spec["x_min"],
                             spec.get("split_at") if primary else None, rng, B)
        x_subset = spec.get("subset", "") if primary else ""
        x_star = _draw(rng, line["x"], sizes.get((*key, "imagenet", x_subset)), B)
        acc_star = _draw(rng, line["accuracy"], sizes.get((*key, shift, "")), B)
        reps[i] = acc_star - _predict(pieces, x_star)
        per_model.setdefault(key, []).append(reps[i])
    for i, line in enumerate(er.to_dict("records")):
        key = (line["model"], line["pretrained"] or "", line["protocol"])
        if line["shift"] == "mean" and per_model.get(key):
            reps[i] = np.mean(np.stack(per_model[key]), axis=0)
        elif line["shift"] == "average":
            rng = np.random.default_rng(seed)
            names = list(cfg["shifts"])
            mean_y = testbed_top1()[[cfg["shifts"][s]["y"] for s in names]].mean(axis=1, skipna=False)
            avg = cfg["average"]
            pieces = _fit_pieces(models[avg["x"]], mean_y.loc[models.index], avg["x_min"], None, rng, B)
            x_star = _draw(rng, line["x"], sizes.get((*key, "imagenet", "")), B)
            shift_acc = [line_acc for line_acc in er.to_dict("records")
                         if (line_acc["model"], line_acc["pretrained"] or "", line_acc["protocol"]) == key
                         and line_acc["shift"] in cfg["shifts"]]
            acc_star = np.mean([_draw(rng, s["accuracy"], sizes.get((*key, s["shift"], "")), B) for s in shift_acc],
                               axis=0)
            reps[i] = acc_star - _predict(pieces, x_star)
    return reps


def add_er_intervals(er: pd.DataFrame, rows: list[dict[str, Any]], B: int = stats.DEFAULT_B,
                     seed: int = stats.DEFAULT_SEED) -> pd.DataFrame:
    """`er` (from ``effective_robustness``) with ``er_ci_low`` / ``er_ci_high`` columns (percent points)."""
    er = er.copy()
    if er.empty:
        for col in CI_COLUMNS:
            er[col] = pd.Series(dtype=float)
        return er
    bounds = [stats.percentile_interval(r) if r is not None else (np.nan, np.nan)
              for r in er_replicates(er, rows, B, seed)]
    er["er_ci_low"] = [b[0] for b in bounds]
    er["er_ci_high"] = [b[1] for b in bounds]
    return er
