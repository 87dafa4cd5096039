"""Prompts: templates render class names (or fail on a template without a placeholder), and trimming the
token sequence to the longest prompt encodes them exactly as the full context length does."""

from __future__ import annotations

import numpy as np
import pytest
from task_fixtures import NAMES, TEMPLATES

from clip_bench.models.text_encoder import encode_prompts
from clip_bench.tasks.prompts import render


def test_trimmed_equals_untrimmed(tiny_model):
    prompts = [render(t, n) for t in TEMPLATES for n in NAMES] + ["a very long prompt " * 4]
    trimmed = encode_prompts(tiny_model, prompts, batch_size=7, trim=True)
    full = encode_prompts(tiny_model, prompts, batch_size=7, trim=False)
    assert np.abs(trimmed - full).max() < 1e-5
    # and trimming really cuts the sequence: the encoder sees fewer positions than the context length
    seen = []
    hook = tiny_model.model.transformer.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    try:
        encode_prompts(tiny_model, ["the digit 3"], trim=True)
    finally:
        hook.remove()
    assert seen and seen[0] < tiny_model.tokenizer.context_length


def test_template_without_placeholder_is_a_clear_error():
    from clip_bench.util.errors import ClipBenchError

    with pytest.raises(ClipBenchError, match="placeholder"):
        render("a photo", "cat")
