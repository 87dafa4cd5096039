"""Probe regressions: sigmoid validation scored in float64, non-finite features or validation metrics are errors,
non-default settings and skipped images in the row identity, the prior's scale error, precision variants on the
leaderboard, scores that rank as the logits where probabilities saturate."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.errors import ClipBenchError
from clip_bench.metrics import map_11point, roc_auc, top1
from clip_bench.probe import LogisticRegressionProbe, ProbeConfig, run_linear_probe, sweep_C
from clip_bench.probe import rows as rows_mod
from clip_bench.probe.rows import RowView
from clip_bench.probe.sweep import log_loss, probe_scores


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
    sweep = sweep_C(Xtr, ytr, Xva, yva, metric, probe=LogisticRegressionProbe(multilabel=multilabel), grid=np.array([C]))
    ref = LogisticRegressionProbe(C=C, multilabel=multilabel).fit(Xtr, ytr)
    proba = ref.predict_proba(Xva)
    assert (proba == 1.0).sum() < (proba.astype(np.float32) == 1.0).sum()  # the data do hit the float32 rounding
    scores = probe_scores(ref, Xva)
    assert sweep.best_score == metric(scores, yva)
    assert sweep.best_log_loss == pytest.approx(log_loss(ref.predict_log_proba(Xva), yva, ref.classes_, multilabel), rel=1e-9)


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


def _digits_without_val(tmp_path):
    """The digits task with no val split, so the linear probe holds its validation set out of train."""
    from pathlib import Path

    import clip_bench

    text = (Path(clip_bench.__file__).parent.parent / "tasks" / "digits.yaml").read_text()
    text = text.replace("splits: [train, val, test]", "splits: [train, test]").replace("name: digits", "name: digitsnoval")
    path = tmp_path / "digitsnoval.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_non_default_probe_settings_are_part_of_the_row_identity(eval_config, tmp_path):
    """--val-fraction 0.5 (and any non-default ProbeConfig knob) gave another number under the default
    row's result_id, so the sweep took it for the default measurement. Default rows keep their ids."""
    from clip_bench.linprobe import fewshot, linprobe
    from clip_bench.models import ModelHandle
    from clip_bench.sweep import expected_main_row

    task = _digits_without_val(tmp_path)
    (default,) = linprobe("tiny-clip-digits", task, eval_config, device="cpu")
    (half,) = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=ProbeConfig(val_fraction=0.5))
    assert half["extra"]["n_val"] != default["extra"]["n_val"]
    assert half["result_id"] != default["result_id"]
    # another protocol than the paper's: kept apart from the leaderboard, which shows the default
    assert default["standard"] and not half["standard"]
    handle = ModelHandle.of("tiny-clip-digits", None, "cpu", "fp32")
    assert expected_main_row(handle, task, "linprobe", eval_config)["result_id"] == default["result_id"]
    grid = ProbeConfig(c_min=1e-2, c_max=1e2)
    (narrow,) = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=grid)
    assert narrow["result_id"] != default["result_id"] and not narrow["standard"]
    kw = dict(shots=(2,), seeds=1, with_zeroshot=False, device="cpu")
    plain = [r for r in fewshot("tiny-clip-digits", "digits", eval_config, **kw) if r["extra"].get("seed") == 0]
    prior = [r for r in fewshot("tiny-clip-digits", "digits", eval_config, probe=ProbeConfig(prior_scale=1.0), **kw)
             if r["extra"].get("seed") == 0]
    assert plain[0]["extra"]["C_prior"] != prior[0]["extra"]["C_prior"]
    assert plain[0]["result_id"] != prior[0]["result_id"]
    assert plain[0]["standard"] and not prior[0]["standard"]


