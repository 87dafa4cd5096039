"""The torch L-BFGS probe against scikit-learn's LogisticRegression (the paper's reference)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from clip_bench.probe import LogisticRegressionProbe, logistic_objective
from clip_bench.probe.objective import path_start
from clip_bench.util.errors import ClipBenchError


def synthetic(n: int, k: int = 25, d: int = 40, seed: int = 0, offset: float = 0.0):
    """Class means + unit Gaussian noise; the means (and a common offset) are fixed across seeds."""
    rng = np.random.default_rng(123)
    means = rng.standard_normal((k, d)) * 0.6
    off = rng.standard_normal(d) * offset
    r = np.random.default_rng(seed)
    y = r.integers(0, k, n)
    return (means[y] + r.standard_normal((n, d)) + off).astype(np.float32), y


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr).astype(np.float32), ytr, scaler.transform(Xte).astype(np.float32), yte


@pytest.fixture(scope="module")
def synth25():
    Xtr, ytr = synthetic(2000, seed=1)
    Xte, yte = synthetic(2000, seed=2)
    return Xtr, ytr, Xte, yte


def _parity(Xtr, ytr, Xte, yte, C):
    ref = LogisticRegressionProbe(C=C, solver="sklearn", n_threads=1).fit(Xtr, ytr)
    fast = LogisticRegressionProbe(C=C, solver="torch", device="cpu", n_threads=1).fit(Xtr, ytr)
    acc_ref, acc_fast = 100 * ref.score(Xte, yte), 100 * fast.score(Xte, yte)
    obj_ref = logistic_objective(Xtr, ytr, ref.coef_, ref.intercept_, C)
    obj_fast = logistic_objective(Xtr, ytr, fast.coef_, fast.intercept_, C)
    return acc_ref, acc_fast, obj_ref, obj_fast, fast


@pytest.mark.parametrize("C", [0.01, 0.1])
def test_parity_synthetic_25_classes(synth25, C):
    acc_ref, acc_fast, obj_ref, obj_fast, fast = _parity(*synth25, C)
    assert len(fast.classes_) == 25 and fast.coef_.shape == (25, 40)
    assert abs(acc_ref - acc_fast) <= 0.5
    assert abs(obj_fast - obj_ref) <= 1e-3 * obj_ref
    assert fast.converged_


@pytest.mark.parametrize("C", [0.1, 1.0])
def test_parity_digits(digits, C):
    acc_ref, acc_fast, obj_ref, obj_fast, fast = _parity(*digits, C)
    assert acc_fast > 90.0
    assert abs(acc_ref - acc_fast) <= 0.5
    assert abs(obj_fast - obj_ref) <= 1e-3 * obj_ref
    # objective_ is reported on sklearn's scale (mean loss + ||W||^2 / (2 C n)), so it is comparable
    assert fast.objective_ == pytest.approx(obj_fast, rel=1e-5)


def test_same_minimiser_as_sklearn_when_both_converge_tightly(digits):
    """With tolerances far below sklearn's default both solvers reach the same optimum, even at a
    large C where the default tol stops early: the objective really is sklearn's."""
    Xtr, ytr, _, _ = digits
    C = 100.0
    ref = LogisticRegression(solver="lbfgs", C=C, tol=1e-10, max_iter=5000).fit(Xtr.astype(np.float64), ytr)
    fast = LogisticRegressionProbe(C=C, dtype="float64", tol=1e-9, max_iter=5000, n_threads=1).fit(Xtr, ytr)
    obj_ref = logistic_objective(Xtr, ytr, ref.coef_, ref.intercept_, C)
    obj_fast = logistic_objective(Xtr, ytr, fast.coef_, fast.intercept_, C)
    assert obj_fast == pytest.approx(obj_ref, rel=1e-6)
    np.testing.assert_allclose(fast.coef_, ref.coef_, atol=2e-3 * np.abs(ref.coef_).max())


def test_never_worse_than_sklearn_on_offset_features():
    """A large common offset (as CLIP features have) makes sklearn stop well above the optimum; the
    torch solver (centred coordinates) must not be worse."""
    Xtr, ytr = synthetic(1500, seed=1, offset=3.0)
    for C in (0.01, 1.0):
        ref = LogisticRegressionProbe(C=C, solver="sklearn", n_threads=1).fit(Xtr, ytr)
        fast = LogisticRegressionProbe(C=C, n_threads=1).fit(Xtr, ytr)
        assert fast.objective_ <= ref.objective_ * (1 + 1e-4)


