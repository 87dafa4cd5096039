"""A third model backend in one small module: what a plugin needs to implement, and nothing more.

``pixels:<dim>`` is a fixed random projection of downsampled pixels, with hashed bag-of-characters
text embeddings: useless as a model, but it goes through the same seam as open_clip and transformers.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from clip_bench.models.backends import Backend, LoadedModel, ModelSpec

PREFIX = "pixels:"


class PixelModel(LoadedModel):
    def tokenize(self, texts: Any) -> torch.Tensor:
        rows = []
        for text in texts:
            counts = np.zeros(64, np.float32)
            for ch in text:
                counts[int(hashlib.sha1(ch.encode()).hexdigest(), 16) % 64] += 1
            rows.append(counts)
        return torch.from_numpy(np.stack(rows))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.to(self.device) @ self.model.text_proj

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images, 8).flatten(1) @ self.model.image_proj

    def encode_image_pre_proj(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images, 8).flatten(1)

    def logit_params(self) -> tuple[float, float | None]:
        return 100.0, None


def _preprocess(image: Any) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class PixelBackend(Backend):
    name = "pixels"

    def claims(self, reference: str) -> bool:
        return reference.startswith(PREFIX)

    def resolve(self, reference: str, pretrained: str | None, revision: str | None) -> ModelSpec:
        dim = int(reference[len(PREFIX):])
        return ModelSpec(name=reference, pretrained=None, arch="pixels", weights=None, config_path=None,
                         arch_config={"dim": dim}, weights_id="seed:0", preprocess_config={"size": 32},
                         backend=self.name, tokenizer_config={"bag_of_chars": 64})

    def load(self, spec: ModelSpec, device: torch.device, precision: str) -> LoadedModel:
        gen = torch.Generator().manual_seed(0)
        model = torch.nn.Module()
        model.image_proj = torch.nn.Parameter(torch.randn(48, spec.arch_config["dim"], generator=gen), False)
        model.text_proj = torch.nn.Parameter(torch.randn(64, spec.arch_config["dim"], generator=gen), False)
        return PixelModel(spec, model.to(device), _preprocess, None, device, precision)
