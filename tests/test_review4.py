"""Review 4 regression tests: what the probe's metrics read since they moved to log-probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.metrics import map_11point
from clip_bench.probe import LogisticRegressionProbe, sweep_C
from clip_bench.probe.sweep import log_loss, probe_scores

#: log-sigmoid(z) = -log1p(exp(-z)) is -exp(-z): a float64 denormal from z ~ 709 and exactly -0.0 above ~745
_SATURATED = 745.2


def _far_multilabel(scale: float = 200.0, seed: int = 1, n: int = 400, d: int = 16, labels: int = 5):
    """A large-C one-vs-rest probe and validation points far along its directions: logits in the
    thousands, with positives *and* negatives of one class above 745."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.stack([X @ rng.normal(size=d) > 0 for _ in range(labels)], 1).astype(np.int64)
    Xtr, ytr, Xva, yva = X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :]
    far = np.concatenate([Xva, scale * Xva])
    return Xtr, ytr, far, np.concatenate([yva, yva])


def _saturated_both_ways(logits: np.ndarray, y: np.ndarray) -> bool:
    """Some class has a positive and a negative above the log-sigmoid saturation, the negative ranked
    higher by the model: tied log-probabilities would hide that miss."""
    for c in range(y.shape[1]):
        pos, neg = logits[(y[:, c] == 1), c], logits[(y[:, c] == 0), c]
        if pos[pos > _SATURATED].size and neg[neg > _SATURATED].size and neg.max() > pos[pos > _SATURATED].min():
            return True
    return False


def test_multilabel_test_scores_rank_as_the_logits_above_745():
    """Log-sigmoid rounds to -0.0 above logit ~745 (float64): confident hits and confident misses tie
    again, just as sigmoid probabilities tied above ~37, and the stable sort of 11-point mAP then ranks
    them in sample order. The multi-label test scores must rank as the logits at any magnitude."""
    Xtr, ytr, far, y_far = _far_multilabel()
    probe = LogisticRegressionProbe(C=1e4, multilabel=True).fit(Xtr, ytr)
    logits = probe.decision_function(far)
    assert _saturated_both_ways(logits, y_far)  # the data do reach the saturation
    assert (probe.predict_log_proba(far) == 0.0).any()
    assert map_11point(probe_scores(probe, far), y_far) == pytest.approx(map_11point(logits, y_far), abs=1e-12)


def test_multilabel_validation_score_ranks_as_the_logits_above_745():
    """The same in the C search: the validation mAP that chooses C is the one of the logits."""
    Xtr, ytr, far, y_far = _far_multilabel()
    C = 1e4
    sweep = sweep_C(Xtr, ytr, far, y_far, map_11point, probe=LogisticRegressionProbe(multilabel=True),
                    grid=np.array([C]))
    ref = LogisticRegressionProbe(C=C, multilabel=True).fit(Xtr, ytr)
    logits = ref.decision_function(far)
    assert _saturated_both_ways(logits, y_far)
    assert sweep.best_score == pytest.approx(map_11point(logits, y_far), abs=1e-12)
    # the tie-breaker still reads log-probabilities (unchanged by this fix)
    assert sweep.best_log_loss == pytest.approx(log_loss(ref.predict_log_proba(far), y_far, ref.classes_, True), rel=1e-9)