def test_binary_single_logit_matches_sklearn():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 12)).astype(np.float32)
    y = np.where(X[:, 0] + 0.5 * X[:, 1] + rng.standard_normal(600) > 0, "dog", "cat")
    ref = LogisticRegressionProbe(C=0.5, solver="sklearn", n_threads=1).fit(X, y)
    fast = LogisticRegressionProbe(C=0.5, n_threads=1).fit(X, y)
    assert fast.coef_.shape == ref.coef_.shape == (1, 12)
    assert list(fast.classes_) == ["cat", "dog"]
    assert fast.decision_function(X).shape == (600,)
    proba = fast.predict_proba(X)
    assert proba.shape == (600, 2) and np.allclose(proba.sum(1), 1)
    assert fast.objective_ == pytest.approx(ref.objective_, rel=1e-4)
    assert np.mean(fast.predict(X) == ref.predict(X)) > 0.99


def test_multilabel_one_vs_rest_matches_sklearn():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 10)).astype(np.float32)
    Y = (X[:, :4] + 0.7 * rng.standard_normal((500, 4)) > 0.3).astype(np.int64)
    ref = LogisticRegressionProbe(C=0.3, solver="sklearn", multilabel=True, n_threads=1).fit(X, Y)
    fast = LogisticRegressionProbe(C=0.3, multilabel=True, n_threads=1).fit(X, Y)
    assert fast.coef_.shape == (4, 10) and fast.predict(X).shape == (500, 4)
    assert fast.objective_ == pytest.approx(ref.objective_, rel=1e-4)
    np.testing.assert_allclose(fast.predict_proba(X), ref.predict_proba(X), atol=5e-3)


def test_float16_memmap_in_row_chunks_matches_float32(tmp_path, digits):
    Xtr, ytr, _, _ = digits
    mm = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float16, shape=Xtr.shape)
    mm[:] = Xtr
    mm.flush()
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    full = LogisticRegressionProbe(C=1.0, n_threads=1).fit(mm.astype(np.float32), ytr)
    chunked = LogisticRegressionProbe(C=1.0, batch_rows=97, n_threads=1).fit(mm, ytr)
    assert chunked.objective_ == pytest.approx(full.objective_, rel=1e-4)
    assert np.mean(chunked.predict(mm) == full.predict(mm)) > 0.995


def test_warm_start_from_solution_and_neighbour(synth25):
    Xtr, ytr, _, _ = synth25
    cold = LogisticRegressionProbe(C=0.1, n_threads=1).fit(Xtr, ytr)
    again = LogisticRegressionProbe(C=0.1, n_threads=1).fit(Xtr, ytr, coef_init=cold.coef_,
                                                            intercept_init=cold.intercept_)
    assert again.n_iter_ <= 2
    assert again.objective_ == pytest.approx(cold.objective_, rel=1e-5)
    neighbour = LogisticRegressionProbe(C=0.1 * 10**0.125, n_threads=1)
    warm = neighbour.fit(Xtr, ytr, coef_init=cold.coef_, intercept_init=cold.intercept_)
    scratch = neighbour.clone().fit(Xtr, ytr)
    assert warm.n_iter_ < scratch.n_iter_
    assert warm.objective_ == pytest.approx(scratch.objective_, rel=1e-3)
    # sklearn-style warm_start=True reuses the previous coef_
    est = LogisticRegressionProbe(C=0.1, warm_start=True, n_threads=1).fit(Xtr, ytr)
    assert est.fit(Xtr, ytr).n_iter_ <= 2


def test_center_is_an_exact_reparametrisation(digits):
    Xtr, ytr, _, _ = digits
    Xoff = Xtr + 5.0  # a common offset changes the intercept only
    a = LogisticRegressionProbe(C=0.1, dtype="float64", tol=1e-8, n_threads=1).fit(Xoff, ytr)
    b = LogisticRegressionProbe(C=0.1, dtype="float64", tol=1e-8, center=False, max_iter=20000, n_threads=1)
    b.fit(Xoff, ytr)
    assert a.n_iter_ < b.n_iter_  # why centring is on by default
    assert a.objective_ == pytest.approx(b.objective_, rel=1e-7)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-4)
    np.testing.assert_allclose(a.intercept_ - a.intercept_.mean(), b.intercept_ - b.intercept_.mean(), atol=1e-2)


def test_user_errors_are_clip_bench_errors(digits):
    Xtr, ytr, _, _ = digits
    with pytest.raises(ClipBenchError, match="solver"):
        LogisticRegressionProbe(solver="adam").fit(Xtr, ytr)
    with pytest.raises(ClipBenchError, match="at least 2 classes"):
        LogisticRegressionProbe().fit(Xtr[:5], np.zeros(5, dtype=int))
    with pytest.raises(ClipBenchError, match="single value"):
        LogisticRegressionProbe(multilabel=True).fit(Xtr[:4], np.array([[1, 0], [1, 1], [1, 0], [1, 1]]))
    with pytest.raises(ClipBenchError, match="not fitted"):
        LogisticRegressionProbe().predict(Xtr)
    with pytest.raises(ClipBenchError, match="rows"):
        LogisticRegressionProbe().fit(Xtr, ytr[:-1])


