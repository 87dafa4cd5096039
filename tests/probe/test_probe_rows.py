"""Row views: a held-out split or train + val is read chunk by chunk out of the feature cache, never
gathered whole, and every number is bit-identical to the gathered path;
a NaN or inf row read so is an error."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from clip_bench.metrics.classification import top1
from clip_bench.probe import LogisticRegressionProbe, ProbeConfig, run_linear_probe
from clip_bench.probe import rows as rows_mod
from clip_bench.probe.c_search import log_loss
from clip_bench.probe.rows import RowView, rows_of, stack_rows
from clip_bench.util.errors import ClipBenchError


def _features(tmp_path, n=3000, d=24, k=6, seed=0, name="train"):
    """A float16 memmap of class-mean-plus-noise features (the class means are the same for every seed)."""
    means = np.random.default_rng(100 + d + k).standard_normal((k, d)) * 1.5
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (means[y] + rng.standard_normal((n, d)) + 3.0).astype(np.float16)
    path = tmp_path / f"{name}.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r"), y


def test_row_view_slices_are_the_gathered_rows(tmp_path):
    X, _ = _features(tmp_path, n=500)
    idx = np.sort(np.random.default_rng(1).choice(500, 200, replace=False))
    view = RowView.of(X, idx)
    assert view.shape == (200, X.shape[1]) and view.dtype == np.float16 and len(view) == 200
    np.testing.assert_array_equal(view[:], X[idx])
    np.testing.assert_array_equal(view[17:123], X[idx[17:123]])
    np.testing.assert_array_equal(view[::7], X[idx[::7]])
    np.testing.assert_array_equal(np.asarray(view), X[idx])
    np.testing.assert_array_equal(view[np.array([3, 0, 199])], X[idx[[3, 0, 199]]])


def test_stacked_rows_are_the_concatenation(tmp_path):
    A, _ = _features(tmp_path, n=300, name="a")
    B, _ = _features(tmp_path, n=120, seed=2, name="b")
    view = RowView([(A, None), (B, np.arange(0, 120, 3))])
    ref = np.concatenate([A, B[::3]])
    assert view.shape == ref.shape
    for sl in (slice(None), slice(250, 330), slice(299, 301), slice(None, None, 11)):
        np.testing.assert_array_equal(view[sl], ref[sl])


def test_row_view_rejects_bad_indices(tmp_path):
    X, _ = _features(tmp_path, n=50)
    with pytest.raises(ClipBenchError, match="out of range"):
        RowView.of(X, np.array([0, 50]))
    with pytest.raises(ClipBenchError, match="1-D integer"):
        RowView.of(X, np.array([0.5]))
    with pytest.raises(ClipBenchError, match="different widths"):
        RowView([(X, None), (np.zeros((3, X.shape[1] + 1), np.float16), None)])


def test_small_subsets_are_gathered_large_ones_viewed(tmp_path, monkeypatch):
    X, _ = _features(tmp_path, n=400)
    assert isinstance(rows_of(X, np.arange(10)), np.ndarray)
    assert isinstance(stack_rows(X, X), np.ndarray)
    monkeypatch.setattr(rows_mod, "GATHER_BELOW_BYTES", 0)
    assert isinstance(rows_of(X, np.arange(10)), RowView)
    assert isinstance(stack_rows(X, X), RowView)


def test_fit_on_a_row_view_is_bit_identical_to_the_gathered_copy(tmp_path):
    X, y = _features(tmp_path)
    idx = np.sort(np.random.default_rng(3).choice(len(y), 2000, replace=False))
    a = LogisticRegressionProbe(C=0.5, batch_rows=256).fit(X[idx], y[idx])
    b = LogisticRegressionProbe(C=0.5, batch_rows=256).fit(RowView.of(X, idx), y[idx])
    assert a.converged_ and b.converged_ and a.n_iter_ == b.n_iter_
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    np.testing.assert_array_equal(a.predict_proba(X[idx]), b.predict_proba(RowView.of(X, idx)))


@pytest.mark.parametrize("given_val", [False, True])
def test_linear_probe_numbers_do_not_depend_on_gathering(tmp_path, monkeypatch, given_val):
    X, y = _features(tmp_path, n=2400)
    vX, vy = _features(tmp_path, n=600, seed=4, name="val") if given_val else (None, None)
    tX, ty = _features(tmp_path, n=800, seed=5, name="test")
    config = ProbeConfig(c_min=1e-3, c_max=1e3, steps_per_decade=2, n_threads=1)

    def run():
        return run_linear_probe(X, y, vX, vy, tX, ty, top1, config=config)

    gathered = run()
    monkeypatch.setattr(rows_mod, "GATHER_BELOW_BYTES", 0)
    viewed = run()
    for key in ("test_score", "C", "val_score", "val_log_loss", "sweep", "sweep_log_loss", "n_iter", "objective"):
        assert gathered[key] == viewed[key], key
    assert gathered["test_score"] > 80


def test_held_out_probe_never_copies_the_features(tmp_path, monkeypatch):
    """The old code gathered train_X[tr_idx] and train_X[va_idx] (a full copy of the rows) and scored the
    held-out rows as float32 logits plus float64 probabilities; now the peak of NumPy allocations stays a
    fraction of the features' size."""
    X, y = _features(tmp_path, n=200000, d=64, k=4)
    tX, ty = X[:100], y[:100]
    monkeypatch.setattr(rows_mod, "GATHER_BELOW_BYTES", 2**20)
    config = ProbeConfig(c_min=0.1, c_max=1.0, steps_per_decade=1, max_iter=2, n_threads=1)
    tracemalloc.start()
    try:
        res = run_linear_probe(X, y, None, None, tX, ty, top1, config=config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(res["n_val"] - 40000) <= 4
    assert peak < 0.6 * X.nbytes, (peak, X.nbytes)  # the old code: more than 1.0 x


@pytest.mark.parametrize("method", ["predict_proba", "predict_log_proba"])
def test_predict_proba_holds_one_result_array(tmp_path, method):
    X, y = _features(tmp_path, n=40000, d=16, k=50)
    probe = LogisticRegressionProbe(C=1.0, max_iter=5).fit(X[:2000], y[:2000])
    predict = getattr(probe, method)
    tracemalloc.start()
    try:
        p32 = predict(X, dtype=np.float32, batch_rows=2048)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert p32.dtype == np.float32
    assert peak < 1.5 * p32.nbytes, (peak, p32.nbytes)  # the old path: float32 logits + float64 = 3x
    p64 = predict(X)
    np.testing.assert_allclose(p32, p64, rtol=1e-6, atol=1e-30)
    np.testing.assert_array_equal(p32.argmax(1), p64.argmax(1))
    if method == "predict_log_proba":  # the sweep's log-loss reads log-probabilities
        np.testing.assert_allclose(np.exp(p64), probe.predict_proba(X), rtol=1e-12, atol=1e-300)
        assert log_loss(p32, y, probe.classes_, False) == pytest.approx(log_loss(p64, y, probe.classes_, False),
                                                                        rel=1e-6)


def _memmap(tmp_path, X, name):
    path = tmp_path / f"{name}.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r")


