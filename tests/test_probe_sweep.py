"""The paper's C search (grid + parametric binary search) and the linear-probe protocol."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from clip_bench.errors import ClipBenchError
from clip_bench.probe import (
    LogisticRegressionProbe,
    ProbeConfig,
    c_grid,
    parametric_search,
    probe_scores,
    run_linear_probe,
    stratified_holdout,
    sweep_C,
    sweep_C_folds,
)


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
    import clip_bench.probe.sweep as sweep_module
    from clip_bench.metrics import top1

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
    from clip_bench.probe.sweep import grid_position

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
    from clip_bench.probe.sweep import grid_edge

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
    from clip_bench.probe.sweep import paired_band, proportion_se

    acc, shares = _steady_rise()
    for prior in (10.0, 40.0, 60.0):
        paired = parametric_search(lambda i: (acc[i], 0.0), 97, band=lambda t, i: paired_band(shares[t], shares[i]),
                                   prior=prior)[0]
        unpaired = parametric_search(lambda i: (acc[i], 0.0), 97, band=lambda t, i: proportion_se(acc[t], 200),
                                     prior=prior)[0]
        assert acc[96] - acc[paired] <= 1.0  # within two validation examples of the top
        assert acc[96] - acc[unpaired] >= 2.5  # what the unpaired band gave


def test_paired_se_counts_only_the_examples_two_C_score_differently():
    from clip_bench.probe.sweep import paired_band, paired_se

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
    from clip_bench.probe.sweep import paired_band

    best = parametric_search(lambda i: (acc[i], 0.0), 97, band=lambda t, i: paired_band(shares[t], shares[i]),
                             prior=37.0)[0]
    assert best == 37


def test_sweep_uses_the_paired_band_when_the_metric_has_per_example_shares():
    from clip_bench.metrics import top1

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:400].astype(np.float32)
    y = y[:400]
    grid = c_grid()[::8]
    paired = sweep_C(X[:300], y[:300], X[300:], y[300:], top1, grid=grid)
    unpaired = sweep_C(X[:300], y[:300], X[300:], y[300:], accuracy, grid=grid)
    assert (paired.tie_band, unpaired.tie_band) == ("paired", "unpaired")
    assert paired.as_dict()["tie_band"] == "paired"

    def inconsistent(scores, targets):
        return top1(scores, targets)

    inconsistent.per_example = lambda s, t: np.full(len(t), 1.0)  # does not add up to the metric
    with pytest.raises(ClipBenchError, match="per-example shares"):
        sweep_C(X[:300], y[:300], X[300:], y[300:], inconsistent, grid=grid)


def test_per_example_shares_add_up_to_each_metric():
    from clip_bench.metrics import mean_per_class_recall, mean_top1_top5, top1

    rng = np.random.default_rng(1)
    scores, targets = rng.normal(size=(300, 12)), rng.integers(0, 12, 300)
    targets[:40] = 3  # unbalanced classes: mean per-class recall weighs examples unequally
    scores[:5, 2] = -np.inf  # a class the probe never saw: never a top-5 hit
    for metric in (top1, mean_per_class_recall, mean_top1_top5):
        assert metric.per_example(scores, targets).sum() == pytest.approx(metric(scores, targets))
