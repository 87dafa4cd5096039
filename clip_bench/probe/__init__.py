"""Linear and few-shot probes on cached features (pure arrays: NumPy and torch, no model code).

``LogisticRegressionProbe`` is the paper's scikit-learn logistic regression with a fast torch L-BFGS
solver for the same objective; ``sweep_C`` is the paper's C search; ``run_linear_probe`` and
``run_fewshot`` are the protocols the CLI calls.
"""

from __future__ import annotations

from clip_bench.probe.c_search import SweepResult, c_grid, parametric_search, probe_scores, sweep_C, sweep_C_folds
from clip_bench.probe.fewshot import one_shot_C, sample_k_shot, shot_folds
from clip_bench.probe.logreg import LogisticRegressionProbe
from clip_bench.probe.objective import logistic_objective
from clip_bench.probe.protocol import ProbeConfig, run_fewshot, run_linear_probe, stratified_holdout

#: Version of the probe method (C search, tie rule, few-shot prior, solver stopping rule). It is part of
#: every probe row's identity, so rows made by an earlier rule are never taken for this rule's result:
#: bump it whenever a change can move a probe's number.
#: This version: ties within a paired band; a few-shot prior C that the CV resolves as worse than the
#: best ranks nothing (the log-loss ranks the ties). CHANGELOG.md lists what each version changed.
PROBE_RULE = "paired-band-refuted-prior-v1"

__all__ = [
    "PROBE_RULE",
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
