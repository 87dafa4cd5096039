"""The paper's regularisation search (a coarse C grid, then interval halving), with clip-bench's
rule for choosing among the scores.

Grid: C = 10^-6 ... 10^6 at 8 points per decade. 12 decades x 8 = 96 *intervals*, so the grid has
**97 points** (both ends included; index i is C = 10^(-6 + i/8)); "96 log-spaced steps" in the paper
counts the steps between points. The search starts from the 7 coarse points {1e-6, 1e-4, 1e-2, 1, 1e2,
1e4, 1e6} (every 16th grid index), then evaluates the grid points half-way between the best and its
neighbours (16 -> 8 -> 4 -> 2 -> 1 grid steps) until the grid resolution is reached.

Choosing among the scores (the paper does not say; this is clip-bench's rule):

* **Ranking.** Each C is scored on the validation data by the task's main metric (higher is better)
  *and* by the mean validation log-loss (a continuous proper scoring rule). A C *ties* the best when
  the validation data cannot tell the two apart:

  - **Paired** (metrics that are a sum over examples: top-1, mean per-class recall, Kinetics' mean of
    top-1 and top-5; ``metric.per_example``): every C is scored on the same examples, so the
    difference of two scores is measured against its own noise, which comes only from the examples
    the two C score differently: the band is ``tie_se`` (default 1) paired SEs plus one example's
    share (McNemar's test with its continuity correction; :func:`paired_band`). Neighbouring C that
    agree on most examples are told apart by a small but steady difference, so a CV score that
    rises steadily over many decades is followed up the rise instead of being tied back to its
    low end (CHANGELOG.md, 0.1.0, "Probes": few-shot on synthetic 512-d features, 100 classes,
    the unpaired band lost 2.75 points to the oracle C at k = 4 and 1.27 at k = 8, the paired band
    0.97 and 0.54, with a prior that still ranked the ties when refuted, see below).
  - **Unpaired** (mAP, ROC AUC, or a metric without per-example shares): within ``tie_se`` binomial
    SEs of the best score (pooled over folds: 2.7 points at 70% on 288 examples).

  ``tie_se=0`` keeps exact ties only. Among the tied C the lowest log-loss wins, then the smaller C.
  The main metric still decides whenever the validation data can tell two C apart; the log-loss,
  which uses every example's probability rather than a count of argmax hits, decides between C it
  cannot tell apart. (benchmarks/RESULTS.md, "Choosing C": on noisy digits, exact ties only left
  the full probe 1.1 points under the oracle C, the SE rule 0.6.) Which band was used is recorded
  (``tie_band``; rows: ``C_tie_band``).
* **With a prior C** (``prior_C``; the few-shot probes give one, ``fewshot.py``): the tied C nearest
  the prior in log C wins instead (then the log-loss, then the smaller C), and the grid points next
  to the prior (one or two) are fitted with the coarse points. The validation data still decide whenever
  they can resolve a difference; the prior only ranks what they cannot. It replaces the log-loss for the few-shot CV
  because there the validation sets are tiny (the band ties much of the grid) and
  the log-loss minimum sits systematically at larger C than the accuracy optimum (it rewards
  confident probabilities, not better decisions): above it in all 40 noisy-digits configurations
  with k >= 2, by a median 0.9 decade.
  **A refuted prior ranks nothing.** When neither grid point next to the prior ties the best (the
  validation data resolve the prior as worse), the tied C are ranked by the log-loss, as without a
  prior (the rounds before that refined where the prior's ranking pointed),
  and the sweep records ``prior_refuted`` (rows: ``C_prior_refuted``). Otherwise a CV score that
  rises away from the prior onto a long plateau was picked at the plateau's edge nearest the prior,
  the C the data had just ruled against (synthetic 512-d features, 100 classes, k = 2: two of five
  seeds lost 11.5 and 14.0 points to the oracle C there: CHANGELOG.md, 0.1.0, "Probes"; the plateau is
  in benchmarks/RESULTS.md, "Choosing C").
* **Ties never hide a peak.** Each halving round refines around three points of the tied set, not
  only the best-ranked one: the best-ranked (nearest the prior, else lowest log-loss), the highest main score, and the
  centre of the tied run (the median tied grid index), so a plateau of equal coarse scores cannot
  hide a peak between its points.
* **Bounded.** At most 7 + 4 rounds x 2 x 3 = 31 distinct C are fitted (15 when one C leads, the
  paper's count; two more with a prior); the number is recorded (``n_fits``, x the number of CV folds).
* **Grid edge.** A pick at the first or last grid point is recorded (``C_at_grid_edge``: "low" or
  "high"): the best C may lie outside the searched range.

Each fit is warm-started from the C already fitted (torch solver): linearly in log C through the
nearest fitted C (``objective.path_start``), with the last fit's L-BFGS curvature pairs. The solver stops
on a relative optimality residual that bounds the distance to the optimum at the fitted C from any
start (``logreg.py``), so every score belongs to the C it is reported at; each fit's iterations
and convergence are recorded (``fits``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clip_bench.probe.logreg import LogisticRegressionProbe
from clip_bench.probe.objective import path_start
from clip_bench.util.errors import ClipBenchError

Metric = Callable[[np.ndarray, np.ndarray], float]

C_MIN, C_MAX, STEPS_PER_DECADE, COARSE_STEP = 1e-6, 1e6, 8, 16


def c_grid(c_min: float = C_MIN, c_max: float = C_MAX, steps_per_decade: int = STEPS_PER_DECADE) -> np.ndarray:
    """Log-spaced C grid including both ends: 97 points for the paper's 1e-6..1e6 at 8/decade."""
    lo, hi = np.log10(c_min), np.log10(c_max)
    n_steps = int(round((hi - lo) * steps_per_decade))
    if n_steps < 1 or not np.isclose(n_steps, (hi - lo) * steps_per_decade):
        raise ClipBenchError(f"C range {c_min:g}..{c_max:g} is not a whole number of grid steps")
    return np.logspace(lo, hi, n_steps + 1)


