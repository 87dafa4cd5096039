"""Any ``torchvision.datasets`` class, with its split arguments and download flag taken from the task file."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from PIL import Image

from .base import LabeledImages, LoadContext

TARGET_ATTRIBUTES = ("targets", "_labels", "labels", "_targets", "y")


class TorchvisionImages(LabeledImages):
    """Wraps a torchvision dataset; targets are read from its attributes, never by opening images."""

    def __init__(self, dataset: Any, targets: np.ndarray) -> None:
        self.dataset = dataset
        self.targets = targets

    def load_image(self, index: int) -> Image.Image:
        image = self.dataset[index][0]
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        return image.convert("RGB")

    def describe(self, index: int) -> str:
        for attr in ("_image_files", "imgs", "samples", "_samples"):
            items = getattr(self.dataset, attr, None)
            if items is not None:
                item = items[index]
                return str(item[0] if isinstance(item, tuple) else item)
        return f"{type(self.dataset).__name__}[{index}]"


def dataset_targets(dataset: Any) -> np.ndarray:
    """Integer labels of a torchvision dataset, from whichever attribute it keeps them in."""
    for attr in TARGET_ATTRIBUTES:
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return np.asarray([int(v) for v in values], dtype=np.int64)
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is not None:
        return np.asarray([int(s[1]) for s in samples], dtype=np.int64)
    raise TypeError(f"cannot read labels of {type(dataset).__name__} without decoding every image")


def load_torchvision(
    ctx: LoadContext,
    dataset: str,
    split_kwargs: dict[str, dict[str, Any]] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> TorchvisionImages:
    """Instantiate ``torchvision.datasets.<dataset>(root, download=..., **split_kwargs[split], **kwargs)``."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset, None)
    if cls is None:
        raise ctx.missing(f"torchvision has no dataset class {dataset!r} (torchvision {tvd.__name__})")
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    call = dict(kwargs or {})
    call.update((split_kwargs or {}).get(ctx.source_split, {"split": ctx.source_split}))
    if not ctx.download and not ctx.root.exists():
        raise ctx.missing(f"no {dataset} data (pass --download to fetch it)", ctx.root)
    if "download" in inspect.signature(cls.__init__).parameters:
        call["download"] = ctx.download
    try:
        ds = cls(root=str(ctx.root), **call)
    except (RuntimeError, OSError, ValueError, ImportError) as exc:  # ValueError: e.g. StanfordCars download
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ctx.missing(f"torchvision's {dataset} could not load it ({detail})", ctx.root) from None
    return TorchvisionImages(ds, dataset_targets(ds))
