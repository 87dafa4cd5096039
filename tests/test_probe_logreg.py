"""The torch L-BFGS probe against scikit-learn's LogisticRegression (the paper's reference)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from clip_bench.errors import ClipBenchError
from clip_bench.probe import LogisticRegressionProbe, logistic_objective


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
    again = LogisticRegressionProbe(C=0.1, n_threads=1).fit(Xtr, ytr, coef_init=cold.coef_, intercept_init=cold.intercept_)
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
