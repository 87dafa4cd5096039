"""The paper's C search (grid + parametric binary search, the paired tie band, validation scores that rank as
the logits) and the linear-probe protocol."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from clip_bench.metrics.classification import map_11point, mean_per_class_recall, roc_auc, top1
from clip_bench.probe import (
    LogisticRegressionProbe,
    ProbeConfig,
    c_grid,
    parametric_search,
    probe_scores,
    run_fewshot,
    run_linear_probe,
    stratified_holdout,
    sweep_C,
    sweep_C_folds,
)
from clip_bench.probe.c_search import log_loss
from clip_bench.util.errors import ClipBenchError


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return 100.0 * float(np.mean(scores.argmax(axis=1) == targets))


def test_grid_is_97_points_at_8_per_decade():
    grid = c_grid()
    assert grid.shape == (97,)
    assert grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e6)
    np.testing.assert_allclose(np.diff(np.log10(grid)), 1 / 8)
    np.testing.assert_allclose(grid[::16], [1e-6, 1e-4, 1e-2, 1, 1e2, 1e4, 1e6])
    with pytest.raises(ClipBenchError):
        c_grid(1e-6, 3e5, 8)


@pytest.mark.parametrize("peak", range(97))
def test_binary_search_finds_any_single_peak_in_15_fits(peak):
    calls = []

    def score(i):
        calls.append(i)
        return -float((i - peak - 0.1) ** 2)  # one C leads at every stage (no exact ties)

    best, scores, rounds, _ = parametric_search(score, 97)
    assert best == peak
    assert len(calls) == len(set(calls)) == len(scores) <= 15
    assert calls[:7] == [0, 16, 32, 48, 64, 80, 96]
    assert rounds == 4


def test_binary_search_ties_prefer_smaller_C():
    best, _, _, _ = parametric_search(lambda i: float(min(i, 40)), 97)
    assert best == 40


def _plateau_with_hidden_peak(i: int) -> float:
    """Val accuracy flat at 90 over most of the grid, 91 on a narrow peak between coarse points."""
    if 54 <= i <= 57:
        return 91.0
    return 90.0 if 20 <= i <= 85 else 50.0


def test_plateau_does_not_hide_a_peak():
    """The previous search refined only around the smallest tied coarse point (C = 1e-2, index 32)
    and returned it; refining around every tied point finds the peak."""
    calls = []

    def score(i):
        calls.append(i)
        return _plateau_with_hidden_peak(i)

    best, scores, _, _ = parametric_search(score, 97)
    assert 54 <= best <= 57 and scores[best] == 91.0
    assert len(calls) == len(set(calls)) <= 31


def test_ties_go_to_the_lower_log_loss_not_the_smaller_C():
    def score(i):
        return (90.0 if i >= 30 else 80.0), (i - 61) ** 2 / 100.0  # accuracy plateau, log-loss minimum at 61

    best, _, _, losses = parametric_search(score, 97)
    assert best == 61 and losses[61] == 0.0


def _wide_plateau(i: int) -> tuple[float, float]:
    """Within-shot CV as measured on digits (k = 4): accuracy ties from C = 1e-2 up to the ceiling, the
    log-loss keeps falling as C grows (confident probes on near-separable shots)."""
    return (90.0 if i >= 32 else 60.0), 1.0 - i / 200


def test_ties_go_to_the_prior_C_when_one_is_given():
    """The log-loss rule sent a wide plateau to the grid ceiling (C = 1e6 on digits k = 4, seed 0);
    with a prior, the tied C nearest to it wins, and the grid points next to it are among the first
    fits. A prior off the plateau, resolved as worse, is refuted and ranks nothing."""
    calls = []

    def score(i):
        calls.append(i)
        return _wide_plateau(i)

    assert parametric_search(_wide_plateau, 97)[0] == 96  # no prior: the lowest log-loss
    best, scores, _, _ = parametric_search(score, 97, prior=40.3)
    assert best == 40 and scores[40] == 90.0
    assert {40, 41} <= set(calls[:9]) and len(calls) == len(set(calls)) <= 33
    # a prior off the plateau is refuted by the data (it scores worse): it ranks nothing, the log-loss does
    record: dict = {}
    assert parametric_search(_wide_plateau, 97, prior=10.0, record=record)[0] == 96
    assert record["prior_refuted"] is True


def test_whether_a_prior_is_refuted_does_not_jump_at_a_half_way_point():
    """Both grid points next to the prior are fitted, and the prior is refuted only when neither ties:
    a prior 0.49 or 0.5 steps below the plateau's edge is not refuted either way (with the nearest grid
    point alone, 31.49 was refuted and the log-loss sent the pick 8 decades up, to the ceiling)."""
    record: dict = {}
    for prior in (31.49, 31.5, 31.51, 31.0001):
        assert parametric_search(_wide_plateau, 97, band=2.0, prior=prior, record=record)[0] == 32, prior
        assert record["prior_refuted"] is False
    assert parametric_search(_wide_plateau, 97, band=2.0, prior=30.9, record=record)[0] == 96
    assert record["prior_refuted"] is True  # both neighbours (30, 31) are resolved as worse
    with pytest.raises(ClipBenchError, match="prior"):
        parametric_search(_wide_plateau, 97, prior=float("nan"))


def test_a_non_finite_validation_log_loss_is_an_error(monkeypatch):
    import clip_bench.probe.c_search as sweep_module
    from clip_bench.metrics.classification import top1

    X, y = load_digits(return_X_y=True)
    folds = [(X[:300].astype(np.float32), y[:300], X[300:400].astype(np.float32), y[300:400])]
    monkeypatch.setattr(sweep_module, "log_loss", lambda *a, **k: float("nan"))
    with pytest.raises(ClipBenchError, match="log-loss is not a finite number"):
        sweep_module.sweep_C_folds(folds, top1, grid=c_grid()[::16])


def test_a_refuted_prior_does_not_pull_the_pick_to_the_plateau_edge():
    """Within-shot CV as measured on synthetic 512-d features, 100 classes, k = 2: the CV accuracy
    rises from the prior C onto a plateau that runs to the grid ceiling, and the log-loss is lowest
    inside the plateau. The prior's own C is resolved as worse than the best, so it must not decide:
    ranking towards it picked the plateau's low edge, where two seeds lost 11 and 13 points."""
    def score(i):
        return (12.0 if i >= 32 else 7.0), 3.0 + ((i - 60) / 30) ** 2

    record: dict = {}
    assert parametric_search(score, 97, band=2.0, prior=20.0, record=record)[0] == 60  # the log-loss minimum
    assert record["prior_refuted"] is True and 32 in record["tied"] and 20 not in record["tied"]
    # a band wide enough to tie the prior's C: the data cannot refute it, and it decides
    assert parametric_search(score, 97, band=6.0, prior=20.0, record=record)[0] == 20
    assert record["prior_refuted"] is False
    parametric_search(score, 97, band=2.0, record=record)
    assert record["prior_refuted"] is None  # no prior


