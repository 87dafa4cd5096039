"""Caches really hit and really miss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import clip_bench.models.text_encoder as text_encoder
from clip_bench import zeroshot
from clip_bench.loaders.base import ArrayImages
from clip_bench.models.resolve import ModelHandle, load_model, resolve_model
from clip_bench.protocols.zeroshot_head import build_classifier
from clip_bench.tasks.prompts import PromptSet
from clip_bench.util.resources import assets_dir


class _Counter:
    def __init__(self, monkeypatch):
        self.prompts = 0
        real = text_encoder.encode_prompts

        def counting(lm, prompts, *a, **k):
            self.prompts += len(prompts)
            return real(lm, prompts, *a, **k)

        monkeypatch.setattr("clip_bench.protocols.zeroshot_head.encode_prompts", counting)


def test_second_text_build_encodes_nothing(tiny_model, tmp_path, monkeypatch):
    counter = _Counter(monkeypatch)
    ps = PromptSet(tuple("0123456789"), ("the digit {}", "a handwritten {}."))
    w1 = build_classifier(tiny_model, ps, tmp_path)
    assert counter.prompts == 20
    w2 = build_classifier(tiny_model, ps, tmp_path)
    assert counter.prompts == 20  # nothing new encoded
    assert np.array_equal(w1, w2)
    # a template set sharing one template encodes only the new prompts
    build_classifier(tiny_model, PromptSet(tuple("0123456789"), ("the digit {}", "number {}")), tmp_path)
    assert counter.prompts == 30


def test_text_cache_survives_a_new_process_view(tiny_model, tmp_path, monkeypatch):
    ps = PromptSet(tuple("01"), ("the digit {}",))
    build_classifier(tiny_model, ps, tmp_path)
    counter = _Counter(monkeypatch)
    fresh = ModelHandle.of("tiny-clip-digits", device="cpu")  # not loaded
    build_classifier(fresh, ps, tmp_path)
    assert counter.prompts == 0 and not fresh.is_loaded


def _count_images(monkeypatch):
    opened = []
    real = ArrayImages.load_image

    def spy(self, i):
        opened.append(i)
        return real(self, i)

    monkeypatch.setattr(ArrayImages, "load_image", spy)
    return opened


def test_second_run_opens_no_image_and_loads_no_model(eval_config, monkeypatch):
    opened = _count_images(monkeypatch)
    first = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    assert len(opened) == 360
    opened.clear()
    loads = []
    import clip_bench.models.resolve as models

    real_load = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    second = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    assert opened == [] and loads == []
    assert [r["value"] for r in first] == [r["value"] for r in second]


def test_template_change_misses_text_cache(tiny_model, eval_config, tmp_path, monkeypatch):
    counter = _Counter(monkeypatch)
    zeroshot(tiny_model, "digits", eval_config)
    n = counter.prompts
    tpl = tmp_path / "t.json"
    tpl.write_text(json.dumps(["a handwritten {}."]))
    rows = zeroshot(tiny_model, "digits", eval_config, templates=str(tpl))
    assert counter.prompts == n + 10
    assert rows[0]["templates_hash"] != zeroshot(tiny_model, "digits", eval_config)[0]["templates_hash"]


def _copy_tiny(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "tiny.json"
    ckpt = tmp_path / "tiny.safetensors"
    shutil.copy(assets_dir() / "tiny_clip" / "tiny-clip-digits.json", cfg)
    shutil.copy(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors", ckpt)
    return cfg, ckpt


def test_weights_content_change_at_same_path_misses(tmp_path, eval_config):
    from safetensors.torch import load_file, save_file

    cfg, ckpt = _copy_tiny(tmp_path)
    fp1 = resolve_model(str(cfg), str(ckpt)).fingerprint
    rows1 = zeroshot(str(cfg), "digits", eval_config, pretrained=str(ckpt), device="cpu")
    state = load_file(str(ckpt))
    state["visual.proj"] = state["visual.proj"] * 0.5 + 0.01  # different weights, same path
    save_file(state, str(ckpt))
    fp2 = resolve_model(str(cfg), str(ckpt)).fingerprint
    assert fp1 != fp2
    rows2 = zeroshot(str(cfg), "digits", eval_config, pretrained=str(ckpt), device="cpu")
    assert rows1[0]["model_fingerprint"] != rows2[0]["model_fingerprint"]
    assert len(list((eval_config.cache_dir / "features").iterdir())) == 2


def test_preprocessing_change_misses(tmp_path):
    cfg, ckpt = _copy_tiny(tmp_path)
    fp1 = resolve_model(str(cfg), str(ckpt)).fingerprint
    raw = json.loads(cfg.read_text())
    raw["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    cfg.write_text(json.dumps(raw))
    spec = resolve_model(str(cfg), str(ckpt))
    assert spec.fingerprint != fp1
    lm = load_model(spec, device="cpu")
    assert "0.5" in repr(lm.preprocess)  # the model really uses the new preprocessing


def test_corrupt_feature_cache_is_recomputed(eval_config, monkeypatch):
    zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    (entry,) = (eval_config.cache_dir / "features").iterdir()
    feats = entry / "features.npy"
    data = bytearray(feats.read_bytes())
    data[-10:] = b"\x00" * 10
    feats.write_bytes(bytes(data))
    opened = _count_images(monkeypatch)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    assert len(opened) == 360  # recomputed, not trusted
    assert rows[0]["value"] >= 85


@pytest.mark.parametrize("bad", ["truncate", "delete_meta"])
def test_damaged_entry_never_used(eval_config, bad, monkeypatch):
    zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    (entry,) = (eval_config.cache_dir / "features").iterdir()
    if bad == "truncate":
        p = entry / "labels.npy"
        p.write_bytes(p.read_bytes()[:-8])
    else:
        (entry / "meta.json").unlink()
    opened = _count_images(monkeypatch)
    zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    assert len(opened) == 360


def test_empty_environment_variables_mean_the_defaults(tmp_path, monkeypatch):
    from clip_bench.config import EvalConfig, ExtractConfig
    from clip_bench.util.distributed import launched_with_torchrun
    from clip_bench.util.resources import default_cache_dir, default_data_root

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    for name in ("CLIP_BENCH_CACHE", "CLIP_BENCH_DATA", "CLIP_BENCH_TASKS", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.setenv(name, "")
    assert default_cache_dir() == home / ".cache" / "clip_bench"
    assert default_data_root() == home / ".cache" / "clip_bench" / "data"
    assert not launched_with_torchrun()
    rows = zeroshot("tiny-clip-digits", "digits",
                    EvalConfig(output_dir=None, extract=ExtractConfig(workers=0, quiet=True)),
                    device="cpu")
    assert rows[0]["value"] == pytest.approx(91.67, abs=0.005)
    assert list(work.iterdir()) == []  # not features/ and text/ in the current directory
    assert {p.name for p in (home / ".cache" / "clip_bench").iterdir()} >= {"features", "text"}