@pytest.mark.slow
def test_probe_rows_of_a_run_that_skipped_images_have_their_own_identity(tmp_path, eval_config, monkeypatch):
    """linprobe/fewshot rows never recorded --skip-bad-images: a probe on features with an image left
    out had the clean run's result_id and counted as standard."""
    from fixture_writers import write_digit_folder

    from clip_bench.features import ExtractConfig
    from clip_bench.linprobe import fewshot, linprobe

    root = eval_config.data_root / "dg"
    write_digit_folder(root / "train", per_class=6)
    write_digit_folder(root / "test", per_class=2)
    task = tmp_path / "dg.yaml"
    task.write_text("name: dg\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [train, test]\n"
                    "eval_split: test\nsources:\n  local: {loader: imagefolder, path: dg}\n")
    eval_config.extract = ExtractConfig(workers=0, quiet=True)
    (clean,) = linprobe("tiny-clip-digits", str(task), eval_config, device="cpu")
    clean_k = fewshot("tiny-clip-digits", str(task), eval_config, device="cpu", shots=(2,), seeds=1, with_zeroshot=False)
    (root / "train" / "3" / "001.png").write_bytes(b"not a png")
    eval_config.cache_dir = tmp_path / "cache2"
    eval_config.extract = ExtractConfig(workers=0, quiet=True, skip_bad_images=True)
    (skipped,) = linprobe("tiny-clip-digits", str(task), eval_config, device="cpu")
    assert skipped["extra"]["n_train"] + skipped["extra"]["n_val"] == clean["extra"]["n_train"] + clean["extra"]["n_val"] - 1
    assert skipped["extra"]["skipped_images"] == 1 and skipped["standard"] is False and clean["standard"] is True
    assert skipped["result_id"] != clean["result_id"]
    skipped_k = fewshot("tiny-clip-digits", str(task), eval_config, device="cpu", shots=(2,), seeds=1, with_zeroshot=False)
    assert {r["result_id"] for r in skipped_k}.isdisjoint(r["result_id"] for r in clean_k)


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


@pytest.mark.parametrize("scale", [1e-160, 1e200])
def test_features_far_from_unit_scale_name_the_features_in_the_prior(scale):
    from clip_bench.probe.fewshot import prior_C

    X = np.random.default_rng(0).standard_normal((8, 4)) * scale
    with pytest.raises(ClipBenchError, match="spread .* check the features"):
        prior_C(X)


def _board_row(**kw):
    from clip_bench.results import make_row

    base = dict(model="M", pretrained="w", task="digits", protocol="zeroshot", metric="top1", is_main=True,
                subset=None, standard=True, precision="fp32", date="2026-01-01T00:00:00+00:00", value=91.67)
    return make_row(**{**base, **kw})


def test_a_bf16_run_is_shown_apart_not_in_place_of_the_fp32_result(tmp_path):
    """Precision changes a number, so a later bf16 run of the same model must not replace
    the fp32 value on the leaderboard (nor be averaged into its means): it is its own, labelled line.
    Probe rows on non-default features likewise."""
    from clip_bench.report.leaderboard import leaderboard_table
    from clip_bench.results import append_rows, read_rows, write_leaderboard

    append_rows(tmp_path, [
        _board_row(),
        _board_row(precision="bf16", value=90.00, date="2026-02-01T00:00:00+00:00"),
        _board_row(protocol="linear_probe", feature_kind="pre-proj", features_requested="auto", value=94.0),
        _board_row(protocol="linear_probe", feature_kind="embed", features_requested="embed", value=93.0,
                   date="2026-02-01T00:00:00+00:00"),
    ])
    rows = read_rows(tmp_path)
    table = leaderboard_table(rows)
    got = {(r["model"], r["protocol"]): r["digits"] for _, r in table.iterrows()}
    assert got == {("M", "zeroshot"): 91.67, ("M [bf16]", "zeroshot"): 90.0,
                   ("M", "linear_probe"): 94.0, ("M [features=embed]", "linear_probe"): 93.0}
    assert "M [bf16]," in write_leaderboard(tmp_path).read_text()


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
