"""FER2013 from Kaggle's ``fer2013.csv`` (or ``icml_face_data.csv``): 48x48 grey faces, with official splits.

The CSV's ``Usage`` column gives the splits the CLIP authors point to (openai/CLIP issue #45):
``Training`` 28,709, ``PublicTest`` 3,589 (our val), ``PrivateTest`` 3,589 (our test). Labels are Kaggle's
0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad 5=Surprise 6=Neutral. torchvision's FER2013 merges both test
sets into one and checks the file's md5, so this loader reads the CSV itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from clip_bench.loaders.base import ArrayImages, LoadContext

CSV_FILES = ("fer2013.csv", "icml_face_data.csv")


def read_fer_csv(path: Path, usage: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 48, 48), int labels) of the rows whose Usage is `usage`."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [k.strip() for k in reader.fieldnames or []]
        for row in reader:
            if row["Usage"].strip() != usage:
                continue
            images.append(np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48))
            labels.append(int(row["emotion"]))
    return (np.stack(images) if images else np.zeros((0, 48, 48), np.uint8)), np.asarray(labels, dtype=np.int64)


def load_fer2013(ctx: LoadContext, folder: str = "fer2013") -> ArrayImages:
    """The split whose Kaggle ``Usage`` is the source split name (Training, PublicTest, PrivateTest)."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / folder
    path = next((base / n for n in CSV_FILES if (base / n).exists()), None)
    if path is None:
        raise ctx.missing(f"neither {' nor '.join(CSV_FILES)} is present", base)
    try:
        images, labels = read_fer_csv(path, ctx.source_split)
    except (KeyError, ValueError) as exc:
        raise ctx.missing(f"{path.name} is not the FER2013 CSV (emotion, pixels, Usage columns): {exc}", path) from None
    if not len(labels):
        raise ctx.missing(f"{path.name} has no rows with Usage {ctx.source_split!r}", path)
    return ArrayImages(images, labels, files=[path])
