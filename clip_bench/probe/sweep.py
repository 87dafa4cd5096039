"""The paper's regularisation search: a coarse C grid, then a parametric binary search.

Grid: C = 10^-6 ... 10^6 at 8 points per decade. 12 decades x 8 = 96 *intervals*, so the grid has
**97 points** (both ends included; index i is C = 10^(-6 + i/8)); "96 log-spaced steps" in the paper
counts the steps between points. The search starts from the 7 coarse points {1e-6, 1e-4, 1e-2, 1, 1e2,
1e4, 1e6} (every 16th grid index), then repeatedly evaluates the two grid points half-way between
the current best and its neighbours (16 -> 8 -> 4 -> 2 -> 1 grid steps) until the grid resolution is
reached: at most 7 + 4 * 2 = 15 fits. Ties keep the smaller C (stronger regularisation).

Each C is scored on a validation set by a caller-given ``metric(scores, targets) -> float`` (higher is
better; ``scores`` is the probe's ``predict_proba`` output). With the torch solver every fit is warm-
started from the nearest C already fitted (grid distance; ties go to the smaller C), which is what
makes the whole sweep cheap: the coarse pass walks up the regularisation path. A side effect of
sklearn's (loose, mean-scaled) ``tol``: above some C the neighbour's solution already passes the
gradient test, so those fits take 0 iterations and score the same; the tie rule then picks the
smallest such C. A cold-started sklearn sweep instead scores early-stopped fits there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from clip_bench.errors import ClipBenchError

from .logreg import LogisticRegressionProbe

Metric = Callable[[np.ndarray, np.ndarray], float]

C_MIN, C_MAX, STEPS_PER_DECADE, COARSE_STEP = 1e-6, 1e6, 8, 16


def c_grid(c_min: float = C_MIN, c_max: float = C_MAX, steps_per_decade: int = STEPS_PER_DECADE) -> np.ndarray:
    """Log-spaced C grid including both ends: 97 points for the paper's 1e-6..1e6 at 8/decade."""
    lo, hi = np.log10(c_min), np.log10(c_max)
    n_steps = int(round((hi - lo) * steps_per_decade))
    if n_steps < 1 or not np.isclose(n_steps, (hi - lo) * steps_per_decade):
        raise ClipBenchError(f"C range {c_min:g}..{c_max:g} is not a whole number of grid steps")
    return np.logspace(lo, hi, n_steps + 1)


def parametric_search(score_at: Callable[[int], float], n_points: int, coarse_step: int = COARSE_STEP) -> tuple[int, dict[int, float], int]:
    """Maximise ``score_at(grid_index)`` with the paper's coarse-grid + interval-halving search.

    Returns (best index, {index: score} in evaluation order, number of halving rounds)."""
    if n_points < 1:
        raise ClipBenchError("the C grid is empty")
    scores: dict[int, float] = {}

    def evaluate(i: int) -> None:
        if 0 <= i < n_points and i not in scores:
            scores[i] = float(score_at(i))

    def best() -> int:  # highest score; ties -> smallest index (smallest C)
        return max(sorted(scores), key=lambda i: (scores[i], -i))

    coarse = list(range(0, n_points, coarse_step))
    if coarse[-1] != n_points - 1:
        coarse.append(n_points - 1)
    for i in coarse:
        evaluate(i)
    step, rounds = coarse_step // 2, 0
    while step >= 1:
        b = best()
        evaluate(b - step)
        evaluate(b + step)
        step //= 2
        rounds += 1
    return best(), scores, rounds


@dataclass
class SweepResult:
    """Outcome of a C search. ``scores`` lists (C, validation score) in evaluation order."""

    best_C: float
    best_score: float
    scores: list[tuple[float, float]]
    n_fits: int
    n_iter: int  # L-BFGS iterations summed over all fits
    rounds: int  # interval-halving rounds after the coarse grid
    wall_time_s: float
    solver: str
    fit_times_s: list[float] = field(default_factory=list)
    # (coef, intercept) fitted at best_C on the (first fold's) training data: warm start for a refit
    best_solution: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "best_C": self.best_C,
            "best_score": self.best_score,
            "scores": [[c, s] for c, s in self.scores],
            "n_fits": self.n_fits,
            "n_iter": self.n_iter,
            "rounds": self.rounds,
            "wall_time_s": self.wall_time_s,
            "solver": self.solver,
        }


