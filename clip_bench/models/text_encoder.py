"""Encode prompts fast: each distinct prompt once, batched across classes, padding trimmed where exact."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from clip_bench.models.backends.base import LoadedModel


def encode_prompts(
    lm: LoadedModel,
    prompts: list[str],
    batch_size: int = 256,
    trim: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L2-normalised float32 embeddings of `prompts` (rows in the given order; duplicates allowed).

    Padding is trimmed only where the backend proves it exact (``lm.trim_positions``: a causal text
    tower pooling at end-of-text); prompts are then sorted by length so each batch is cut to its own
    longest prompt.
    """
    unique = list(dict.fromkeys(prompts))
    if not unique:
        return np.zeros((0, 0), dtype=np.float32)
    tokens = lm.tokenize(unique)
    positions = lm.trim_positions(tokens) if trim else None
    order = torch.argsort(positions, stable=True) if positions is not None else torch.arange(len(unique))
    out: list[torch.Tensor | None] = [None] * len(unique)
    with torch.inference_mode(), lm.autocast():
        for start in range(0, len(unique), batch_size):
            idx = order[start : start + batch_size]
            batch = tokens[idx].to(lm.device)
            emb = lm.encode_text_trimmed(batch) if positions is not None else lm.encode_text(batch)
            emb = F.normalize(emb.float(), dim=-1).cpu()
            for i, row in zip(idx.tolist(), emb):
                out[i] = row
            if progress is not None:
                progress(len(idx))
    table = torch.stack(out).numpy()  # type: ignore[arg-type]
    where = {p: i for i, p in enumerate(unique)}
    return table[[where[p] for p in prompts]]
