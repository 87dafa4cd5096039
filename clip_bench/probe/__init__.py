"""Linear and few-shot probes on cached features (pure arrays: NumPy and torch, no model code)."""

from __future__ import annotations

from .logreg import LogisticRegressionProbe, logistic_objective

__all__ = ["LogisticRegressionProbe", "logistic_objective"]