def probe_scores(probe: LogisticRegressionProbe, X: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """``predict_proba`` laid out over ``n_classes`` columns (integer labels 0..n_classes-1): a class
    absent from the training split gets a zero column, so metrics see the full label space."""
    proba = probe.predict_proba(X)
    if probe.multilabel or n_classes is None or proba.shape[1] == n_classes:
        return proba
    cls = np.asarray(probe.classes_)
    if not np.issubdtype(cls.dtype, np.integer) or cls.min() < 0 or cls.max() >= n_classes:
        raise ClipBenchError(f"labels must be integers in [0, {n_classes}) to lay scores out by class index")
    full = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    full[:, cls] = proba
    return full


class _PathFitter:
    """Fits one training set at grid points, warm-starting from the nearest fitted C (torch only)."""

    def __init__(self, template: LogisticRegressionProbe, X, y, grid: np.ndarray, warm_start: bool) -> None:
        self.template, self.X, self.y, self.grid, self.warm_start = template, X, y, grid, warm_start
        self.solutions: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.n_iter = 0
        self.fit_times: list[float] = []

    def fit(self, i: int) -> LogisticRegressionProbe:
        init = {}
        if self.warm_start and self.solutions:
            j = min(self.solutions, key=lambda j: (abs(j - i), j))
            init = {"coef_init": self.solutions[j][0], "intercept_init": self.solutions[j][1]}
        probe = self.template.clone(C=float(self.grid[i])).fit(self.X, self.y, **init)
        self.solutions[i] = (probe.coef_, probe.intercept_)
        self.n_iter += int(probe.n_iter_)
        self.fit_times.append(probe.fit_time_)
        return probe


def _template(probe: LogisticRegressionProbe | None, solver: str) -> LogisticRegressionProbe:
    return probe if probe is not None else LogisticRegressionProbe(solver=solver)


def sweep_C(
    train_X: np.ndarray,
    train_y: np.ndarray,
    val_X: np.ndarray,
    val_y: np.ndarray,
    metric: Metric,
    *,
    probe: LogisticRegressionProbe | None = None,
    solver: str = "torch",
    grid: np.ndarray | None = None,
    coarse_step: int = COARSE_STEP,
    warm_start: bool | None = None,
    n_classes: int | None = None,
) -> SweepResult:
    """Choose C on a validation set with the paper's search (see module docstring).

    ``probe`` is a template whose parameters (solver, device, multilabel, ...) every fit copies; by
    default ``LogisticRegressionProbe(solver=solver)``. ``warm_start`` defaults to True for the torch
    solver and False for sklearn (the paper's reference fits each C from zero). ``n_classes``: see
    :func:`probe_scores`."""
    return sweep_C_folds([(train_X, train_y, val_X, val_y)], metric, probe=probe, solver=solver, grid=grid,
                         coarse_step=coarse_step, warm_start=warm_start, n_classes=n_classes)


def sweep_C_folds(
    folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    metric: Metric,
    *,
    probe: LogisticRegressionProbe | None = None,
    solver: str = "torch",
    grid: np.ndarray | None = None,
    coarse_step: int = COARSE_STEP,
    warm_start: bool | None = None,
    n_classes: int | None = None,
) -> SweepResult:
    """Like :func:`sweep_C`, scoring each C by the mean metric over several (train_X, train_y, val_X,
    val_y) folds (cross-validation); each fold keeps its own warm-start path."""
    t0 = time.perf_counter()
    template = _template(probe, solver)
    grid = c_grid() if grid is None else np.asarray(grid, dtype=float)
    if warm_start is None:
        warm_start = template.solver == "torch"
    fitters = [_PathFitter(template, trX, trY, grid, warm_start) for trX, trY, _, _ in folds]

    def score_at(i: int) -> float:
        vals = []
        for fitter, (_, _, vX, vY) in zip(fitters, folds, strict=True):
            vals.append(metric(probe_scores(fitter.fit(i), vX, n_classes), vY))
        return float(np.mean(vals))

    best, scores, rounds = parametric_search(score_at, len(grid), coarse_step)
    return SweepResult(
        best_C=float(grid[best]),
        best_score=scores[best],
        scores=[(float(grid[i]), s) for i, s in scores.items()],
        n_fits=len(scores) * len(folds),
        n_iter=sum(f.n_iter for f in fitters),
        rounds=rounds,
        wall_time_s=time.perf_counter() - t0,
        solver=template.solver,
        fit_times_s=[t for f in fitters for t in f.fit_times],
        best_solution=fitters[0].solutions.get(best),
    )
