"""The zero-shot head: class weights that match open_clip's (a prompt per template, synonyms and CuPL prompts
averaged alike) and logits that are 100 x the cosine."""

from __future__ import annotations

import numpy as np
import open_clip
import torch
from task_fixtures import NAMES, TEMPLATES

from clip_bench.models.resolve import load_model
from clip_bench.models.text_encoder import encode_prompts
from clip_bench.protocols.zeroshot_head import build_classifier, ensemble, zeroshot_classifier, zeroshot_logits
from clip_bench.tasks.prompts import PromptSet


def _open_clip_reference(lm, classnames, templates):
    templates = [t.replace("{c}", "{}") for t in templates]
    w = open_clip.build_zero_shot_classifier(lm.model, lm.tokenizer, classnames, templates, device="cpu")
    return w.numpy()


def test_classifier_matches_open_clip(tiny_model):
    ours = zeroshot_classifier(tiny_model, NAMES, TEMPLATES)
    ref = _open_clip_reference(tiny_model, NAMES, TEMPLATES)
    assert ours.shape == ref.shape == (64, 10)
    assert np.abs(ours - ref).max() < 1e-4


def test_classifier_matches_open_clip_on_vit_b32_architecture():
    """The real ViT-B-32 text tower (random weights), with the 80 ImageNet templates' style of prompts."""
    torch.manual_seed(0)
    lm = load_model("ViT-B-32", device="cpu")
    names = ["goldfish", "great white shark", "sunglasses", "sunglasses", "a much longer class name with words"]
    templates = ["a bad photo of a {}.", "itap of a {}.", "a photo of the large {}.", "{}"]
    ours = zeroshot_classifier(lm, names, templates)
    ref = _open_clip_reference(lm, names, templates)
    assert np.abs(ours - ref).max() < 1e-4
    # duplicate names are separate columns, indexed by position, and identical
    assert np.allclose(ours[:, 2], ours[:, 3])


def test_synonyms_average_like_templates(tiny_model):
    ps = PromptSet((["3", "three"], "4"), ("the digit {}", "a handwritten {}."))
    w = build_classifier(tiny_model, ps)
    emb = encode_prompts(tiny_model, ["the digit 3", "a handwritten 3.", "the digit three", "a handwritten three."])
    expected = ensemble([emb])[:, 0]
    assert np.abs(w[:, 0] - expected).max() < 1e-6


def test_cupl_per_class_prompts(tiny_model):
    cupl = {"0": ["a zero drawn with a pen", "the digit 0"], "1": ["a one", "the digit 1"]}
    w = zeroshot_classifier(tiny_model, ["0", "1"], cupl)
    emb = encode_prompts(tiny_model, cupl["1"])
    assert np.abs(w[:, 1] - ensemble([emb])[:, 0]).max() < 1e-6


def test_logits_are_100_times_cosine():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(5, 8)).astype(np.float16)
    w = ensemble([rng.normal(size=(3, 8)) for _ in range(4)])
    logits = zeroshot_logits(feats, w)
    f = feats.astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    assert np.allclose(logits, 100 * f @ w, atol=1e-3)