def test_the_main_metric_still_beats_the_prior():
    """The prior only ranks C the validation data cannot tell apart (within the band)."""
    def score(i):
        return (95.0 if 66 <= i <= 74 else 90.0 if i >= 20 else 60.0), 0.0

    best, _, _, _ = parametric_search(score, 97, band=2.0, prior=40.0)
    assert 66 <= best <= 74
    assert parametric_search(score, 97, band=6.0, prior=40.0)[0] == 40  # within the band: the prior decides


def test_grid_position_of_a_prior_C():
    from clip_bench.probe.c_search import grid_position

    grid = c_grid()
    assert grid_position(1.0, grid) == pytest.approx(48.0)
    assert grid_position(10 ** -1.0625, grid) == pytest.approx(39.5)
    assert grid_position(1e-9, grid) == 0.0 and grid_position(None, grid) is None
    with pytest.raises(ClipBenchError):
        grid_position(0.0, grid)


def test_scores_within_the_validation_resolution_tie():
    """With a band, a main score one example above the best-log-loss C does not win."""
    def score(i):
        return (90.25 if i == 64 else 90.0 if 40 <= i <= 80 else 70.0), abs(i - 48) / 10

    assert parametric_search(score, 97)[0] == 64  # exact ties only
    assert parametric_search(score, 97, band=0.5)[0] == 48


