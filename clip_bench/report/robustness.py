"""Effective robustness (Taori et al. 2020): shift accuracy above the testbed's baseline trend.

The baseline is fitted as imagenet-testbed does (its `plotting/plotter.py`; settings in
``assets/reference/testbed_shifts.yaml``): an OLS line in logit space on both axes, over STANDARD
models, per shift with its own x column and threshold, piecewise for ImageNet-A.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from clip_bench.report.reference import testbed_shifts, testbed_top1
from clip_bench.results.rows import display_name, labelled
from clip_bench.results.tables import KEY, main_values

#: Protocols whose ImageNet + shift rows get an effective robustness.
PROTOCOLS = ("zeroshot", "linear_probe")
ER_COLUMNS = [
    *KEY, "protocol", "shift", "label", "x_axis", "x", "accuracy", "baseline", "effective_robustness",
    "in_fit_range", "n_shifts", "x_ci_low", "x_ci_high", "acc_ci_low", "acc_ci_high",
]
_EPS = 1e-4


def logit(pct: Any) -> np.ndarray:
    """logit(acc/100), clipped so 0% and 100% stay finite."""
    p = np.clip(np.asarray(pct, dtype=float) / 100.0, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def inv_logit(z: Any) -> np.ndarray:
    """Inverse of :func:`logit`, in percent."""
    return 100.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


@dataclass(frozen=True)
class Line:
    """One OLS piece in logit space: logit(y) = slope·logit(x) + intercept, for x in [x_lo, x_hi)."""

    slope: float
    intercept: float
    n: int
    r: float
    x_lo: float
    x_hi: float


@dataclass(frozen=True)
class BaselineFit:
    """The testbed's baseline for one shift: one line, or two pieces split at ``split_at``."""

    name: str
    x_col: str
    y_col: str
    x_min: float
    pieces: tuple[Line, ...]

    def predict(self, x: Any) -> np.ndarray:
        """Predicted shift accuracy (percent) at ImageNet accuracy `x` (percent)."""
        x = np.asarray(x, dtype=float)
        z = logit(x)
        out = np.full(x.shape, np.nan)
        for i, piece in enumerate(self.pieces):
            lo = -np.inf if i == 0 else piece.x_lo
            hi = np.inf if i == len(self.pieces) - 1 else piece.x_hi
            sel = (x >= lo) & (x < hi)
            out[sel] = inv_logit(piece.slope * z[sel] + piece.intercept)
        return out

    @property
    def n(self) -> int:
        return sum(p.n for p in self.pieces)


