"""Edge cases of the paired tie band (C search): ``per_example`` shares, ``tie_se``, several best C, labels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from clip_bench.errors import ClipBenchError
from clip_bench.metrics import mean_per_class_recall, top1
from clip_bench.probe.protocol import ProbeConfig, run_fewshot
from clip_bench.probe.sweep import sweep_C, sweep_C_folds


class _TableProbe:
    """A stand-in for LogisticRegressionProbe whose validation predictions are set per C:
    ``table(C, X) -> (hit mask, confidence)``; X's first column is the example's label (3 classes)."""

    solver = "table"
    multilabel = False

    def __init__(self, table, C=None):
        self.table, self.C = table, C

    def clone(self, C):
        return _TableProbe(self.table, C)

    def fit(self, X, y, **_):
        self.classes_ = np.arange(3)
        self.coef_, self.intercept_ = np.zeros((3, 1)), np.zeros(3)
        self.n_iter_, self.fit_time_, self.converged_ = 1, 0.0, True
        return self

    def predict_log_proba(self, X, dtype=np.float64):
        hits, conf = self.table(self.C, X)
        y = X[:, 0].astype(int)
        rows = np.arange(len(y))
        p = np.full((len(y), 3), (1 - conf) / 2)
        p[rows, y] = np.where(hits, conf, (1 - conf) / 4)
        p[rows, (y + 1) % 3] = np.where(hits, (1 - conf) / 2, 1 - conf)
        return np.log(p / p.sum(axis=1, keepdims=True)).astype(dtype)


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 3
    return y[:, None].astype(np.float64), y


GRID = np.array([1e-2, 1e-1, 1.0])


def _one_example_apart(C, X):
    """C = 0.01: 51 of 100 right but unconfident (high log-loss); C = 0.1: 50 right, confident."""
    hits = np.zeros(len(X), dtype=bool)
    if C == 1e-2:
        hits[:51] = True
        return hits, 0.4
    if C == 1e-1:
        hits[:50] = True
        return hits, 0.95
    hits[:10] = True
    return hits, 0.4


def test_tie_se_zero_keeps_exact_ties_only_with_the_paired_band():
    """sweep.py: "``tie_se=0`` keeps exact ties only". The paired band still added one example's share
    (the continuity correction), so a C one example worse with a lower log-loss won at tie_se=0,
    while a metric without per-example shares (unpaired band) kept the better C."""
    X, y = _data(100)

    def plain(scores, targets):  # top-1 without per-example shares: the unpaired band
        return top1(scores, targets)

    for metric in (top1, plain):
        res = sweep_C(X, y, X, y, metric, probe=_TableProbe(_one_example_apart), grid=GRID, coarse_step=1,
                      warm_start=False, tie_se=0.0)
        assert (res.best_C, res.best_score) == (1e-2, 51.0), res.tie_band
    # the default band still ties them (one example out of one discordant example)
    res = sweep_C(X, y, X, y, top1, probe=_TableProbe(_one_example_apart), grid=GRID, coarse_step=1, warm_start=False)
    assert (res.tie_band, res.best_C) == ("paired", 1e-1)


def test_an_empty_cv_fold_gives_the_clear_error_not_a_shares_mismatch():
    """fewshot --allow-fewer with classes of fewer shots than folds leaves a CV fold without
    validation shots: its metric is NaN. The paired band's share check ran first and reported
    "the metric's per-example shares add up to 0, not to its value nan" (reads like an internal
    bug) instead of the sweep's error about a validation metric that is not a finite number."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 2)  # 2 examples per class, k = 4: folds 2 and 3 get no validation shot
    X = (rng.normal(size=(6, 5)) + y[:, None]).astype(np.float32)
    test_y = np.arange(30) % 3
    test_X = (rng.normal(size=(30, 5)) + test_y[:, None]).astype(np.float32)
    for metric in (top1, mean_per_class_recall):
        with warnings.catch_warnings(), pytest.raises(ClipBenchError, match="not a finite number"):
            warnings.simplefilter("ignore", RuntimeWarning)
            run_fewshot(X, y, test_X, test_y, metric, 4, 0, config=ProbeConfig(n_threads=1), allow_fewer=True)


