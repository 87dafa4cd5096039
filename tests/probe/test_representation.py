"""Which features a probe uses: the paper's pre-projection ViT representation by default, decided from
the architecture config before any model loads; the embedding where that is not defined; float16 end to end."""

from __future__ import annotations

import importlib
import json

import numpy as np
import open_clip
import pytest

from clip_bench.models.resolve import resolve_model
from clip_bench.probe.protocol import ProbeConfig
from clip_bench.probe.representation import normalized_rows, pre_projection_width, resolve_feature_kind
from clip_bench.protocols.linprobe import fewshot, linprobe
from clip_bench.util.errors import ClipBenchError

FAST = ProbeConfig(max_iter=100, steps_per_decade=2)  # the rows' feature kind is the point, not C
TINY = ProbeConfig(max_iter=20, steps_per_decade=1)
TEXT = {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}
TINY_VIT = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 48, "head_width": 16,
                                            "patch_size": 8}, "text_cfg": TEXT}
TINY_RESNET = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                                               "head_width": 64}, "text_cfg": TEXT}


def test_auto_follows_the_architecture_config():
    assert resolve_feature_kind(open_clip.get_model_config("ViT-B-32"), "auto") == "pre-proj"
    assert pre_projection_width(open_clip.get_model_config("ViT-B-32")) == 768  # the paper's I_f, not 512
    for arch in ("RN50", "convnext_base"):  # ModifiedResNet; a timm tower
        assert resolve_feature_kind(open_clip.get_model_config(arch), "auto") == "embed", arch
    assert resolve_feature_kind(open_clip.get_model_config("coca_ViT-B-32"), "auto") == "embed"  # attention pool
    assert resolve_feature_kind({"source": "hf-hub:org/repo"}, "auto") == "embed"  # unknown before loading
    hf_clip = {"model_type": "clip", "vision_config": {"hidden_size": 1024}, "projection_dim": 768}
    assert resolve_feature_kind(hf_clip, "auto") == "pre-proj" and pre_projection_width(hf_clip) == 1024
    assert resolve_feature_kind({"model_type": "siglip", "vision_config": {"hidden_size": 768}}, "auto") == "embed"
    assert resolve_feature_kind(resolve_model("tiny-clip-digits").arch_config, "auto") == "pre-proj"
    assert resolve_feature_kind(open_clip.get_model_config("RN50"), "pre-proj") == "pre-proj"  # forced: as asked
    with pytest.raises(ClipBenchError, match="unknown feature kind 'penultimate'"):
        resolve_feature_kind({}, "penultimate")


def _write(tmp_path, name, cfg):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.slow
def test_auto_probes_a_random_vit_before_its_projection_and_a_resnet_on_its_embedding(tmp_path, eval_config):
    vit = linprobe(_write(tmp_path, "tiny-vit", TINY_VIT), "digits", eval_config, device="cpu", limit=300,
                   probe=FAST)[0]
    assert vit["feature_kind"] == "pre-proj" and vit["extra"]["feature_dim"] == 48  # vision width, not embed_dim 16
    assert vit["extra"]["features_requested"] == "auto"
    embed = linprobe(_write(tmp_path, "tiny-vit", TINY_VIT), "digits", eval_config, device="cpu", limit=300, probe=FAST,
                     feature_kind="embed")[0]
    assert embed["feature_kind"] == "embed" and embed["extra"]["feature_dim"] == 16
    rn = linprobe(_write(tmp_path, "tiny-rn", TINY_RESNET), "digits", eval_config, device="cpu", limit=300,
                  probe=FAST)[0]
    assert rn["feature_kind"] == "embed" and rn["extra"]["feature_dim"] == 16
    with pytest.raises(ClipBenchError, match="needs a ViT image tower"):
        linprobe(_write(tmp_path, "tiny-rn", TINY_RESNET), "digits", eval_config, device="cpu", limit=300, probe=FAST,
                 feature_kind="pre-proj")


def test_fewshot_probes_pre_projection_but_zero_shot_scores_the_embedding(eval_config):
    rows = fewshot("tiny-clip-digits", "digits", eval_config, shots=(2,), seeds=1, device="cpu")
    assert {r["feature_kind"] for r in rows if r["protocol"] == "fewshot_k2"} == {"pre-proj"}
    zs = [r for r in rows if r["protocol"] == "zeroshot" and r["is_main"]]
    assert zs and zs[0]["feature_kind"] == "embed" and zs[0]["value"] == pytest.approx(91.67, abs=0.01)


def test_normalized_rows_stays_float16_and_matches_a_float32_reference():
    x = np.random.default_rng(0).normal(size=(1000, 24)).astype(np.float16)
    out = normalized_rows(x, chunk_rows=64)
    ref = x.astype(np.float32) / np.linalg.norm(x.astype(np.float32), axis=1, keepdims=True)
    assert out.dtype == np.float16 and np.abs(out.astype(np.float32) - ref).max() < 1e-3


@pytest.mark.slow
def test_probes_get_the_cached_float16_memmap_not_a_float32_copy(eval_config, monkeypatch):
    """The probes get the cache's float16 memmap, never a full float32 copy of the features."""
    lp = importlib.import_module("clip_bench.protocols.linprobe")  # clip_bench.protocols.linprobe is the function

    seen = []
    real = lp.run_linear_probe

    def spy(train_X, train_y, val_X, val_y, test_X, *args, **kwargs):
        seen.append((train_X, val_X, test_X))
        return real(train_X, train_y, val_X, val_y, test_X, *args, **kwargs)

    monkeypatch.setattr(lp, "run_linear_probe", spy)
    linprobe("tiny-clip-digits", "digits", eval_config, device="cpu", probe=TINY, limit=300)  # extracts, then probes
    linprobe("tiny-clip-digits", "digits", eval_config, device="cpu", probe=TINY, limit=300)  # from the cache
    for X in seen[1]:
        assert X.dtype == np.float16 and isinstance(X, np.memmap)  # the cache file itself, mapped
    linprobe("tiny-clip-digits", "digits", eval_config, device="cpu", probe=TINY, limit=300, normalize=True)
    assert all(X.dtype == np.float16 for X in seen[2])
    norms = np.linalg.norm(seen[2][0].astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