@pytest.mark.parametrize("seed", range(5))
def test_number_of_fits_is_bounded_on_any_scores(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 3, 97).astype(float)  # many ties everywhere
    calls = []
    parametric_search(lambda i: calls.append(i) or float(table[i]), 97)
    assert len(calls) <= 31
    calls.clear()
    parametric_search(lambda i: calls.append(i) or float(table[i]), 97, prior=float(rng.uniform(0, 96)))
    assert len(calls) == len(set(calls)) <= 33  # the grid points next to the prior are two more coarse points


def test_pick_at_the_grid_edge_is_recorded():
    from clip_bench.probe.c_search import grid_edge

    best, _, _, _ = parametric_search(lambda i: float(i), 97)
    assert (best, grid_edge(best, 97)) == (96, "high")
    assert grid_edge(0, 97) == "low" and grid_edge(50, 97) is None


# Below C ~ 1e-3 the fit mostly learns the class prior (the intercept is not penalised), so the
# confidence is flat (and not monotone at the 1e-8 level) there: targets sit where it moves.
TARGETS = (31, 37, 45, 58, 70)


@pytest.fixture(scope="module")
def confidence_problem():
    """A constructed problem whose best C is known: the 'metric' is closeness of the mean top-class
    probability on the training set to a target, which grows strictly with C. Exact fits (float64,
    tight tol) make the answer independent of warm starts."""
    rng = np.random.default_rng(0)
    means = np.array([[0, 0, 0, 0, 0], [1.5, 0, 0, 0, 0], [0, 1.5, 0, 0, 0]], dtype=float)
    y = rng.integers(0, 3, 300)
    X = (means[y] + rng.standard_normal((300, 5))).astype(np.float32)
    template = LogisticRegressionProbe(dtype="float64", tol=1e-9, max_iter=5000, n_threads=1)
    grid = c_grid()
    conf = {}
    for t in TARGETS:  # cold fits at the targets and their neighbours
        for i in (t - 1, t, t + 1):
            conf[i] = float(template.clone(C=grid[i]).fit(X, y).predict_proba(X).max(1).mean())
        assert conf[t - 1] < conf[t] < conf[t + 1]  # the metric is strictly monotone around the target
    return X, y, template, conf


@pytest.mark.parametrize("target", TARGETS)
def test_sweep_finds_known_best_C(confidence_problem, target):
    X, y, template, conf = confidence_problem

    def metric(scores, _targets):
        return -abs(float(np.exp(scores).max(1).mean()) - conf[target])  # scores are log-probabilities

    res = sweep_C(X, y, X, y, metric, probe=template)
    assert res.best_C == pytest.approx(c_grid()[target])
    assert res.n_fits == len(res.scores) <= 15
    assert res.best_score == max(s for _, s in res.scores)
    assert res.wall_time_s > 0 and res.n_iter > 0 and res.solver == "torch"


def test_sklearn_solver_sweep_agrees(confidence_problem):
    X, y, _, conf = confidence_problem

    def metric(scores, _targets):
        return -abs(float(np.exp(scores).max(1).mean()) - conf[37])

    res = sweep_C(X, y, X, y, metric, probe=LogisticRegressionProbe(solver="sklearn", n_threads=1))
    assert res.best_C == pytest.approx(c_grid()[37], rel=0.35)  # sklearn's default tol: within one step
    assert res.solver == "sklearn"


