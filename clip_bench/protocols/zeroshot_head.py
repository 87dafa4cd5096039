"""The zero-shot head: class embeddings from prompt ensembles, and logits. Pure array maths at the end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from clip_bench.cache.text import TextEmbeddingCache
from clip_bench.models.resolve import LoadedModel, ModelHandle
from clip_bench.models.text_encoder import encode_prompts
from clip_bench.tasks.prompts import ClassName, PromptSet
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.progress import progress_bar

LOGIT_SCALE = 100.0


def ensemble(prompt_embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """(D, C) classifier from per-class stacks of normalised prompt embeddings: mean, then renormalise."""
    cols = []
    for emb in prompt_embeddings:
        mean = emb.astype(np.float64).mean(axis=0)
        cols.append(mean / np.linalg.norm(mean))
    return np.stack(cols, axis=1).astype(np.float32)


def zeroshot_logits(
    image_features: np.ndarray, classifier: np.ndarray, scale: float = LOGIT_SCALE, chunk_rows: int = 8192,
) -> np.ndarray:
    """100 * normalised image features @ W as float32 logits.

    Each row chunk is normalised and multiplied in float64 (then rounded once to float32), so the
    logits match a float64 reference head to float32 rounding whatever the stored dtype, and a
    float16 memmap is never copied whole.
    """
    n = image_features.shape[0]
    W = np.asarray(classifier, dtype=np.float64)
    out = np.empty((n, W.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        feats = np.asarray(image_features[start : start + chunk_rows], dtype=np.float64)
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        out[start : start + chunk_rows] = scale * (feats @ W)
    return out


def build_classifier(
    lm: LoadedModel | ModelHandle,
    prompt_set: PromptSet,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    quiet: bool = True,
) -> np.ndarray:
    """(D, C) zero-shot weights for `prompt_set`; each distinct prompt is encoded once and cached."""
    per_class = prompt_set.all_prompts()
    flat = list(dict.fromkeys(p for prompts in per_class for p in prompts))
    cache = None
    if cache_dir is not None:
        dim = (getattr(getattr(lm, "spec", None), "arch_config", None) or {}).get("embed_dim")
        cache = TextEmbeddingCache(cache_dir, lm.fingerprint, lm.tokenizer_id, lm.precision, lm.device,
                                   dim=dim if isinstance(dim, int) else None)
    found, missing = cache.lookup(flat) if cache is not None else ({}, flat)
    table = dict(found)
    if missing:
        emb = _encode(lm, missing, batch_size, quiet)
        widths = {v.shape[-1] for v in found.values()}
        if widths and widths != {emb.shape[1]}:  # cached rows of another width: damaged, encode everything
            emb, missing, table = _encode(lm, flat, batch_size, quiet), flat, {}
        table.update(zip(missing, emb))
        if cache is not None:
            cache.add(missing, emb)
    weights = ensemble([np.stack([table[p] for p in prompts]) for prompts in per_class])
    if not np.isfinite(weights).all():
        raise ClipBenchError(
            f"the zero-shot classifier of model {lm.fingerprint} has non-finite weights (NaN or inf) for "
            f"{int((~np.isfinite(weights)).any(axis=0).sum())} of {weights.shape[1]} classes; the model's text tower "
            "gives non-finite outputs (check the checkpoint for NaN weights, or try --precision fp32)."
        )
    return weights


def _encode(lm: LoadedModel | ModelHandle, prompts: list[str], batch_size: int, quiet: bool) -> np.ndarray:
    """Encode prompts; non-finite embeddings are an error naming the prompt, never a cached row."""
    with progress_bar(total=len(prompts), desc="text prompts", unit="prompt", quiet=quiet) as bar:
        emb = encode_prompts(lm.get(), prompts, batch_size=batch_size, progress=bar.update)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise ClipBenchError(
            f"the text embeddings of {int(bad.sum())} of {len(prompts)} prompts are non-finite (NaN or inf), "
            f"e.g. {prompts[int(np.flatnonzero(bad)[0])]!r}: model {lm.fingerprint} gives non-finite outputs "
            "(check the checkpoint for NaN weights, or try --precision fp32)."
        )
    return emb


def zeroshot_classifier(
    model: LoadedModel,
    classnames: Sequence[ClassName],
    templates: Sequence[str] | Mapping[str, Sequence[str]],
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    quiet: bool = True,
) -> np.ndarray:
    """Zero-shot weights (D, C), as the CLIP paper builds them.

    Each prompt's embedding is L2-normalised, averaged per class, and normalised again. Classes are
    indexed by position (ImageNet has duplicate names). `templates` is a list of strings with ``{}``
    or ``{c}``, or a CuPL-style mapping class name -> sentences. A class given as a list of synonyms
    averages over all of them.

    Args:
        model: A loaded model (:func:`clip_bench.load_model`).
        classnames: One name, or a list of synonyms, per class.
        templates: Prompt templates, or a mapping class name -> sentences.
        cache_dir: Text-embedding cache (None: no caching).
        batch_size: Prompts encoded per batch.
        quiet: No progress bar.
    """
    if isinstance(templates, Mapping):
        ps = PromptSet(tuple(classnames), (), {k: tuple(v) for k, v in templates.items()})
    else:
        ps = PromptSet(tuple(classnames), tuple(templates))
    return build_classifier(model, ps, cache_dir=cache_dir, batch_size=batch_size, quiet=quiet)
