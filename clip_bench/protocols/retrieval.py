"""The zero-shot retrieval protocol (CLIP paper Table 13; DataComp's Flickr and MSCOCO): a ``kind: retrieval``
task -> recall rows, with the task's summary (``mean_recall`` or ``mean_recall@1``) as the main row.

Images are encoded through the feature cache and captions through the text cache; the recalls, their
tie rule and memory bound are :mod:`clip_bench.metrics.retrieval`'s, and the rows' intervals and
per-query evidence are :mod:`clip_bench.results.outcomes`'. Replaying a row from the caches alone is
:func:`clip_bench.protocols.replay.ranks_from_cache`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.cache.text import TextEmbeddingCache
from clip_bench.config import EvalConfig
from clip_bench.metrics.retrieval import flatten_captions, l2_normalize, retrieval_ranks
from clip_bench.models.resolve import ModelHandle
from clip_bench.models.text_encoder import encode_prompts
from clip_bench.protocols.runner import check_same_data, get_features, provenance
from clip_bench.results.outcomes import attach_retrieval_outcomes, retrieval_sample_hash
from clip_bench.results.rows import make_row
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import sha256_json
from clip_bench.util.progress import progress_bar

PROTOCOL = "retrieval"


def apply_template(captions: Sequence[str], template: str | None) -> list[str]:
    """Each caption put into `template` at ``{}`` (no template: the captions themselves)."""
    if template is None:
        return list(captions)
    if "{}" not in template:
        raise ClipBenchError(f"caption template {template!r} has no '{{}}' where the caption goes.")
    return [template.replace("{}", c) for c in captions]


def encode_texts(lm: ModelHandle, texts: Sequence[str], cache_dir: str | Path | None, quiet: bool = True,
                 batch_size: int = 256) -> np.ndarray:
    """(len(texts), D) L2-normalised embeddings; each distinct string is encoded once and kept in the text cache."""
    unique = list(dict.fromkeys(texts))
    cache = (TextEmbeddingCache(cache_dir, lm.fingerprint, lm.tokenizer_id, lm.precision, lm.device)
             if cache_dir is not None else None)
    found, missing = cache.lookup(unique) if cache is not None else ({}, unique)
    table = dict(found)
    if missing:
        with progress_bar(total=len(missing), desc="captions", unit="caption", quiet=quiet) as bar:
            emb = encode_prompts(lm.get(), missing, batch_size=batch_size, progress=bar.update)
        table.update(zip(missing, emb))
        if cache is not None:
            cache.add(missing, emb)
    return np.stack([table[t] for t in texts]).astype(np.float32)


def evaluate_retrieval_task(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
    """Zero-shot retrieval rows for one ``kind: retrieval`` task: six recalls and the task's summary of them (its
    main metric: ``mean_recall``, the mean of the six, or ``mean_recall@1``, the mean of the two at k = 1)."""
    split = task.eval_split
    feats = get_features(handle, task, split, cfg)
    captions = feats.meta.get("captions")
    if captions is None:
        raise ClipBenchError(
            f"task {task.name!r}: the cached features in the feature cache carry no captions; "
            "delete that cache entry (or pass --no-cache) and run again."
        )
    if len(feats) == 0:
        raise ClipBenchError(f"task {task.name!r}: split {split!r} has no images to evaluate.")
    template = getattr(cfg, "caption_template", None) or task.extra.get("caption_template")
    raw_texts, text_image = flatten_captions(captions, feats.labels)
    texts = apply_template(raw_texts, template)
    text_emb = encode_texts(handle, texts, cfg.cache_dir, quiet=cfg.quiet)
    ranks = retrieval_ranks(l2_normalize(feats.features), text_emb, text_image, quiet=cfg.quiet)
    n_img, n_txt = len(feats), len(texts)
    prov = provenance(handle, task, cfg)
    check_same_data(feats, prov["data_fingerprint"], task, split)
    sample = retrieval_sample_hash(feats.labels, raw_texts, text_image, prov["data_fingerprint"])
    common = dict(
        **prov, protocol=PROTOCOL, subset=None,
        skipped_images=feats.meta.get("skipped_images", 0), caption_template=template,
        captions_hash=sha256_json(raw_texts)[:16], n_images=n_img, n_captions=n_txt,
    )
    common["standard"] = common["standard"] and template == task.extra.get("caption_template")  # no override
    rows = [
        make_row(**common, metric=m, value=v, is_main=(m == task.metric),
                 n=n_img if m.startswith("text_") else n_txt if m.startswith("image_") else n_img + n_txt)
        for m, v in ranks.recalls(summary=task.metric).items()
    ]
    return attach_retrieval_outcomes(rows, ranks, text_image, sample, cfg.output_dir)  # intervals + evidence