def test_warm_start_saves_iterations(confidence_problem):
    X, y, _, _ = confidence_problem
    template = LogisticRegressionProbe(n_threads=1)
    warm = sweep_C(X, y, X, y, accuracy, probe=template, warm_start=True)
    cold = sweep_C(X, y, X, y, accuracy, probe=template, warm_start=False)
    assert warm.n_iter < cold.n_iter


def test_probe_scores_pads_classes_missing_from_train():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.repeat([0, 1, 3], 20)
    probe = LogisticRegressionProbe(n_threads=1).fit(X, y)
    s = probe_scores(probe, X, n_classes=5)
    assert s.shape == (60, 5)
    assert np.all(s[:, [2, 4]] == -np.inf) and np.allclose(np.exp(s).sum(1), 1)  # log-probabilities


@pytest.fixture(scope="module")
def digits_splits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, va, te = perm[:1000], perm[1000:1400], perm[1400:]
    return X[tr], y[tr], X[va], y[va], X[te], y[te]


def test_linear_probe_protocol_torch_matches_sklearn(digits_splits):
    cfg = ProbeConfig(n_threads=1)
    fast = run_linear_probe(*digits_splits, accuracy, solver="torch", config=cfg)
    ref = run_linear_probe(*digits_splits, accuracy, solver="sklearn", config=cfg)
    assert fast["test_score"] > 93
    # sklearn's loose default tol moves single val examples, so the picks can differ by a grid step
    assert abs(np.log10(fast["C"] / ref["C"])) <= 2 / 8 + 1e-9
    assert abs(fast["test_score"] - ref["test_score"]) <= 0.76  # 3 of 397 test images
    assert (fast["n_train"], fast["n_val"], fast["n_refit"], fast["n_test"]) == (1000, 400, 1400, 397)
    assert fast["val_source"] == "given" and fast["sweep_n_fits"] <= 31 and fast["sweep_converged"]
    assert fast["C"] in [c for c, _ in fast["sweep"]]
    assert fast["C_at_grid_edge"] is None and len(fast["sweep_log_loss"]) == len(fast["sweep"])
    assert all(f["converged"] and f["n_iter"] >= 0 for f in fast["sweep_fits"])


def test_refit_warm_start_with_classes_missing_from_the_sweep_split(digits_splits):
    """linprobe --limit 10 crashed: the sweep's training part lacked classes the refit has."""
    trX, trY, vaX, vaY, teX, teY = digits_splits
    keep = trY != 7  # class 7 only in val
    res = run_linear_probe(trX[keep][:200], trY[keep][:200], vaX, vaY, teX, teY, accuracy,
                           config=ProbeConfig(n_threads=1))
    assert res["converged"] and res["test_score"] > 80


def test_linear_probe_holds_out_val_reproducibly(digits_splits):
    trX, trY, _, _, teX, teY = digits_splits
    cfg = ProbeConfig(n_threads=1, val_fraction=0.25)
    a = run_linear_probe(trX, trY, None, None, teX, teY, accuracy, seed=3, config=cfg)
    b = run_linear_probe(trX, trY, None, None, teX, teY, accuracy, seed=3, config=cfg)
    assert a["val_source"] == "held_out" and a["val_fraction"] == 0.25
    assert a["n_train"] + a["n_val"] == a["n_refit"] == 1000
    assert 230 <= a["n_val"] <= 270
    assert (a["C"], a["test_score"], a["sweep"]) == (b["C"], b["test_score"], b["sweep"])


def test_stratified_holdout():
    labels = np.array([0] * 10 + [1] * 5 + [2])
    tr, va = stratified_holdout(labels, 0.2, seed=0)
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 1, 0]  # the singleton stays in train
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 16
    tr2, va2 = stratified_holdout(labels, 0.2, seed=1)
    assert not np.array_equal(va, va2) or not np.array_equal(tr, tr2)


