"""Linear and few-shot probes on cached features (pure arrays: NumPy and torch, no model code).

``LogisticRegressionProbe`` is the paper's scikit-learn logistic regression with a fast torch L-BFGS
solver for the same objective; ``sweep_C`` is the paper's C search; ``run_linear_probe`` and
``run_fewshot`` are the protocols the CLI calls.
"""

from __future__ import annotations

from .fewshot import one_shot_C, sample_k_shot, shot_folds
from .logreg import LogisticRegressionProbe, logistic_objective
from .protocol import ProbeConfig, run_fewshot, run_linear_probe, stratified_holdout
from .sweep import SweepResult, c_grid, parametric_search, probe_scores, sweep_C, sweep_C_folds

__all__ = [
    "LogisticRegressionProbe",
    "ProbeConfig",
    "SweepResult",
    "c_grid",
    "logistic_objective",
    "one_shot_C",
    "parametric_search",
    "probe_scores",
    "run_fewshot",
    "run_linear_probe",
    "sample_k_shot",
    "shot_folds",
    "stratified_holdout",
    "sweep_C",
    "sweep_C_folds",
]