def fit_models(testbed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Testbed rows eligible for the fit: type STANDARD, name without aws/batch64/subsample."""
    testbed = testbed_top1() if testbed is None else testbed
    cfg = testbed_shifts()
    names = testbed.index.to_series()
    excluded = np.zeros(len(testbed), dtype=bool)
    for s in cfg["exclude_name_substrings"]:
        excluded |= names.str.contains(s, regex=False).to_numpy()
    return testbed[(testbed["model_type"] == cfg["fit_model_type"]).to_numpy() & ~excluded]


def baseline_pieces(
    x: pd.Series, y: pd.Series, x_min: float, split_at: float | None,
) -> list[tuple[float, float, pd.DataFrame]]:
    """(lo, hi, points) of each piece of a baseline fit: points with x ≥ `x_min`, none at 0 % or 100 %."""
    d = pd.DataFrame({"x": x, "y": y}).dropna()
    d = d[(d["x"] >= x_min) & (d["x"] > 0) & (d["x"] < 100) & (d["y"] > 0) & (d["y"] < 100)]
    bounds = [x_min, split_at, 100.0] if split_at is not None else [x_min, 100.0]
    return [(lo, hi, d[(d["x"] >= lo) & (d["x"] < hi)]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def fit_baseline(
    x: pd.Series, y: pd.Series, x_min: float, split_at: float | None = None, name: str = "",
    x_col: str = "", y_col: str = "",
) -> BaselineFit:
    """OLS in logit space over points with x ≥ `x_min`; models at 0 % or 100 % are dropped, as there."""
    pieces = []
    for lo, hi, part in baseline_pieces(x, y, x_min, split_at):
        if len(part) < 3:
            raise ValueError(f"baseline {name}: only {len(part)} testbed models in [{lo}, {hi})")
        res = stats.linregress(logit(part["x"]), logit(part["y"]))
        pieces.append(Line(float(res.slope), float(res.intercept), len(part), float(res.rvalue), lo, hi))
    return BaselineFit(name, x_col, y_col, float(x_min), tuple(pieces))


def shift_fits(fallback: bool = False) -> dict[str, BaselineFit]:
    """Baselines per shift; `fallback` gives the full-ImageNet-x variants for shifts that have one."""
    cfg, models = testbed_shifts(), fit_models()
    fits = {}
    for shift, s in cfg["shifts"].items():
        spec = s.get("fallback") if fallback else s
        if spec is None:
            continue
        split = None if fallback else s.get("split_at")
        fits[shift] = fit_baseline(models[spec["x"]], models[s["y"]], spec["x_min"], split, shift, spec["x"], s["y"])
    return fits


def average_fit(shifts: list[str]) -> tuple[BaselineFit, pd.Series]:
    """Baseline of mean accuracy over `shifts` against full ImageNet, and each testbed model's mean."""
    cfg = testbed_shifts()
    cols = [cfg["shifts"][s]["y"] for s in shifts]
    testbed = testbed_top1()
    mean_y = testbed[cols].mean(axis=1, skipna=False)
    models = fit_models()
    avg = cfg["average"]
    fit = fit_baseline(models[avg["x"]], mean_y.loc[models.index], avg["x_min"], None, "average", avg["x"], "mean")
    return fit, mean_y


def _mean_error(values: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Lower and upper 95 % errors of a mean of independent values (value, low, high): sqrt(Σ e²)/n; NaN if any
    lacks one."""
    lo = np.sqrt(sum((v - a) ** 2 for v, a, _ in values)) / len(values)
    hi = np.sqrt(sum((b - v) ** 2 for v, _, b in values)) / len(values)
    return float(lo), float(hi)


def effective_robustness(rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """Per (model, protocol) and shift: x, shift accuracy, baseline prediction and their difference.

    Adds a ``mean`` line (mean of the per-shift values, ``n_shifts`` of them) and, when a model has
    every shift, an ``average`` line (mean shift accuracy against the average baseline, as in the
    CLIP paper's averaged panel). Returns the table and notes on what was skipped or substituted.
    """
    cfg = testbed_shifts()
    shift_names = list(cfg["shifts"])
    fits, fallbacks = shift_fits(), shift_fits(fallback=True)
    avg_fit, _ = average_fit(shift_names)
    rows = labelled(rows)
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for protocol in PROTOCOLS:
        values = main_values(rows, protocol)
        if values.empty:
            continue
        lookup = {(r["model"], r["pretrained"], r["task"], r["subset"]): r["value"] for r in values.to_dict("records")}
        cis = {(r["model"], r["pretrained"], r["task"], r["subset"]): (r["ci_low"], r["ci_high"])
               for r in values.to_dict("records")}
        for model, pretrained in values[KEY].drop_duplicates().itertuples(index=False):
            name = display_name(model, pretrained)
            imagenet = lookup.get((model, pretrained, "imagenet", ""))
            found = [s for s in shift_names if (model, pretrained, s, "") in lookup]
            if not found:
                continue
            if imagenet is None:
                notes.append(f"effective robustness: {name} {protocol} has shift results but no ImageNet result")
                continue
            model_rows = []
            for shift in found:
                spec, fit = cfg["shifts"][shift], fits[shift]
                x, x_key = imagenet, (model, pretrained, "imagenet", "")
                if spec.get("subset"):
                    x_key = (model, pretrained, "imagenet", spec["subset"])
                    x = lookup.get(x_key)
                    if x is None:
                        fit, x, x_key = fallbacks[shift], imagenet, (model, pretrained, "imagenet", "")
                        notes.append(
                            f"effective robustness: {name} {protocol} has no ImageNet accuracy on the "
                            f"{spec['label']} classes (task imagenet, subset {spec['subset']}); used the "
                            f"full-ImageNet baseline for {spec['label']} instead"
                        )
                acc = lookup[(model, pretrained, shift, "")]
                pred = float(fit.predict(x))
                (x_lo, x_hi), (a_lo, a_hi) = cis[x_key], cis[(model, pretrained, shift, "")]
                model_rows.append({
                    "model": model, "pretrained": pretrained, "protocol": protocol, "shift": shift,
                    "label": spec["label"], "x_axis": fit.x_col, "x": x, "accuracy": acc, "baseline": pred,
                    "effective_robustness": acc - pred, "in_fit_range": bool(x >= fit.x_min), "n_shifts": 1,
                    "x_ci_low": x_lo, "x_ci_high": x_hi, "acc_ci_low": a_lo, "acc_ci_high": a_hi,
                })
            ers = [r["effective_robustness"] for r in model_rows]
            model_rows.append({
                "model": model, "pretrained": pretrained, "protocol": protocol, "shift": "mean",
                "label": "Mean over shifts", "x_axis": "", "x": np.nan, "accuracy": np.nan, "baseline": np.nan,
                "effective_robustness": float(np.mean(ers)), "in_fit_range": all(r["in_fit_range"] for r in model_rows),
                "n_shifts": len(ers),
            })
            if len(found) == len(shift_names):
                acc = float(np.mean([lookup[(model, pretrained, s, "")] for s in shift_names]))
                pred = float(avg_fit.predict(imagenet))
                lo_err, hi_err = _mean_error([(lookup[(model, pretrained, s, "")], *cis[(model, pretrained, s, "")])
                                              for s in shift_names])
                x_lo, x_hi = cis[(model, pretrained, "imagenet", "")]
                model_rows.append({
                    "model": model, "pretrained": pretrained, "protocol": protocol, "shift": "average",
                    "label": cfg["average"]["label"], "x_axis": avg_fit.x_col, "x": imagenet, "accuracy": acc,
                    "baseline": pred, "effective_robustness": acc - pred,
                    "in_fit_range": bool(imagenet >= avg_fit.x_min), "n_shifts": len(shift_names),
                    "x_ci_low": x_lo, "x_ci_high": x_hi, "acc_ci_low": acc - lo_err, "acc_ci_high": acc + hi_err,
                })
            else:
                missing = ", ".join(s for s in shift_names if s not in found)
                notes.append(f"effective robustness: {name} {protocol} lacks {missing}; left out of the average panel")
            out.extend(model_rows)
    from clip_bench.report.robustness_ci import add_er_intervals

    # er_ci_low / er_ci_high: the model's test-set noise and the baseline fit's uncertainty (robustness_ci)
    return add_er_intervals(pd.DataFrame(out, columns=ER_COLUMNS), rows), notes
