"""The backend seam: what every model backend resolves (ModelSpec) and loads (LoadedModel).

A backend turns a model reference into a ModelSpec without loading weights (cheap, so a fully
cached evaluation never loads the model), and a ModelSpec into a LoadedModel: image preprocessing,
a tokenizer, ``encode_image``, ``encode_text``, the pre-projection image features, and the
model's own logit scale (and bias). The fingerprint and the tokenizer identity key every cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from clip_bench.util.io import sha256_file, sha256_json

PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ModelSpec:
    """What determines a model's outputs, resolved without loading any weights.

    ``fingerprint`` hashes the architecture config, the weights identity (tag, content hash of local
    files, or a hub commit), the preprocessing and (for every backend but open_clip, whose tokenizer
    the architecture names) the tokenizer, so every cache and result row keyed by it misses when any
    of them changes, and a cache hit never needs the model itself. ``tokenizer_config`` identifies the
    tokenizer and its padding (also the text cache's second key).
    """

    name: str
    pretrained: str | None
    arch: str
    weights: str | None
    config_path: str | None
    arch_config: dict[str, Any]
    weights_id: str
    preprocess_config: dict[str, Any]
    revision: str | None = None  # the commit a hub model was pinned to (part of weights_id too)
    backend: str = "open_clip"
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    backend_version: str | None = None

    @property
    def fingerprint(self) -> str:
        payload: dict[str, Any] = {"arch": self.arch_config, "weights": self.weights_id,
                                   "preprocess": self.preprocess_config}
        if self.backend != "open_clip":  # open_clip's fingerprints predate backends and stay as they were
            # the tokenizer shapes every text embedding, so it keys the rows' result_id too, not only the text cache
            payload = {"backend": self.backend, **payload, "tokenizer": self.tokenizer_config}
        return sha256_json(payload)[:20]

    @property
    def tokenizer_id(self) -> str:
        """Identity of the tokenizer (and its padding), part of the text-cache key."""
        return sha256_json(self.tokenizer_config)[:16]

    def provenance(self) -> dict[str, Any]:
        """Row fields that identify the model beyond name and tag: backend, its version, the hub commit."""
        out: dict[str, Any] = {"backend": self.backend, "revision": self.revision}
        if self.backend_version is not None:
            out["backend_version"] = self.backend_version
        return out


@dataclass
class LoadedModel:
    """A model ready for inference, with the spec that fingerprints it.

    Backends subclass it and implement the encoders; everything downstream (feature extraction,
    the prompt engine) talks only to this interface.
    """

    spec: ModelSpec
    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Any
    device: torch.device
    precision: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pretrained(self) -> str | None:
        return self.spec.pretrained

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    @property
    def tokenizer_id(self) -> str:
        return self.spec.tokenizer_id

    def get(self) -> LoadedModel:
        return self

    def autocast(self) -> Any:
        """Context manager for inference at the requested precision (weights stay fp32; autocast casts)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # --- text ---------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (N, L), padded as the model expects."""
        raise NotImplementedError

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings (unnormalised) of a batch of token ids."""
        raise NotImplementedError

    def trim_positions(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """Per row, the position the text tower pools at, when cutting the padding after it provably
        leaves the embedding unchanged (a causal tower pooling at end-of-text); None otherwise."""
        return None

    def encode_text_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``encode_text`` on tokens cut just after the batch's last pooled position."""
        raise NotImplementedError

    # --- images -------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings (unnormalised) of a preprocessed batch."""
        raise NotImplementedError

    def encode_image_pre_proj(self, images: torch.Tensor) -> torch.Tensor:
        """The image representation before the projection into the joint space (the paper's probe input)."""
        raise NotImplementedError

    def image_encoder(self, compile: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """``encode_image``, optionally through torch.compile (compiled once per model)."""
        if not compile:
            return self.encode_image
        if not hasattr(self, "_compiled_image"):
            self._compiled_image = torch.compile(self.encode_image)
        return self._compiled_image

    def logit_params(self) -> tuple[float, float | None]:
        """The model's own logit scale (exp of the learned temperature) and bias (SigLIP; None for CLIP)."""
        raise NotImplementedError


class Backend:
    """Turns model references into specs and specs into loaded models. One instance per backend."""

    name: str = ""
    package: str = ""  # the distribution whose version result rows record

    def claims(self, reference: str) -> bool:
        """Whether this backend reads `reference` (checked cheaply: no heavy imports, no network)."""
        raise NotImplementedError

    def resolve(self, reference: str, pretrained: str | None, revision: str | None) -> ModelSpec:
        raise NotImplementedError

    def load(self, spec: ModelSpec, device: torch.device, precision: str) -> LoadedModel:
        raise NotImplementedError

    def version(self) -> str | None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.package) if self.package else None
        except PackageNotFoundError:
            return None


@lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_content_hash(path: str | os.PathLike[str]) -> str:
    """Content hash of a local weights file, memoised on (path, size, mtime)."""
    st = os.stat(path)
    return _file_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def quiet_third_party_logs() -> Any:
    """open_clip, transformers and huggingface_hub log retries and fallbacks at WARNING/ERROR; our own
    error says it once, clearly. Set CLIP_BENCH_DEBUG=1 to see their logs."""
    if os.environ.get("CLIP_BENCH_DEBUG"):
        yield
        return
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub"), logging.getLogger("transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

