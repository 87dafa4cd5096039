"""SUN397 with the dataset's own train/test partitions (the CLIP paper's 19,850 / 19,850 split).

torchvision's ``SUN397`` yields all 108,754 images with no split; the standard protocol uses partition 1
of the authors' ``Partitions.zip`` (``Training_01.txt`` / ``Testing_01.txt``, 50 images per class each).
Class order (the source's labels) is ``ClassName.txt``'s, as in torchvision.

Layout: ``<root>/SUN397/ClassName.txt``, ``<root>/SUN397/<letter>/<class path>/sun_*.jpg`` (torchvision's
layout) and ``<root>/SUN397/Partitions/{Training,Testing}_01.txt``.
"""

from __future__ import annotations

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.loaders.fetch import fetch_archive, require, torchvision_fetch

PARTITIONS_URL = "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"
PARTITION_FILES = {"train": "Training", "test": "Testing"}


def load_sun397(ctx: LoadContext, partition: int = 1) -> FileImages:
    """One side (train or test) of SUN397 partition `partition`."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / "SUN397"
    if ctx.source_split not in PARTITION_FILES:
        raise ctx.missing(f"SUN397 has no split {ctx.source_split!r} (train, test)")
    part = base / "Partitions" / f"{PARTITION_FILES[ctx.source_split]}_{partition:02d}.txt"
    if ctx.download:
        if not (base / "ClassName.txt").exists():
            torchvision_fetch(ctx, "SUN397", ctx.root)
        if not part.exists():
            fetch_archive(ctx, PARTITIONS_URL, base)
    require(ctx, base / "ClassName.txt", part)
    classes = [ln.strip() for ln in (base / "ClassName.txt").read_text().splitlines() if ln.strip()]
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for line in part.read_text().splitlines():
        rel = line.strip()
        if not rel:
            continue
        cls = rel.rsplit("/", 1)[0]
        if cls not in index:
            raise ctx.missing(f"{part.name} names class {cls!r}, which ClassName.txt does not list", part)
        paths.append(base / rel.lstrip("/"))
        labels.append(index[cls])
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise ctx.missing(f"{len(absent)} of {len(paths)} images are missing (first: {absent[0]})", base)
    data = FileImages(paths, np.asarray(labels, dtype=np.int64))
    data.annotation_files = [base / "ClassName.txt", part]
    return data
