"""The features a probe sees: which representation (decided before any model loads) and how it is held.

The CLIP paper probes ViTs on the representation *before* the image projection (``I_f`` in its
pseudocode: 768-d for ViT-B/32, not the 512-d embedding). ``--features auto`` picks that for open_clip
ViT towers and transformers CLIP models, and the embedding for every tower where it is not defined
(ModifiedResNet, timm towers, attention-pooled towers, SigLIP, or an open_clip ``hf-hub:`` model,
whose architecture is not known before loading). The choice
is read from the architecture config alone, because the feature cache key needs it before the model is
(or is not) loaded.

Features stay float16 and memory-mapped: a probe never copies the cache into a float32 array
(``--normalize`` writes a float16 copy, chunk by chunk).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clip_bench.util.errors import ClipBenchError

FEATURE_CHOICES = ("auto", "embed", "pre-proj")
#: Rows per chunk when features are cast or normalised (a 64 MiB float32 buffer at 768-d).
CHUNK_ROWS = 1 << 15


def _vision_cfg(arch_config: dict[str, Any]) -> dict[str, Any] | None:
    vision = arch_config.get("vision_cfg")
    return vision if isinstance(vision, dict) else None


def pre_projection_width(arch_config: dict[str, Any]) -> int | None:
    """Width of the ViT's pre-projection representation, or None where it is not defined.

    Reads an open_clip architecture config (``vision_cfg``) or a transformers ``config.json``
    (``model_type`` clip: the vision tower's pooled output before ``visual_projection``; SigLIP has no
    image projection)."""
    if arch_config.get("model_type") in ("clip", "siglip"):  # the transformers backend's configs
        if arch_config["model_type"] != "clip":
            return None
        return int((arch_config.get("vision_config") or {}).get("hidden_size", 768))  # CLIPVisionConfig default
    vision = _vision_cfg(arch_config)
    if vision is None or vision.get("timm_model_name") or isinstance(vision.get("layers"), (list, tuple)):
        return None  # unknown before loading, a timm tower, or a ModifiedResNet (its attention pool projects)
    if vision.get("attentional_pool"):
        return None  # CoCa-style pooler: what precedes the projection is already embed_dim, not the paper's I_f
    return int(vision.get("width", 768))  # open_clip's CLIPVisionCfg default width


def resolve_feature_kind(arch_config: dict[str, Any], requested: str) -> str:
    """The concrete feature kind (``embed`` or ``pre-proj``) for a request (``auto``, ``embed``, ``pre-proj``)."""
    if requested not in FEATURE_CHOICES:
        raise ClipBenchError(f"unknown feature kind {requested!r}; choose one of {', '.join(FEATURE_CHOICES)}.")
    if requested != "auto":
        return requested
    return "pre-proj" if pre_projection_width(arch_config) is not None else "embed"


def normalized_rows(x: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float16, computed in float32 chunks (never a full float32 copy)."""
    out = np.empty(x.shape, dtype=np.float16)
    for i in range(0, x.shape[0], chunk_rows):
        block = np.asarray(x[i : i + chunk_rows], dtype=np.float32)
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        out[i : i + chunk_rows] = block
    return out