# ---------------------------------------------------------------- the stopping rule

def _small(seed: int = 0, n: int = 300, d: int = 16, k: int = 5, sep: float = 0.9):
    """A small problem with a common feature offset; separable on its training rows at sep=0.9."""
    rng = np.random.default_rng(7)
    means = rng.standard_normal((k, d)) * sep
    r = np.random.default_rng(seed)
    y = r.integers(0, k, n)
    return (means[y] + r.standard_normal((n, d)) + 2.0).astype(np.float32), y


def test_warm_start_from_a_far_smaller_C_does_not_pass_the_stopping_test():
    """The bug: at large C the neighbour's solution passed the absolute gradient test after 0
    iterations, so the fit 'at C = 1e4' held the C = 100 solution."""
    X, y = _small()
    low = LogisticRegressionProbe(C=100.0, n_threads=1).fit(X, y)
    warm = LogisticRegressionProbe(C=1e4, n_threads=1).fit(X, y, coef_init=low.coef_, intercept_init=low.intercept_)
    cold = LogisticRegressionProbe(C=1e4, n_threads=1).fit(X, y)
    assert warm.n_iter_ > 0 and warm.converged_ and cold.converged_
    assert warm.residual_ <= 3e-2 and cold.residual_ <= 3e-2
    assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-3)
    assert warm.objective_ < 0.9 * logistic_objective(X, y, low.coef_, low.intercept_, 1e4)


def test_iteration_cap_is_recorded_as_not_converged():
    X, y = _small()
    fit = LogisticRegressionProbe(C=1e3, max_iter=3, n_threads=1).fit(X, y)
    assert fit.n_iter_ == 3 and not fit.converged_ and fit.stop_reason_ == "max_iter reached"


@pytest.fixture(scope="module")
def grid_reference():
    """scikit-learn, tight and cold, at every one of the 97 grid C on a small problem (not separable:
    sklearn then converges in < 700 iterations at every C)."""
    from clip_bench.probe import c_grid

    X, y = _small(seed=1, sep=0.5)
    vX, vy = _small(seed=2, n=2000, sep=0.5)
    ref = {}
    for C in c_grid():
        lr = LogisticRegression(C=C, tol=1e-10, max_iter=20000).fit(X.astype(np.float64), y)
        ref[C] = (logistic_objective(X, y, lr.coef_, lr.intercept_, C), 100 * lr.score(vX, vy))
    return X, y, vX, vy, ref


@pytest.mark.slow
@pytest.mark.parametrize("start", ["cold", "neighbour", "path"])
def test_parity_with_tight_sklearn_across_the_grid(grid_reference, start):
    """Relative objective within 1e-3 and val accuracy within 0.3 points of a tight, cold sklearn fit at
    every C, cold, warm-started from the previous C, or started as the sweep does (log-C extrapolation
    through the fits so far plus the last fit's curvature pairs) (benchmarks/bench_probe.py --parity:
    all 97 C on the benchmark data)."""
    X, y, vX, vy, ref = grid_reference
    init: dict = {}
    path: dict = {}
    last = None
    for C, (obj_ref, acc_ref) in ref.items():
        if start == "path" and path:
            init = dict(zip(("coef_init", "intercept_init", "init_classes"), path_start(path, C), strict=True))
            init["lbfgs_memory"] = last.lbfgs_memory_
        fit = last = LogisticRegressionProbe(C=C, n_threads=1).fit(X, y, **init)
        path[C] = (fit.coef_, fit.intercept_, fit.classes_)
        if start == "neighbour":
            init = {"coef_init": fit.coef_, "intercept_init": fit.intercept_}
        obj = logistic_objective(X, y, fit.coef_, fit.intercept_, C)
        assert fit.converged_, (C, fit.stop_reason_)
        assert abs(obj - obj_ref) <= 1e-3 * obj_ref, (C, obj, obj_ref)
        assert abs(100 * fit.score(vX, vy) - acc_ref) <= 0.3, C


