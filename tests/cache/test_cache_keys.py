"""Every input that changes a number is part of the cache keys."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from clip_bench import zeroshot
from clip_bench.cache.features import FeatureCache, feature_key
from clip_bench.cache.text import TextEmbeddingCache
from clip_bench.protocols.zeroshot_head import build_classifier
from clip_bench.tasks.catalog import get_task
from clip_bench.tasks.prompts import PromptSet
from clip_bench.tasks.spec import SourceSpec


def _entry_dir(tmp_path, **changes):
    task = changes.pop("task", get_task("digits"))
    source = changes.pop("source", SourceSpec("local", "imagefolder", path="dg"))
    args = dict(model_fingerprint="fp", task=task, source=source, split="test", kind="embed", limit=None,
                data_fingerprint="data-a", precision="fp32", device="cpu")
    args.update(changes)
    return FeatureCache(tmp_path, feature_key(**args)).dir


def test_feature_key_enumerates_every_input_that_changes_numbers(tmp_path):
    task = get_task("digits")
    source = SourceSpec("local", "imagefolder", path="dg")
    changes = {
        "weights / preprocessing (the model fingerprint)": dict(model_fingerprint="other"),
        "precision": dict(precision="bf16"),
        "precision fp16": dict(precision="fp16"),
        "task name": dict(task=replace(task, name="digits2")),
        "task version": dict(task=replace(task, version=2)),
        "task definition": dict(task=replace(task, eval_split="val")),
        "task definition (class groups)": dict(task=replace(task, extra={"class_groups": [[0, 1]]})),
        "source name": dict(source=replace(source, name="wds")),
        "source config": dict(source=replace(source, args={"size": 64})),
        "source label map": dict(source=replace(source, label_map=(1, 0))),
        "split": dict(split="train"),
        "feature kind": dict(kind="pre-proj"),
        "limit": dict(limit=5),
        "the data's content": dict(data_fingerprint="data-b"),
    }
    base = _entry_dir(tmp_path)
    dirs = {name: _entry_dir(tmp_path, **c) for name, c in changes.items()}
    for name, d in dirs.items():
        assert d != base, f"{name} is not part of the feature-cache key"
    assert len(set(dirs.values())) == len(dirs)
    # below fp32 the device type is part of the key; in fp32 it is not
    assert _entry_dir(tmp_path, device="cuda:0") == base
    assert _entry_dir(tmp_path, precision="bf16", device="cuda:0") != _entry_dir(tmp_path, precision="bf16")
    # what never changes a number does not split the cache
    assert _entry_dir(tmp_path, task=replace(task, description="other words", file="/x/digits.yaml")) == base
    assert _entry_dir(tmp_path, source=replace(source, download="other hint")) == base


def test_text_cache_key_enumerates_every_input(tmp_path):
    base = TextEmbeddingCache(tmp_path, "fp", "tok").dir
    others = [
        TextEmbeddingCache(tmp_path, "fp2", "tok").dir,
        TextEmbeddingCache(tmp_path, "fp", "tok2").dir,
        TextEmbeddingCache(tmp_path, "fp", "tok", "bf16", "cpu").dir,
        TextEmbeddingCache(tmp_path, "fp", "tok", "fp16", "cpu").dir,
        TextEmbeddingCache(tmp_path, "fp", "tok", "fp16", "cuda").dir,
    ]
    assert len({base, *others}) == len(others) + 1
    assert TextEmbeddingCache(tmp_path, "fp", "tok", "fp32", "cuda:0").dir == base


def test_class_names_and_templates_change_the_text_entries(tmp_path, tiny_model, monkeypatch):
    encoded: list[str] = []
    import clip_bench.models.text_encoder as te

    real = te.encode_prompts
    monkeypatch.setattr("clip_bench.protocols.zeroshot_head.encode_prompts",
                        lambda lm, p, **k: encoded.extend(p) or real(lm, p, **k))
    build_classifier(tiny_model, PromptSet(("0", "1"), ("the digit {}",)), tmp_path)
    assert len(encoded) == 2
    build_classifier(tiny_model, PromptSet(("zero", "1"), ("the digit {}",)), tmp_path)  # one class name changed
    assert encoded[2:] == ["the digit zero"]
    build_classifier(tiny_model, PromptSet(("0", "1"), ("number {}",)), tmp_path)  # template changed
    assert encoded[3:] == ["number 0", "number 1"]


@pytest.mark.slow
def test_bf16_features_are_never_served_to_fp32(eval_config, tmp_path, monkeypatch):
    encoded: list[str] = []
    import clip_bench.models.text_encoder as te

    real = te.encode_prompts
    monkeypatch.setattr("clip_bench.protocols.zeroshot_head.encode_prompts",
                        lambda lm, p, **k: encoded.extend(p) or real(lm, p, **k))
    low = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", precision="bf16", output_dir=None)
    n_text = len(encoded)
    fp32 = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    assert len(encoded) == 2 * n_text  # the fp32 classifier was encoded, not read from the bf16 entries
    assert len(list((eval_config.cache_dir / "features").iterdir())) == 2
    clean = zeroshot("tiny-clip-digits", "digits", replace(eval_config, cache_dir=tmp_path / "clean"), device="cpu",
                     output_dir=None)
    assert [r["value"] for r in fp32] == [r["value"] for r in clean]
    assert low[0]["precision"] == "bf16" and fp32[0]["precision"] == "fp32"
    assert low[0]["result_id"] != fp32[0]["result_id"]
    feats = {}
    for entry in (eval_config.cache_dir / "features").iterdir():
        import json

        meta = json.loads((entry / "meta.json").read_text())
        feats[meta["key"]["precision"]] = np.load(entry / "features.npy")
    assert not np.array_equal(feats["bf16"], feats["fp32"])