Score = tuple[float, float]  # (main metric, higher is better; mean validation log-loss, lower is better)


def proportion_se(score: float, n: int) -> float:
    """One standard error of a percentage ``score`` measured on ``n`` examples (binomial), the
    resolution of a validation score; 0 when it is not a percentage or n is unknown."""
    if n <= 0 or not 0.0 <= score <= 100.0:
        return 0.0
    p = score / 100.0
    return 100.0 * float(np.sqrt(max(p * (1 - p), 1.0 / n) / n))


def paired_se(shares_a: np.ndarray, shares_b: np.ndarray) -> float:
    """The standard error of the difference of two scores measured on the same examples, were the two
    C equally good: sqrt(sum of the squared differences of the examples' shares, ``metric.per_example``).
    Only the examples the two C score differently count (for accuracy, 100 / n * sqrt(number of
    examples on which exactly one of them is right): McNemar's scale)."""
    d = np.asarray(shares_a, dtype=np.float64) - np.asarray(shares_b, dtype=np.float64)
    return float(np.sqrt(np.dot(d, d)))


def paired_band(shares_a: np.ndarray, shares_b: np.ndarray, tie_se: float = 1.0) -> float:
    """How far apart two scores on the same examples can be and still tie: ``tie_se`` paired SEs
    (:func:`paired_se`) plus one example's share (the continuity correction of McNemar's test, which
    keeps a difference of one or two examples out of a handful of disagreements a tie). Two
    neighbouring C that disagree on few examples are told apart by a steady difference that the
    unpaired SE of each score would call a tie. ``tie_se=0``: 0 (exact ties only, as the unpaired band)."""
    if tie_se <= 0:  # exact ties only (the module docstring's contract), no continuity correction either
        return 0.0
    d = np.abs(np.asarray(shares_a, dtype=np.float64) - np.asarray(shares_b, dtype=np.float64))
    return tie_se * float(np.sqrt(np.dot(d, d))) + (float(d.max()) if d.size else 0.0)