def test_per_example_must_give_one_share_per_validation_example():
    """Per-class shares of mean per-class recall (one per class) add up to the metric too, so the
    sum check passed and the paired band was computed over classes, not examples: a wrong band,
    silently. A list (not an array) crashed with AttributeError."""
    X, y = _data(30)

    def table(C, Xv):
        return np.arange(len(Xv)) < {1e-2: 10, 1e-1: 20, 1.0: 25}[C], 0.6

    def per_class(scores, targets):
        pred, classes = scores.argmax(axis=1), np.unique(targets)
        return np.array([100.0 * np.mean(pred[targets == c] == c) / len(classes) for c in classes])

    def recall(scores, targets):
        return mean_per_class_recall(scores, targets)

    def listed(scores, targets):
        return top1(scores, targets)

    recall.per_example = per_class
    listed.per_example = lambda s, t: list(top1.per_example(s, t))
    with pytest.raises(ClipBenchError, match="one per validation example"):
        sweep_C_folds([(X, y, X, y)], recall, probe=_TableProbe(table), grid=GRID, coarse_step=1, warm_start=False)
    res = sweep_C_folds([(X, y, X, y)], listed, probe=_TableProbe(table), grid=GRID, coarse_step=1, warm_start=False)
    assert (res.tie_band, res.best_C) == ("paired", 1.0)


def test_shares_off_by_one_example_are_caught_on_a_large_validation_set():
    """The sum check's rtol=1e-4 let a per_example that miscounts one example pass on any validation
    set over ~12,500 examples (one example's share is below 1e-4 of the score there)."""
    X, y = _data(30000)

    def table(C, Xv):
        return np.arange(len(Xv)) < {1e-2: 20000, 1e-1: 24000, 1.0: 24010}[C], 0.6

    def off_by_one(scores, targets):
        return top1(scores, targets)

    def shares(scores, targets):
        s = top1.per_example(scores, targets)
        s[-1] = 100.0 / len(targets)  # a wrong example counted as right
        return s

    off_by_one.per_example = shares
    with pytest.raises(ClipBenchError, match="per-example shares add up"):
        sweep_C_folds([(X, y, X, y)], off_by_one, probe=_TableProbe(table), grid=GRID, coarse_step=1,
                      warm_start=False)
    # the built-in shares pass the tighter check, float32 ones (> 65536 examples per fold) included
    X, y = _data(70000)
    res = sweep_C_folds([(X, y, X, y)], top1, probe=_TableProbe(table), grid=GRID, coarse_step=1, warm_start=False)
    assert res.tie_band == "paired"


def _two_bests(b_confident: bool):
    """C = 0.01 (A) and 0.1 (B) both get 50 of 100 right; C = 1 gets 47: the 3 it loses against A
    are the only discordant examples (A beats it beyond the paired band), while against B (right on
    other examples) 63 examples are discordant, a tie. The log-loss decides which of A and B is "the
    best" the band is measured from."""
    def table(C, X):
        i = np.arange(len(X))
        if C == 1e-2:
            return i < 50, 0.6 if b_confident else 0.9
        if C == 1e-1:
            return (i >= 30) & (i < 80), 0.9 if b_confident else 0.6
        return i < 47, 0.6
    return table


def test_a_c_beaten_by_one_of_two_equal_best_c_is_not_tied_whichever_has_the_lower_log_loss():
    """With two C at the exact top score, the band was measured from the one with the lower
    log-loss only: a C that the paired test resolves as worse than the other top C still tied, and
    the prior then picked it (3 points under the top). Which C tie must not hinge on the log-loss
    of equally scored C."""
    X, y = _data(100)
    picks = []
    for b_confident in (False, True):
        res = sweep_C(X, y, X, y, top1, probe=_TableProbe(_two_bests(b_confident)), grid=GRID, coarse_step=1,
                      warm_start=False, prior_C=1.0)
        picks.append((res.best_C, res.best_score))
    assert picks[0][1] == 50.0 and picks[1][1] == 50.0, picks


@pytest.mark.parametrize("labels", ["strings", "floats from 1"])
def test_labels_other_than_class_indices_are_an_error_not_a_wrong_score(labels):
    """(Older than the paired band.) Without integer labels ``n_classes`` is None and probe_scores
    returned the log-probabilities in ``classes_`` order, which top-1 compared with the raw labels:
    string labels scored 0.0 on val and test, float labels 1..10 scored 3 % with C at the grid's low
    end, both as results."""
    from sklearn.datasets import load_digits

    from clip_bench.probe.protocol import run_linear_probe

    X, y = load_digits(return_X_y=True)
    X, y = (X / 16).astype(np.float32)[:500], y[:500]
    lab = np.array(list("abcdefghij"))[y] if labels == "strings" else (y + 1).astype(np.float64)
    with pytest.raises(ClipBenchError, match="0..K-1"):
        run_linear_probe(X[:300], lab[:300], X[300:400], lab[300:400], X[400:], lab[400:], top1,
                         config=ProbeConfig(n_threads=1, coarse_step=32))