def test_multilabel_protocol_with_map():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((900, 12)).astype(np.float32)
    Y = (X[:, :5] + 0.8 * rng.standard_normal((900, 5)) > 0.5).astype(np.int64)

    def mean_ap(scores, targets):
        return 100.0 * float(average_precision_score(targets, scores, average="macro"))

    res = run_linear_probe(X[:500], Y[:500], X[500:700], Y[500:700], X[700:], Y[700:], mean_ap,
                           config=ProbeConfig(n_threads=1))
    assert res["multilabel"] is True
    assert res["test_score"] > 70


def test_multilabel_validation_scores_the_logits_once_per_fit(monkeypatch):
    """The metric reads the logits and the log-loss their log-sigmoids: one pass over the validation
    features per fitted C, not two."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 12)).astype(np.float32)
    Y = (X[:, :4] + 0.8 * rng.standard_normal((400, 4)) > 0.5).astype(np.int64)
    calls = []
    original = LogisticRegressionProbe.decision_function

    def counted(self, X, *a, **k):
        calls.append(len(X))
        return original(self, X, *a, **k)

    monkeypatch.setattr(LogisticRegressionProbe, "decision_function", counted)

    def mean_ap(scores, targets):
        return 100.0 * float(average_precision_score(targets, scores, average="macro"))

    res = sweep_C_folds([(X[:300], Y[:300], X[300:], Y[300:])], mean_ap,
                        probe=LogisticRegressionProbe(multilabel=True, n_threads=1), grid=c_grid()[::8])
    assert len(calls) == res.n_fits and set(calls) == {100}
    assert np.isfinite(res.best_log_loss) and res.best_score > 60


def _steady_rise(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Validation accuracy that rises steadily with C (the scores of a CV on features where less
    regularisation is always better): 40 of n examples right everywhere, 40 more become right one
    after another along the grid and stay right. Returns (scores, per-example shares) per grid index."""
    threshold = np.full(n, 10**6)
    threshold[:40] = 0
    threshold[40:80] = np.linspace(1, 96, 40).round()
    shares = np.array([(threshold <= i) * 100.0 / n for i in range(97)])
    return shares.sum(axis=1), shares


def test_a_steady_rise_is_resolved_by_the_paired_band():
    """Neighbouring C disagree on few examples, so the SE of their *difference* is far smaller than
    each score's SE: the paired band resolves a steady 20 -> 40 % rise that the unpaired band (the
    rule before) ties over 7 points, where a prior at the low end then picked 3 points under the top."""
    from clip_bench.probe.c_search import paired_band, proportion_se

    acc, shares = _steady_rise()
    for prior in (10.0, 40.0, 60.0):
        paired = parametric_search(lambda i: (acc[i], 0.0), 97, band=lambda t, i: paired_band(shares[t], shares[i]),
                                   prior=prior)[0]
        unpaired = parametric_search(lambda i: (acc[i], 0.0), 97, band=lambda t, i: proportion_se(acc[t], 200),
                                     prior=prior)[0]
        assert acc[96] - acc[paired] <= 1.0  # within two validation examples of the top
        assert acc[96] - acc[unpaired] >= 2.5  # what the unpaired band gave


def test_paired_se_counts_only_the_examples_two_C_score_differently():
    from clip_bench.probe.c_search import paired_band, paired_se

    a = np.zeros(100)
    a[:60] = 1.0
    b = a.copy()
    b[[0, 1, 70]] = [0.0, 0.0, 1.0]  # 2 examples lost, 1 gained: 3 discordant
    assert paired_se(a, b) == pytest.approx(np.sqrt(3))
    assert paired_se(a, a) == 0.0
    # the band adds one example's share (McNemar's continuity correction): 2 wins to 0 is a tie
    assert paired_band(a, b, 1.0) == pytest.approx(np.sqrt(3) + 1.0)
    c = a.copy()
    c[[0, 1]] = 0.0
    assert 2.0 <= paired_band(a, c, 1.0) and paired_band(a, a, 1.0) == 0.0

