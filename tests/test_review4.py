"""What the probe's metrics read: log-probabilities and logits that keep their ranking where probabilities
saturate, ignored multi-label entries, classes the probe never saw, ROC AUC on binary tasks only."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.errors import ClipBenchError
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


def test_validation_metric_skips_ignored_multilabel_targets_and_the_fit_never_sees_them():
    """VOC's difficult-only entries (-1) must count neither as positive nor as negative in the mAP that
    chooses C, as in the test mAP. linprobe mapped them to 0 (negatives) before the C search; the fit
    itself trains with them as negatives."""
    from clip_bench.probe import ProbeConfig, run_linear_probe

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    Y = (X[:, :3] + 0.5 * rng.normal(size=(300, 3)) > 0).astype(np.int64)
    Y[rng.random(Y.shape) < 0.1] = -1  # ignored entries everywhere
    seen = []

    def metric(scores, targets):
        seen.append(np.asarray(targets).copy())
        return map_11point(scores, targets)

    res = run_linear_probe(X[:150], Y[:150], X[150:220], Y[150:220], X[220:], Y[220:], metric,
                           config=ProbeConfig(n_threads=1), multilabel=True)
    val_calls = [t for t in seen if t.shape[0] == 70]
    assert val_calls and all((t == -1).sum() == (Y[150:220] == -1).sum() for t in val_calls)
    assert res["n_refit"] == 220 and np.isfinite(res["val_log_loss"])
    with pytest.raises(ClipBenchError, match="must be 0 or 1"):
        LogisticRegressionProbe(multilabel=True).fit(X[:150], Y[:150])


def test_multilabel_log_loss_skips_ignored_entries():
    lp = np.log(np.array([[0.9, 0.2], [0.3, 0.6]]))
    full = log_loss(lp, np.array([[1, 0], [0, 1]]), None, True)
    skipped = log_loss(lp, np.array([[1, -1], [0, 1]]), None, True)
    assert skipped == pytest.approx(full - (-np.log(0.8)) / 2)



def test_top5_never_credits_a_class_the_probe_never_saw():
    """With 3 of 8 classes in the shots, the 5 -inf columns tie: argpartition put some of them in the
    top 5, so targets of unseen classes counted as top-5 hits depending on the tie order."""
    from clip_bench.metrics import topk_accuracy
    from clip_bench.outcomes import outcomes_for

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4)).astype(np.float32)
    probe = LogisticRegressionProbe(n_threads=1).fit(X, np.repeat([0, 1, 2], 30))
    scores = probe_scores(probe, X[:50], n_classes=8)
    unseen = np.arange(3, 8).repeat(10)
    assert topk_accuracy(scores, unseen, 5) == 0.0
    assert not outcomes_for("top5", scores, unseen, 0.0).top5.any()
    seen = np.repeat([0, 1, 2], 17)[:50]
    assert topk_accuracy(scores, seen, 5) == 100.0  # every seen class is within the 3 finite scores
    unlaid = probe_scores(probe, X[:50])  # no n_classes: 3 columns; labels 3..7 have none
    assert unlaid.shape[1] == 3 and topk_accuracy(unlaid, unseen, 5) == 0.0


def test_roc_auc_on_more_than_two_classes_is_a_one_line_error():
    from clip_bench.metrics import roc_auc

    with pytest.raises(ClipBenchError, match="binary tasks"):
        roc_auc(np.zeros((4, 3)), np.array([0, 1, 2, 1]))
