"""scikit-learn's bundled 8x8 handwritten digits, upscaled: an offline task for quickstarts and tests.

Split (fixed, documented): a stratified shuffle of the 1,797 images with seed 0 puts 60% in train,
20% in val and 20% in test (1,078 / 359 / 360).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from clip_bench.loaders.base import ArrayImages, LoadContext
from clip_bench.util.errors import ClipBenchError

SPLIT_SEED = 0
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


@lru_cache(maxsize=1)
def digits_splits() -> dict[str, np.ndarray]:
    """Indices into sklearn's digits for each split (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, train_size=FRACTIONS["train"], stratify=y, random_state=SPLIT_SEED)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=SPLIT_SEED)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def digits_arrays(split: str, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, size, size), labels) for one split: white digits on black, nearest-upscaled."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = digits_splits()[split]
    imgs = (d.images[idx] / 16.0 * 255.0).round().astype(np.uint8)
    reps = max(1, size // 8)
    imgs = imgs.repeat(reps, axis=1).repeat(reps, axis=2)
    if imgs.shape[1] != size:
        pad = size - imgs.shape[1]
        imgs = np.pad(imgs, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    return imgs, d.target[idx].astype(np.int64)


def load_digits(ctx: LoadContext, size: int = 32) -> ArrayImages:
    """The `digits` loader; needs no files."""
    if size < 8:
        raise ClipBenchError(f"task file {ctx.task.file or ctx.task.name}: the digits loader's 'size' must be at least "
                             f"8 (the digits are 8x8 pixels), got {size}.")
    if ctx.source_split not in FRACTIONS:
        raise ctx.missing(f"digits has no split {ctx.source_split!r} (it has train, val, test)")
    images, labels = digits_arrays(ctx.source_split, size)
    return ArrayImages(images, labels)