def test_paired_band_keeps_the_prior_where_C_only_reshuffle_predictions():
    """A plateau where neighbouring C disagree on many examples but none is better: the differences
    are within their paired SE, so the prior still decides."""
    rng = np.random.default_rng(0)
    n = 400
    base = rng.random(n) < 0.7
    shares = []
    for _ in range(97):  # each C flips the same small number of predictions each way
        h = base.copy()
        right, wrong = np.flatnonzero(h), np.flatnonzero(~h)
        h[rng.choice(right, 6, replace=False)] = False
        h[rng.choice(wrong, 6, replace=False)] = True
        shares.append(h * 100.0 / n)
    shares = np.array(shares)
    acc = shares.sum(axis=1)  # all exactly 70 %
    from clip_bench.probe.c_search import paired_band

    best = parametric_search(lambda i: (acc[i], 0.0), 97, band=lambda t, i: paired_band(shares[t], shares[i]),
                             prior=37.0)[0]
    assert best == 37


def test_sweep_uses_the_paired_band_when_the_metric_has_per_example_shares():
    from clip_bench.metrics.classification import top1

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:400].astype(np.float32)
    y = y[:400]
    grid = c_grid()[::8]
    paired = sweep_C(X[:300], y[:300], X[300:], y[300:], top1, grid=grid)
    unpaired = sweep_C(X[:300], y[:300], X[300:], y[300:], accuracy, grid=grid)
    assert (paired.tie_band, unpaired.tie_band) == ("paired", "unpaired")
    assert paired.record()["C_tie_band"] == "paired"

    def inconsistent(scores, targets):
        return top1(scores, targets)

    inconsistent.per_example = lambda s, t: np.full(len(t), 1.0)  # does not add up to the metric
    with pytest.raises(ClipBenchError, match="per-example shares"):
        sweep_C(X[:300], y[:300], X[300:], y[300:], inconsistent, grid=grid)


def test_per_example_shares_add_up_to_each_metric():
    from clip_bench.metrics.classification import mean_per_class_recall, mean_top1_top5, top1

    rng = np.random.default_rng(1)
    scores, targets = rng.normal(size=(300, 12)), rng.integers(0, 12, 300)
    targets[:40] = 3  # unbalanced classes: mean per-class recall weighs examples unequally
    scores[:5, 2] = -np.inf  # a class the probe never saw: never a top-5 hit
    for metric in (top1, mean_per_class_recall, mean_top1_top5):
        assert metric.per_example(scores, targets).sum() == pytest.approx(metric(scores, targets))


