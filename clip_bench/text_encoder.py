"""Encode prompts fast: each distinct prompt once, batched across classes, padding trimmed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .models import LoadedModel


def _trimmable_tower(model: torch.nn.Module) -> torch.nn.Module | None:
    """The text tower if it is causal and pools at the end-of-text token, so padding can be cut.

    Padding after the pooled token cannot influence it through a causal mask. Towers that pool
    elsewhere ('last', 'first', CoCa's cls token) or attend bidirectionally are encoded untrimmed.
    """
    import open_clip

    if isinstance(model, open_clip.CLIP):
        pool = getattr(model, "text_pool_type", "argmax")
        if pool in ("argmax", "eos") and getattr(model, "attn_mask", None) is not None:
            return model
    return None


def _pool_index(tokens: torch.Tensor, pool: str, eos_id: int | None) -> torch.Tensor:
    if pool == "eos":
        return (tokens == eos_id).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def encode_tokens_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` on tokens cut just after the longest real sequence."""
    from open_clip.transformer import text_global_pool

    pool = getattr(model, "text_pool_type", "argmax")
    eos_id = getattr(model, "text_eos_id", None)
    length = int(_pool_index(tokens, pool, eos_id).max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, pool, eos_token_id=eos_id)
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x


def encode_prompts(
    lm: LoadedModel,
    prompts: list[str],
    batch_size: int = 256,
    trim: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L2-normalised float32 embeddings of `prompts` (rows in the given order; duplicates allowed)."""
    unique = list(dict.fromkeys(prompts))
    if not unique:
        return np.zeros((0, 0), dtype=np.float32)
    tokens = lm.tokenizer(unique)
    tower = _trimmable_tower(lm.model) if trim else None
    if tower is not None:
        # Sort by real length so each batch is cut to its own longest prompt.
        lengths = _pool_index(tokens, getattr(tower, "text_pool_type", "argmax"), getattr(tower, "text_eos_id", None))
        order = torch.argsort(lengths, stable=True)
    else:
        order = torch.arange(len(unique))
    out: list[torch.Tensor | None] = [None] * len(unique)
    with torch.inference_mode(), lm.autocast():
        for start in range(0, len(unique), batch_size):
            idx = order[start : start + batch_size]
            batch = tokens[idx].to(lm.device)
            emb = encode_tokens_trimmed(tower, batch) if tower is not None else lm.model.encode_text(batch)
            emb = F.normalize(emb.float(), dim=-1).cpu()
            for i, row in zip(idx.tolist(), emb):
                out[i] = row
            if progress is not None:
                progress(len(idx))
    table = torch.stack(out).numpy()  # type: ignore[arg-type]
    where = {p: i for i, p in enumerate(unique)}
    return table[[where[p] for p in prompts]]