def test_a_nan_row_in_the_test_features_is_an_error_not_a_score(tmp_path):
    """NaN logits argmax to class 0: a NaN test row was silently scored as a prediction of class 0."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, 300)
    X = (means[y] + rng.normal(size=(300, 8))).astype(np.float16)
    tX = X[:60].copy()
    tX[5, 3] = np.nan
    probe = LogisticRegressionProbe(C=1.0).fit(X, y)
    with pytest.raises(ClipBenchError, match="NaN or inf"):
        probe.predict_proba(_memmap(tmp_path, tX, "test"))
    with pytest.raises(ClipBenchError, match="NaN or inf"):
        run_linear_probe(X, y, None, None, _memmap(tmp_path, tX, "test2"), y[:60], top1,
                         config=ProbeConfig(c_min=1e-2, c_max=1e2, steps_per_decade=1, n_threads=1))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_training_features_are_a_clip_bench_error(tmp_path, monkeypatch, bad):
    """A NaN/inf row in a float16 memmap (read through a row view) failed deep inside torch.linalg.eigh."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 8)).astype(np.float16)
    X[17, 2] = bad
    mm = _memmap(tmp_path, X, "train")
    with pytest.raises(ClipBenchError, match="NaN or inf"):
        LogisticRegressionProbe(C=1.0).fit(RowView.of(mm, np.arange(300)[::-1].copy()), y[::-1])
    monkeypatch.setattr(rows_mod, "GATHER_BELOW_BYTES", 0)
    with pytest.raises(ClipBenchError, match="NaN or inf"):
        run_linear_probe(mm, y, None, None, mm[:50], y[:50], top1,
                         config=ProbeConfig(c_min=1e-2, c_max=1e2, steps_per_decade=1, n_threads=1))
