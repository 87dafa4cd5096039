"""Linear and few-shot probes from cached features: rows, no model load once features exist, parity."""

from __future__ import annotations

import numpy as np
import pytest

import clip_bench.models.resolve as models
from clip_bench.probe import PROBE_RULE
from clip_bench.probe.protocol import ProbeConfig
from clip_bench.protocols.linprobe import fewshot, linprobe
from clip_bench.results.rows import result_id
from clip_bench.util.errors import ClipBenchError


def test_linprobe_rows_and_no_model_load_on_second_run(eval_config, monkeypatch):
    rows = linprobe("tiny-clip-digits", "digits", eval_config, device="cpu")
    (row,) = rows
    assert row["protocol"] == "linear_probe" and row["metric"] == "top1" and row["is_main"]
    assert row["value"] >= 88  # a probe on the tiny CLIP's features beats chance by far
    ex = row["extra"]
    assert ex["solver"] == "torch" and 1e-6 <= ex["C"] <= 1e6 and ex["seed"] == 0
    # the row says whether C was picked at an end of the grid, and that every fit converged
    assert "C_at_grid_edge" in ex and ex["C_at_grid_edge"] in (None, "low", "high")
    assert ex["C_tie_band"] == "paired"  # top-1 has per-example shares: the C search compares C pairwise
    assert ex["converged"] is True and ex["sweep_converged"] is True and ex["sweep_n_fits"] >= 7
    assert (ex["n_train"], ex["n_val"], ex["n_refit"], row["n"]) == (1078, 359, 1437, 360)
    assert row["feature_kind"] == "pre-proj"  # the default (auto) for a ViT: before the image projection
    # the probe method's version is part of the identity: a row of an earlier C rule is another measurement
    assert ex["probe_rule"] == PROBE_RULE
    older = {**row, "extra": {**ex, "probe_rule": "an-older-rule"}}
    assert result_id(older) != row["result_id"] == result_id(row)

    loads = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    again = linprobe("tiny-clip-digits", "digits", eval_config, device="cpu")
    assert loads == []  # features came from the cache
    assert again[0]["value"] == row["value"] and again[0]["extra"]["C"] == ex["C"]


def test_sklearn_and_torch_solvers_agree_on_digits(eval_config):
    torch_row = linprobe("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)[0]
    sk_row = linprobe("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None,
                      probe=ProbeConfig(solver="sklearn"))[0]
    assert sk_row["extra"]["solver"] == "sklearn"
    assert abs(torch_row["value"] - sk_row["value"]) <= 1.0


def test_pre_projection_features_differ_in_width(eval_config):
    row = linprobe("tiny-clip-digits", "digits", eval_config, device="cpu", feature_kind="pre-proj")[0]
    assert row["feature_kind"] == "pre-proj" and row["value"] >= 80
    from clip_bench.models.resolve import ModelHandle
    from clip_bench.protocols.runner import get_features
    from clip_bench.tasks.catalog import get_task

    handle = ModelHandle.of("tiny-clip-digits", device="cpu")
    pre = get_features(handle, get_task("digits"), "test", eval_config, kind="pre-proj")
    emb = get_features(handle, get_task("digits"), "test", eval_config, kind="embed")
    assert pre.features.shape[1] == 64 and emb.features.shape[1] == 64  # tiny model: width == embed_dim
    assert not np.allclose(np.asarray(pre.features, np.float32), np.asarray(emb.features, np.float32))


def test_fewshot_rows_include_mean_std_and_zeroshot(eval_config):
    rows = fewshot("tiny-clip-digits", "digits", eval_config, shots=(1, 4), seeds=2, device="cpu")
    k4 = [r for r in rows if r["protocol"] == "fewshot_k4"]
    assert [r["extra"].get("seed") for r in k4] == [0, 1, None]
    mean = k4[-1]
    assert mean["extra"]["aggregate"] == "mean"
    assert mean["value"] == pytest.approx(np.mean([r["value"] for r in k4[:2]]))
    assert mean["extra"]["std"] == pytest.approx(np.std([r["value"] for r in k4[:2]], ddof=1))
    assert all(r["extra"]["n_train"] == 40 for r in k4[:2])  # 4 shots x 10 classes
    assert all(r["extra"]["C_prior_refuted"] in (True, False) for r in k4[:2])  # the C rule's branch is recorded
    assert all(r["extra"]["C_prior_refuted"] is None
               for r in rows if r["protocol"] == "fewshot_k1" and "seed" in r["extra"])
    assert any(r["protocol"] == "zeroshot" and r["is_main"] for r in rows)
    # same seeds draw the same shots
    again = fewshot("tiny-clip-digits", "digits", eval_config, shots=(4,), seeds=2, device="cpu", with_zeroshot=False)
    assert [r["extra"].get("shots_sha1") for r in again] == [r["extra"].get("shots_sha1") for r in k4]


def test_fewshot_too_few_examples_names_the_class(eval_config):
    with pytest.raises(ClipBenchError, match="class"):
        fewshot("tiny-clip-digits", "digits", eval_config, shots=(200,), seeds=1, device="cpu", with_zeroshot=False)