def parametric_search(
    score_at: Callable[[int], float | Score], n_points: int, coarse_step: int = COARSE_STEP, max_tied: int = 3,
    band: Callable[[int, int], float] | float = 0.0, prior: float | None = None, record: dict | None = None,
) -> tuple[int, dict[int, float], int, dict[int, float]]:
    """Maximise ``score_at(grid_index)`` with the coarse-grid + interval-halving search and the tie
    rule of the module docstring. ``score_at`` returns the main metric, or (main metric, log-loss).
    A main score within ``band`` of the best is a tie: a number, or ``band(best index, index)`` (the
    resolution of the difference between the best C and that C; with several C at the top score,
    within the band of each).
    ``prior`` (a fractional grid index, or None): tied C are ranked by their distance to it first
    (then log-loss, then the smaller C), and the grid points next to it join the coarse points. When
    neither ties the best (the validation data refute the prior), the prior ranks nothing: the
    log-loss does, as without a prior.
    ``record`` (a dict, optional) receives ``prior_refuted`` (None without a prior) and ``tied`` (the
    tied grid indices at the end, best-ranked first).

    Returns (best index, {index: main score} in evaluation order, number of halving rounds,
    {index: log-loss} (0.0 when ``score_at`` gives the main metric only))."""
    if n_points < 1:
        raise ClipBenchError("the C grid is empty")
    if prior is not None and not np.isfinite(prior):
        raise ClipBenchError(f"a prior must be a finite grid position, got {prior}")
    scores: dict[int, Score] = {}
    width = band if callable(band) else (lambda _best, _i: float(band))

    def evaluate(i: int) -> None:
        if 0 <= i < n_points and i not in scores:
            s = score_at(i)
            scores[i] = (float(s[0]), float(s[1])) if isinstance(s, tuple) else (float(s), 0.0)

    def tied() -> list[int]:
        """C whose main score ties the best, best-ranked first: nearer the prior (unless it is refuted),
        then lower log-loss, then smaller C."""
        top = max(s[0] for s in scores.values())
        slack = 1e-9 * max(1.0, abs(top))  # rounding in a mean of fold scores is not a difference
        # every C at the top score is "the best": a C ties when none of them resolves it as worse
        # (a paired band differs between them; which one has the lower log-loss must not matter)
        bests = [j for j, s in scores.items() if top - s[0] <= slack]
        ties = [i for i, s in scores.items() if all(top - s[0] <= width(j, i) + slack for j in bests)]
        towards = None if refuted(ties) else prior  # a refuted prior ranks nothing
        return sorted(ties, key=lambda i: (abs(i - towards) if towards is not None else 0.0, scores[i][1], i))

    def refuted(ties: list[int]) -> bool | None:
        """None without a prior; else whether neither grid point next to it ties the best."""
        return None if prior is None else not any(i in ties for i in prior_points)

    def centres() -> list[int]:
        """Refine around: the best-ranked tied C (see ``tied``), the highest main score, and the
        centre of the tied run (so a plateau of exact ties cannot hide a peak)."""
        ties = tied()
        top = max(ties, key=lambda i: (scores[i][0], -scores[i][1], -i))
        centre = sorted(ties)[len(ties) // 2]
        return list(dict.fromkeys([ties[0], top, centre]))[:max_tied]

    coarse = list(range(0, n_points, coarse_step))
    if coarse[-1] != n_points - 1:
        coarse.append(n_points - 1)
    # the grid points next to the prior (one when it sits on a grid point): fitted with the coarse
    # points, and the prior is refuted only when neither ties the best, so the verdict does not jump
    # with which side of a half-way point the prior falls
    prior_points = [] if prior is None else sorted({int(np.clip(f(prior), 0, n_points - 1))
                                                    for f in (np.floor, np.ceil)})
    coarse += prior_points
    for i in coarse:
        evaluate(i)
    step, rounds = coarse_step // 2, 0
    while step >= 1:
        for b in centres():
            evaluate(b - step)
            evaluate(b + step)
        step //= 2
        rounds += 1
    ties = tied()
    if record is not None:
        record.update(prior_refuted=refuted(ties), tied=ties)
    return ties[0], {i: s[0] for i, s in scores.items()}, rounds, {i: s[1] for i, s in scores.items()}


def grid_position(C: float | None, grid: np.ndarray) -> float | None:
    """Fractional grid index of C (linear in log C between grid points, clipped to the grid); None stays None."""
    if C is None:
        return None
    if not (np.isfinite(C) and C > 0):
        raise ClipBenchError(f"a prior C must be a positive number, got {C}")
    return float(np.interp(np.log10(C), np.log10(grid), np.arange(len(grid))))


def grid_edge(index: int, n_points: int) -> str | None:
    """'low' / 'high' when a pick sits on the first / last grid point, else None."""
    return "low" if index == 0 else ("high" if index == n_points - 1 else None)


_LOG_EPS, _LOG_1M_EPS = np.log(1e-15), np.log1p(-1e-15)


def log_loss(log_proba: np.ndarray, targets: np.ndarray, classes: np.ndarray | None, multilabel: bool,
             batch_rows: int = 16384) -> float:
    """Mean log-loss from log-probabilities (``predict_log_proba``; each probability clipped to
    [1e-15, 1 - 1e-15], as scikit-learn): softmax columns ordered by ``classes`` (a target class the
    probe never saw gets probability 0), or per-class sigmoids (multi-label: the mean over examples of
    the summed binary losses, skipping targets of -1; log(1 - p) = log(-expm1(log p)) keeps its
    precision near p = 1).
    Accumulated in float64 over row chunks, so ``log_proba`` is never copied whole."""
    t = np.asarray(targets)
    n = t.shape[0]
    if multilabel:
        total = 0.0
        for i in range(0, n, batch_rows):
            lp = np.asarray(log_proba[i : i + batch_rows], dtype=np.float64)
            with np.errstate(divide="ignore"):  # log(0) where p rounds to 1: clipped just below
                lq = np.log(-np.expm1(lp))
            ti = t[i : i + batch_rows]
            loss = ti * np.clip(lp, _LOG_EPS, _LOG_1M_EPS) + (1 - ti) * np.clip(lq, _LOG_EPS, _LOG_1M_EPS)
            total += float(np.sum(loss, where=ti >= 0))  # -1: ignored for that class (VOC's difficult)
        return -total / n
    cls = np.asarray(classes)
    pos = np.clip(np.searchsorted(cls, t), 0, len(cls) - 1)
    hit = cls[pos] == t
    ly = np.where(hit, np.asarray(log_proba[np.arange(n), pos], dtype=np.float64), _LOG_EPS)
    return float(-np.mean(np.clip(ly, _LOG_EPS, _LOG_1M_EPS)))


@dataclass
class SweepResult:
    """Outcome of a C search. ``scores`` lists (C, validation score) in evaluation order, ``log_losses``
    the mean validation log-loss at the same C, ``fits`` one record per fit (C, fold, L-BFGS
    iterations, converged, stopping residual)."""

    best_C: float
    best_score: float
    scores: list[tuple[float, float]]
    n_fits: int
    n_iter: int  # L-BFGS iterations summed over all fits
    rounds: int  # interval-halving rounds after the coarse grid
    wall_time_s: float
    solver: str
    fit_times_s: list[float] = field(default_factory=list)
    log_losses: list[tuple[float, float]] = field(default_factory=list)
    best_log_loss: float = float("nan")
    C_at_grid_edge: str | None = None
    fits: list[dict] = field(default_factory=list)
    prior_C: float | None = None  # the C that ties were ranked towards unless refuted (None: by log-loss)
    prior_refuted: bool | None = None  # the prior's C did not tie the best, so the log-loss ranked the ties
    tie_band: str = "unpaired"  # "paired": the metric's per-example shares set the band (paired_se)
    # (coef, intercept, classes) fitted at best_C on the (first fold's) training data: warm start for a refit
    best_solution: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def all_converged(self) -> bool:
        return all(f["converged"] for f in self.fits)

    def record(self) -> dict[str, Any]:
        """What a probe row records of this search: whether the best C sits at the grid's edge, the tie band,
        the grid with its scores and log-losses, and the fits."""
        return {
            "C_at_grid_edge": self.C_at_grid_edge,
            "C_tie_band": self.tie_band,
            "sweep": [[c, s] for c, s in self.scores],
            "sweep_log_loss": [[c, v] for c, v in self.log_losses],
            "sweep_fits": self.fits,
            "sweep_converged": self.all_converged,
            "sweep_n_fits": self.n_fits,
        }


#: The search fields of a probe row that ran no search (a few-shot probe whose C comes from the prior alone).
NO_SEARCH_RECORD: dict[str, Any] = {
    **dict.fromkeys(("C_at_grid_edge", "C_tie_band", "sweep", "sweep_log_loss", "sweep_fits", "sweep_converged")),
    "sweep_n_fits": 0,
}


def probe_scores(probe: LogisticRegressionProbe, X: np.ndarray, n_classes: int | None = None,
                 log_proba: np.ndarray | None = None) -> np.ndarray:
    """``predict_log_proba`` laid out over ``n_classes`` columns (integer labels 0..n_classes-1): a
    class absent from the training split gets a column of log 0 = -inf, so metrics see the full label
    space. Log-probabilities rank as the logits do (probabilities saturate: ties in ROC AUC, mAP, top-k).
    Multi-label probes give their per-class logits (log-odds) instead: a log-sigmoid is -exp(-z),
    which rounds to -0.0 above z ~ 745 and would tie confident hits with confident misses again.
    ``log_proba``: ``probe.predict_log_proba(X)`` when already computed (single-label)."""
    if probe.multilabel:
        return probe.decision_function(X)
    if log_proba is None:
        log_proba = probe.predict_log_proba(X)
    cls = np.asarray(probe.classes_)
    if n_classes is None or log_proba.shape[1] == n_classes:
        # the metrics read column j as label j: other labels (strings, 1..K, a float label set with a
        # class missing) would be scored against the wrong columns, silently
        if not (cls.dtype.kind in "biuf" and np.array_equal(cls, np.arange(cls.size))):  # bool: 0, 1
            shown = ", ".join(map(str, cls[:5].tolist())) + (", ..." if cls.size > 5 else "")
            raise ClipBenchError(f"labels must be the class indices 0..K-1; the training labels are {shown}: "
                                 "map them to class indices first")
        return log_proba
    if not np.issubdtype(cls.dtype, np.integer) or cls.min() < 0 or cls.max() >= n_classes:
        raise ClipBenchError(f"labels must be integers in [0, {n_classes}) to lay scores out by class index")
    full = np.full((log_proba.shape[0], n_classes), -np.inf, dtype=log_proba.dtype)
    full[:, cls] = log_proba
    return full


class _PathFitter:
    """Fits one training set at grid points, warm-starting from the nearest fitted C (torch only)."""

    def __init__(self, template: LogisticRegressionProbe, X, y, grid: np.ndarray, warm_start: bool, fold: int) -> None:
        self.template, self.X, self.y, self.grid, self.warm_start = template, X, y, grid, warm_start
        self.fold = fold
        self.solutions: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.memory = None
        self.n_iter = 0
        self.fit_times: list[float] = []
        self.records: list[dict] = []

    def fit(self, i: int) -> LogisticRegressionProbe:
        init = {}
        if self.warm_start and self.solutions:
            # linear in log C through the nearest fitted C (objective.path_start)
            start = path_start({float(self.grid[j]): sol for j, sol in self.solutions.items()}, float(self.grid[i]))
            init = dict(zip(("coef_init", "intercept_init", "init_classes"), start, strict=True))
            init["lbfgs_memory"] = self.memory  # the last fit's curvature pairs: fewer iterations (LbfgsMemory)
        probe = self.template.clone(C=float(self.grid[i])).fit(self.X, self.y, **init)
        self.solutions[i] = (probe.coef_, probe.intercept_, probe.classes_)
        self.memory = getattr(probe, "lbfgs_memory_", None)
        self.n_iter += int(probe.n_iter_)
        self.fit_times.append(probe.fit_time_)
        self.records.append({
            "C": float(self.grid[i]), "fold": self.fold, "n_iter": int(probe.n_iter_),
            "converged": bool(probe.converged_), "residual": _finite_or_none(getattr(probe, "residual_", None)),
        })
        return probe


def _checked_shares(shares: np.ndarray, value: float, n_folds: int, n_examples: int) -> np.ndarray:
    """A fold's per-example shares, scaled to its weight in the mean over folds; there must be one per
    validation example and they must add up to the metric (a ``per_example`` that does not would make
    the tie band meaningless). The tolerance is far below one example's share even on ImageNet-sized
    validation sets, and far above the rounding of float32 shares (2^-24 relative)."""
    shares = np.asarray(shares)
    if shares.shape != (n_examples,):
        raise ClipBenchError(f"the metric's per_example gave shares of shape {shares.shape}, not one per "
                             f"validation example ({n_examples},)")
    shares = shares.astype(np.float32 if shares.size > 65536 else np.float64, copy=False)
    total = float(np.sum(shares, dtype=np.float64))
    if not np.isclose(total, value, rtol=1e-6, atol=1e-9):
        raise ClipBenchError(f"the metric's per-example shares add up to {total:.9g}, not to its value {value:.9g}")
    return shares / n_folds


def _finite_or_none(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _template(probe: LogisticRegressionProbe | None, solver: str) -> LogisticRegressionProbe:
    return probe if probe is not None else LogisticRegressionProbe(solver=solver)


def sweep_C(
    train_X: np.ndarray, train_y: np.ndarray, val_X: np.ndarray, val_y: np.ndarray, metric: Metric, *,
    probe: LogisticRegressionProbe | None = None, solver: str = "torch", grid: np.ndarray | None = None,
    coarse_step: int = COARSE_STEP, warm_start: bool | None = None, n_classes: int | None = None,
    max_tied: int = 3, tie_se: float = 1.0, prior_C: float | None = None,
) -> SweepResult:
    """Choose C on a validation set with the paper's search (see module docstring).

    ``probe`` is a template whose parameters (solver, device, multilabel, ...) every fit copies; by
    default ``LogisticRegressionProbe(solver=solver)``. ``warm_start`` defaults to True for the torch
    solver and False for sklearn (the paper's reference fits each C from zero). ``n_classes``: see
    :func:`probe_scores`."""
    return sweep_C_folds([(train_X, train_y, val_X, val_y)], metric, probe=probe, solver=solver, grid=grid,
                         coarse_step=coarse_step, warm_start=warm_start, n_classes=n_classes,
                         max_tied=max_tied, tie_se=tie_se, prior_C=prior_C)


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
    max_tied: int = 3,
    tie_se: float = 1.0,
    prior_C: float | None = None,
) -> SweepResult:
    """Like :func:`sweep_C`, scoring each C by the mean metric over several (train_X, train_y, val_X,
    val_y) folds (cross-validation); each fold keeps its own warm-start path."""
    t0 = time.perf_counter()
    template = _template(probe, solver)
    grid = c_grid() if grid is None else np.asarray(grid, dtype=float)
    if warm_start is None:
        warm_start = template.solver == "torch"
    fitters = [_PathFitter(template, trX, trY, grid, warm_start, f) for f, (trX, trY, _, _) in enumerate(folds)]

    per_example = getattr(metric, "per_example", None)
    shares: dict[int, np.ndarray] = {}  # grid index -> each validation example's share of the score

    def score_at(i: int) -> Score:
        vals, losses, parts = [], [], []
        for fitter, (_, _, vX, vY) in zip(fitters, folds, strict=True):
            fitted = fitter.fit(i)
            # float32 log-probabilities: the only full-size array of a validation scoring (ImageNet's
            # held-out 256k x 1000 rows: 1 GB instead of 2 GB + copies); the logits are float32 anyway
            # (softmax only; binary and multi-label outputs are narrow, so they stay float64)
            if fitted.multilabel:  # the metric reads the logits; the log-loss their log-sigmoids (one pass)
                scored = fitted.decision_function(vX)
                log_proba = fitted.log_proba_from_logits(scored)
            else:
                softmax = len(fitted.classes_) > 2
                log_proba = fitted.predict_log_proba(vX, dtype=np.float32 if softmax else np.float64)
                scored = probe_scores(fitted, vX, n_classes, log_proba)  # what the test metric reads
            vals.append(metric(scored, vY))
            if per_example is not None and np.isfinite(vals[-1]):  # not finite: the clear error below
                targets = np.asarray(vY)
                parts.append(_checked_shares(per_example(scored, targets), vals[-1], len(folds), len(targets)))
            losses.append(log_loss(log_proba, vY, fitted.classes_, fitted.multilabel))
        if not np.all(np.isfinite(vals)):
            raise ClipBenchError(
                f"the validation metric is not a finite number at C = {grid[i]:g} (a validation split without "
                "positives for any class, or with a single class?); C cannot be chosen on it. Use a larger "
                "validation split (--val-fraction) or check the labels."
            )
        if not np.all(np.isfinite(losses)):  # it ranks tied C: a NaN would sort anywhere
            raise ClipBenchError(
                f"the validation log-loss is not a finite number at C = {grid[i]:g} (non-finite probabilities: "
                "check the features for NaN or inf, e.g. a damaged feature cache)"
            )
        if parts:
            shares[i] = np.concatenate(parts)
        seen[i] = float(np.mean(vals))
        return seen[i], float(np.mean(losses))

    n_val = sum(int(np.asarray(vY).shape[0]) for _, _, _, vY in folds)
    seen: dict[int, float] = {}  # grid index -> main score

    def band(top: int, i: int) -> float:
        if per_example is not None:  # paired: the C differ only where their predictions differ
            return paired_band(shares[top], shares[i], tie_se)
        return tie_se * proportion_se(seen[top], n_val)

    record: dict = {}
    best, scores, rounds, losses = parametric_search(
        score_at, len(grid), coarse_step, max_tied, band=band, prior=grid_position(prior_C, grid), record=record)
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
        log_losses=[(float(grid[i]), v) for i, v in losses.items()],
        best_log_loss=losses[best],
        C_at_grid_edge=grid_edge(best, len(grid)),
        fits=[r for f in fitters for r in f.records],
        best_solution=fitters[0].solutions.get(best),
        prior_C=prior_C,
        prior_refuted=record["prior_refuted"],
        tie_band="paired" if per_example is not None else "unpaired",
    )
