"""The imagenet-testbed baseline trend: shift accuracy against ImageNet accuracy, an OLS line in logit space.

Fitted as imagenet-testbed does (its `plotting/plotter.py`; settings in ``assets/reference/testbed_shifts.yaml``):
over STANDARD models, per shift with its own x column and threshold, piecewise for ImageNet-A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from clip_bench.report.reference import testbed_shifts, testbed_top1

_EPS = 1e-4


def logit(pct: ArrayLike) -> np.ndarray:
    """logit(acc/100), clipped so 0% and 100% stay finite."""
    p = np.clip(np.asarray(pct, dtype=float) / 100.0, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def inv_logit(z: ArrayLike) -> np.ndarray:
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

    def predict(self, x: ArrayLike) -> np.ndarray:
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