def _confident(seed: int = 1, n: int = 400, d: int = 16, labels: int = 0):
    """Nearly separable features: a large-C probe puts many logits above 17 (sigmoid > 1 - 6e-8)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    if labels:
        y = np.stack([X @ rng.normal(size=d) > 0 for _ in range(labels)], 1).astype(np.int64)
    else:
        y = (X @ rng.normal(size=d) + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :]


@pytest.mark.parametrize("multilabel", [False, True])
def test_validation_scores_of_sigmoid_probes_are_the_float64_scores(multilabel):
    """The sweep scored validation in float32 probabilities: sigmoid outputs above 1 - 6e-8 all
    rounded to 1.0, so ROC AUC / 11-point mAP saw ties and the multi-label log-loss (the tie-breaker)
    charged log(1e-15) for every confident miss. The C-selection score must be the test-time score."""
    Xtr, ytr, Xva, yva = _confident(labels=5 if multilabel else 0)
    metric = map_11point if multilabel else roc_auc
    C = 1e4
    sweep = sweep_C(Xtr, ytr, Xva, yva, metric, probe=LogisticRegressionProbe(multilabel=multilabel),
                    grid=np.array([C]))
    ref = LogisticRegressionProbe(C=C, multilabel=multilabel).fit(Xtr, ytr)
    proba = ref.predict_proba(Xva)
    assert (proba == 1.0).sum() < (proba.astype(np.float32) == 1.0).sum()  # the data do hit the float32 rounding
    scores = probe_scores(ref, Xva)
    assert sweep.best_score == metric(scores, yva)
    assert sweep.best_log_loss == pytest.approx(log_loss(ref.predict_log_proba(Xva), yva, ref.classes_, multilabel),
                                                rel=1e-9)


def test_a_validation_metric_that_is_not_finite_is_an_error():
    """A multi-label validation split without a single positive makes 11-point mAP the mean of nothing
    (NaN): C cannot be chosen on it, so the search stops with one line instead of a NaN pick."""
    import warnings

    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    Y = (X[:, :3] > 0).astype(np.int64)
    vX, vY = X[:20], np.zeros((20, 3), dtype=np.int64)
    with warnings.catch_warnings(), pytest.raises(ClipBenchError, match="not a finite number"):
        warnings.simplefilter("ignore", RuntimeWarning)
        sweep_C(X, Y, vX, vY, map_11point, probe=LogisticRegressionProbe(multilabel=True), grid=np.array([0.1, 1.0]))


@pytest.mark.parametrize("multilabel", [False, True])
def test_probe_scores_rank_as_the_logits_where_probabilities_saturate(multilabel):
    """Probabilities round to 1.0 at sigmoid logits above ~37 (float64): confident hits and confident
    misses then tie, and ROC AUC / mAP are computed on ties the model did not make. The probe's scores
    (log-probabilities) rank exactly as its logits."""
    Xtr, ytr, Xva, yva = _confident(labels=5 if multilabel else 0)
    probe = LogisticRegressionProbe(C=1e4, multilabel=multilabel).fit(Xtr, ytr)
    far = np.concatenate([Xva, 40 * Xva])  # the same directions, far out: logits of hundreds
    y_far = np.concatenate([yva, yva])
    logits = probe.decision_function(far)
    assert (probe.predict_proba(far) == 1.0).any()  # the data do saturate the probabilities
    if multilabel:
        expected = map_11point(logits, y_far)
    else:
        from sklearn.metrics import roc_auc_score

        expected = 100.0 * roc_auc_score(y_far, logits)
    metric = map_11point if multilabel else roc_auc
    assert metric(probe_scores(probe, far), y_far) == pytest.approx(expected, abs=1e-12)
    assert metric(probe.predict_proba(far), y_far) != pytest.approx(expected, abs=1e-6)  # the old scores tie


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
    assert sweep.best_log_loss == pytest.approx(log_loss(ref.predict_log_proba(far), y_far, ref.classes_, True),
                                                rel=1e-9)


def test_multilabel_log_loss_skips_ignored_entries():
    lp = np.log(np.array([[0.9, 0.2], [0.3, 0.6]]))
    full = log_loss(lp, np.array([[1, 0], [0, 1]]), None, True)
    skipped = log_loss(lp, np.array([[1, -1], [0, 1]]), None, True)
    assert skipped == pytest.approx(full - (-np.log(0.8)) / 2)


def test_top5_never_credits_a_class_the_probe_never_saw():
    """With 3 of 8 classes in the shots, the 5 -inf columns tie: argpartition put some of them in the
    top 5, so targets of unseen classes counted as top-5 hits depending on the tie order."""
    from clip_bench.metrics.classification import topk_accuracy
    from clip_bench.results.outcomes import outcomes_for

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
    """c_search.py: "``tie_se=0`` keeps exact ties only". The paired band still added one example's share
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


def test_a_probe_without_a_search_records_the_same_fields_as_one_with_a_search():
    """The few-shot row of a probe whose C comes from the prior alone has every search field, set to nothing."""
    from clip_bench.probe.c_search import NO_SEARCH_RECORD, SweepResult

    searched = SweepResult(best_C=1.0, best_score=50.0, scores=[(1.0, 50.0)], n_fits=1, n_iter=3, rounds=0,
                           wall_time_s=0.1, solver="torch", log_losses=[(1.0, 0.7)])
    assert set(NO_SEARCH_RECORD) == set(searched.record())
    assert NO_SEARCH_RECORD["sweep_n_fits"] == 0