def test_warm_start_is_matched_by_class():
    """A start fitted on fewer classes (a val split that lacked some) maps rows by class; the fit
    reaches the cold solution. linprobe --limit 10 crashed here."""
    X, y = _small()
    part = y < 3
    sub = LogisticRegressionProbe(C=1.0, n_threads=1).fit(X[part], y[part])
    warm = LogisticRegressionProbe(C=1.0, n_threads=1).fit(
        X, y, coef_init=sub.coef_, intercept_init=sub.intercept_, init_classes=sub.classes_)
    cold = LogisticRegressionProbe(C=1.0, n_threads=1).fit(X, y)
    assert warm.converged_ and warm.objective_ == pytest.approx(cold.objective_, rel=1e-3)
    with pytest.raises(ClipBenchError, match="init_classes"):
        LogisticRegressionProbe(C=1.0, n_threads=1).fit(X, y, coef_init=sub.coef_, intercept_init=sub.intercept_)
    # a binary start cannot seed a multiclass fit: ignored, not an error
    two = y < 2
    binary = LogisticRegressionProbe(C=1.0, n_threads=1).fit(X[two], y[two])
    again = LogisticRegressionProbe(C=1.0, n_threads=1).fit(X, y, coef_init=binary.coef_, init_classes=binary.classes_)
    assert again.objective_ == pytest.approx(cold.objective_, rel=1e-3)


# ---------------------------------------------------------------- starts along a C path (speed)

def test_path_start_is_linear_in_log_C():
    k = np.array([0, 1, 2])
    W1, W100 = np.full((3, 2), 1.0, np.float32), np.full((3, 2), 3.0, np.float32)
    sols = {1.0: (W1, np.zeros(3, np.float32), k), 100.0: (W100, np.ones(3, np.float32), k)}
    W, b, classes = path_start(sols, 10.0)  # between the two: interpolation
    np.testing.assert_allclose(W, 2.0), np.testing.assert_allclose(b, 0.5)
    assert W.dtype == np.float32 and classes is k
    np.testing.assert_allclose(path_start(sols, 1e4)[0], 5.0)  # one span beyond: extrapolation
    np.testing.assert_allclose(path_start(sols, 1e8)[0], 5.0)  # never by more than the span
    np.testing.assert_allclose(path_start(sols, 0.01)[0], -1.0)
    assert path_start(sols, 100.0)[0] is W100  # a fitted C is its own start
    assert path_start({1.0: sols[1.0]}, 10.0)[0] is W1  # one fit: the nearest
    other = {1.0: sols[1.0], 100.0: (np.full((2, 2), 3.0), np.ones(2), np.array([0, 1]))}
    assert path_start(other, 30.0)[0].shape == (2, 2)  # layouts differ: the nearest as is


def test_path_starts_and_curvature_pairs_reach_the_cold_solution():
    """The sweep's starts (log-C interpolation or extrapolation plus the last fit's L-BFGS pairs)
    change the iterations, not the solution: same objective and coefficients as a cold fit, within
    the stopping rule's bound (||W - W*|| <= tol ||W||). A start that already passes the relative test
    (0 iterations) is within that bound too."""
    X, y = _small(seed=3, sep=0.5)
    path, last = {}, None
    grid = [0.1, 10.0, 1000.0, 1.0, 100.0 * 10**0.125]  # extrapolate twice, then interpolate
    for C in grid:
        init = {}
        if path:
            init = dict(zip(("coef_init", "intercept_init", "init_classes"), path_start(path, C), strict=True))
            init["lbfgs_memory"] = last.lbfgs_memory_
        warm = LogisticRegressionProbe(C=C, n_threads=1).fit(X, y, **init)
        cold = LogisticRegressionProbe(C=C, n_threads=1).fit(X, y)
        tight = LogisticRegressionProbe(C=C, dtype="float64", tol=1e-6, max_iter=5000, n_threads=1).fit(X, y)
        assert warm.converged_ and warm.residual_ <= 1e-2, (C, warm.stop_reason_)
        assert warm.objective_ == pytest.approx(tight.objective_, rel=1e-3)
        assert cold.objective_ == pytest.approx(tight.objective_, rel=1e-3)
        assert np.linalg.norm(warm.coef_ - tight.coef_) <= 1.5e-2 * np.linalg.norm(tight.coef_), C
        path[C], last = (warm.coef_, warm.intercept_, warm.classes_), warm


def test_curvature_pairs_of_other_features_are_ignored():
    X, y = _small(seed=4)
    first = LogisticRegressionProbe(C=1.0, n_threads=1).fit(X + 1.0, y)  # other features (other centre)
    plain = LogisticRegressionProbe(C=2.0, n_threads=1).fit(X, y)
    seeded = LogisticRegressionProbe(C=2.0, n_threads=1).fit(X, y, lbfgs_memory=first.lbfgs_memory_)
    assert seeded.n_iter_ == plain.n_iter_ and seeded.objective_ == plain.objective_
    same = LogisticRegressionProbe(C=1.0, n_threads=1).fit(X, y)
    reused = LogisticRegressionProbe(C=2.0, n_threads=1).fit(X, y, lbfgs_memory=same.lbfgs_memory_)
    assert reused.converged_ and reused.objective_ == pytest.approx(plain.objective_, rel=1e-3)
    assert len(same.lbfgs_memory_.S) > 0
