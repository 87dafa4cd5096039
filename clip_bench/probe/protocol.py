"""The paper's probe protocols on cached features: linear probe and k-shot probes.

Linear probe (paper appendix A.3): choose C on the validation split with the grid + binary search
(``c_search.py``), refit on train + val at that C, report the metric on the untouched test split. A task
without a validation split holds out a stratified ``val_fraction`` of train (seeded, recorded); the
refit then uses the whole train split again. With the torch solver the refit starts from the sweep's
solution at the chosen C (it only has to absorb the extra rows).

Scores handed to ``metric(scores, targets)`` are the probe's log-probabilities (``predict_log_proba``:
log-softmax, or [log(1 - p), log p] for binary) laid out over all ``n_classes`` label indices, and for
multi-label the per-class logits (``c_search.probe_scores``). They rank as the logits do; probabilities
would round to 1.0 and tie (and so would log-sigmoids, above logit ~745).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np

from clip_bench.probe.c_search import (
    COARSE_STEP,
    NO_SEARCH_RECORD,
    Metric,
    SweepResult,
    c_grid,
    probe_scores,
    sweep_C,
    sweep_C_folds,
)
from clip_bench.probe.fewshot import (
    PRIOR_SCALE,
    cv_train_size,
    one_shot_C,
    prior_C,
    sample_k_shot,
    shot_folds,
    transfer_C,
)
from clip_bench.probe.logreg import LogisticRegressionProbe
from clip_bench.probe.rows import rows_of, stack_rows
from clip_bench.util.errors import ClipBenchError


@dataclass
class ProbeConfig:
    """Knobs of the probe protocols; the defaults are the paper's (with the fast torch solver)."""

    solver: str = "torch"
    device: str | None = None
    dtype: str = "float32"
    max_iter: int = 1000
    # torch solver only (the sklearn solver keeps sklearn's default tol=1e-4, as in the paper's call):
    # None = the estimator's default, a relative optimality residual of 1e-2 (logreg.DEFAULT_TOL), which
    # a warm start from a neighbouring C cannot pass without converging and which bounds the objective
    # gap by 1e-4 relative.
    tol: float | None = None
    n_threads: int | None = None
    c_min: float = 1e-6
    c_max: float = 1e6
    steps_per_decade: int = 8
    coarse_step: int = COARSE_STEP
    max_tied: int = 3  # C search: points of the tied set refined around per halving round (c_search.py)
    tie_se: float = 1.0  # C search: main scores within this many standard errors of the best tie (c_search.py)
    warm_start: bool | None = None  # None: on for torch, off for sklearn (the reference fits from zero)
    val_fraction: float = 0.2  # held out of train when a task has no validation split
    cv_max_folds: int = 4  # few-shot: folds inside the shots
    one_shot_C: float | None = None  # few-shot k=1: None = scale-aware rule (fewshot.one_shot_C)
    prior_scale: float = PRIOR_SCALE  # few-shot: the prior C = prior_scale / (n * feature spread) (fewshot.py)

    def make_probe(self, multilabel: bool = False, solver: str | None = None) -> LogisticRegressionProbe:
        return LogisticRegressionProbe(
            solver=solver or self.solver, max_iter=self.max_iter, tol=self.tol, device=self.device,
            multilabel=multilabel, dtype=self.dtype, n_threads=self.n_threads,
        )

    def grid(self) -> np.ndarray:
        return c_grid(self.c_min, self.c_max, self.steps_per_decade)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: ``round(fraction * n_c)`` examples of each class c go to val (at least one
    when the class has two or more, none when it has one). Multi-hot labels: a plain random split."""
    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ClipBenchError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        perm = rng.permutation(labels.shape[0])
        n_val = max(1, int(round(fraction * labels.shape[0])))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size < 2:
            continue
        n_val = min(members.size - 1, max(1, int(round(fraction * members.size))))
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(labels.shape[0]), val_idx)
    return train_idx, val_idx


def fit_targets(y: np.ndarray, multilabel: bool) -> np.ndarray:
    """Targets a probe is fitted on: multi-label "ignore" entries (-1: VOC's difficult-only objects)
    become negatives. The validation and test metrics read the raw targets, which skip them."""
    y = np.asarray(y)
    return np.where(y < 0, 0, y).astype(y.dtype, copy=False) if multilabel and y.ndim == 2 else y


def _n_classes(*label_arrays: np.ndarray | None) -> int | None:
    arrays = [np.asarray(a) for a in label_arrays if a is not None]
    if arrays[0].ndim == 2:
        return arrays[0].shape[1]
    if not all(np.issubdtype(a.dtype, np.integer) for a in arrays):
        return None
    return int(max(a.max() for a in arrays if a.size)) + 1


def run_linear_probe(
    train_X: np.ndarray,
    train_y: np.ndarray,
    val_X: np.ndarray | None,
    val_y: np.ndarray | None,
    test_X: np.ndarray,
    test_y: np.ndarray,
    metric: Metric,
    solver: str | None = None,
    seed: int = 0,
    *,
    config: ProbeConfig | None = None,
    multilabel: bool | None = None,
    n_classes: int | None = None,
) -> dict:
    """The paper's linear probe: C on val, refit on train+val, score test (see module docstring).

    ``solver`` overrides ``config.solver``; ``multilabel`` defaults to ``train_y.ndim == 2``;
    ``n_classes`` defaults to 1 + the largest integer label seen. Returns a flat dict: ``test_score``,
    ``C``, ``val_score``, ``n_iter`` (final fit), split sizes, timings and the sweep trace."""
    t0 = time.perf_counter()
    config = config or ProbeConfig()
    train_y = np.asarray(train_y)
    multilabel = train_y.ndim == 2 if multilabel is None else multilabel
    n_classes = n_classes or _n_classes(train_y, val_y, test_y)
    template = config.make_probe(multilabel, solver)
    if (val_X is None) != (val_y is None):
        raise ClipBenchError("give both val_X and val_y, or neither (then val is held out of train)")
    train_fit_y = fit_targets(train_y, multilabel)
    if val_X is None:
        tr_idx, va_idx = stratified_holdout(train_fit_y, config.val_fraction, seed)
        if va_idx.size == 0:
            raise ClipBenchError("the train split is too small to hold out a validation set")
        # large splits are read row by row out of the (memory-mapped) features, never gathered whole
        fit_X, sel_X = rows_of(train_X, tr_idx), rows_of(train_X, va_idx)
        fit_y, sel_y = train_fit_y[tr_idx], train_y[va_idx]
        val_source = "held_out"
    else:
        fit_X, fit_y, sel_X, sel_y = train_X, train_fit_y, val_X, np.asarray(val_y)
        val_source = "given"
    sweep: SweepResult = sweep_C(
        fit_X, fit_y, sel_X, sel_y, metric, probe=template, grid=config.grid(),
        coarse_step=config.coarse_step, warm_start=config.warm_start, n_classes=n_classes, max_tied=config.max_tied,
        tie_se=config.tie_se,
    )
    if val_source == "held_out":
        refit_X, refit_y = train_X, train_fit_y
    else:
        refit_X, refit_y = stack_rows(train_X, val_X), np.concatenate([train_fit_y, fit_targets(sel_y, multilabel)])
    init = {}
    if sweep.best_solution is not None and (config.warm_start
                                            or (config.warm_start is None and template.solver == "torch")):
        # matched by class: the sweep's training part can lack classes the refit has (tiny splits)
        init = dict(zip(("coef_init", "intercept_init", "init_classes"), sweep.best_solution, strict=True))
    final = template.clone(C=sweep.best_C).fit(refit_X, refit_y, **init)
    test_score = float(metric(probe_scores(final, test_X, n_classes), np.asarray(test_y)))
    return {
        "protocol": "linear_probe",
        "test_score": test_score,
        "C": sweep.best_C,
        "val_score": sweep.best_score,
        "val_log_loss": sweep.best_log_loss,
        **sweep.record(),
        "n_iter": int(final.n_iter_),
        "converged": bool(final.converged_),
        "objective": float(final.objective_),
        "sweep_n_iter": sweep.n_iter,
        "sweep_time_s": sweep.wall_time_s,
        "refit_time_s": final.fit_time_,
        "wall_time_s": time.perf_counter() - t0,
        "n_train": int(fit_y.shape[0]),
        "n_val": int(sel_y.shape[0]),
        "n_refit": int(refit_y.shape[0]),
        "n_test": int(np.asarray(test_y).shape[0]),
        "val_source": val_source,
        "val_fraction": config.val_fraction if val_source == "held_out" else None,
        "seed": seed,
        "solver": template.solver,
        "multilabel": multilabel,
        "config": asdict(config),
    }


def run_fewshot(
    train_X: np.ndarray,
    train_y: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    metric: Metric,
    k: int,
    seed: int = 0,
    solver: str | None = None,
    *,
    config: ProbeConfig | None = None,
    n_classes: int | None = None,
    allow_fewer: bool = False,
) -> dict:
    """One k-shot probe: draw k shots per class from ``train`` (seeded), choose C from the shots only
    (``fewshot.py``: CV inside the shots for k >= 2, a fixed rule for k = 1), fit on all shots and
    score ``test``. Validation and test data never influence the shots or C."""
    t0 = time.perf_counter()
    config = config or ProbeConfig()
    train_y = np.asarray(train_y)
    n_classes = n_classes or _n_classes(train_y, test_y)
    idx = sample_k_shot(train_y, k, seed, allow_fewer=allow_fewer, n_classes=n_classes)
    shots_X, shots_y = train_X[idx], train_y[idx]
    template = config.make_probe(False, solver)
    sweep = None
    if k == 1:
        C = config.one_shot_C if config.one_shot_C is not None else one_shot_C(shots_X, config.prior_scale)
        rule = "fixed C (k=1)" if config.one_shot_C is not None else "prior C (k=1)"
    else:
        fold_idx = shot_folds(shots_y, k, config.cv_max_folds)
        n_cv = cv_train_size(fold_idx)
        folds = [(shots_X[tr], shots_y[tr], shots_X[va], shots_y[va]) for tr, va in fold_idx]
        sweep = sweep_C_folds(
            folds, metric, probe=template, grid=config.grid(), coarse_step=config.coarse_step,
            warm_start=config.warm_start, n_classes=n_classes, max_tied=config.max_tied, tie_se=config.tie_se,
            prior_C=prior_C(shots_X, n_cv, config.prior_scale),
        )
        C = transfer_C(sweep.best_C, n_cv, len(shots_y))  # the CV fits saw n_cv shots, the final fit all
        ties_to = "the log-loss (the CV refutes the prior C)" if sweep.prior_refuted else "the prior C"
        rule = f"{len(folds)}-fold CV inside the shots, ties to {ties_to}"
    final = template.clone(C=C).fit(shots_X, shots_y)
    test_score = float(metric(probe_scores(final, test_X, n_classes), np.asarray(test_y)))
    return {
        "protocol": "fewshot",
        "k": k,
        "seed": seed,
        "test_score": test_score,
        "C": float(C),
        "C_rule": rule,
        "C_cv": sweep.best_C if sweep else None,
        "C_prior": sweep.prior_C if sweep else None,
        "C_prior_refuted": sweep.prior_refuted if sweep else None,
        "cv_score": sweep.best_score if sweep else None,
        "cv_log_loss": sweep.best_log_loss if sweep else None,
        **(sweep.record() if sweep else NO_SEARCH_RECORD),
        "n_iter": int(final.n_iter_),
        "converged": bool(final.converged_),
        "n_shots": int(idx.size),
        "shots_sha1": hashlib.sha1(np.sort(idx).tobytes()).hexdigest()[:12],
        "n_test": int(np.asarray(test_y).shape[0]),
        "wall_time_s": time.perf_counter() - t0,
        "solver": template.solver,
        "config": asdict(config),
    }
