"""``root/<split>/<class index>/<image>`` trees whose folders are named by class index (ImageNetV2)."""

from __future__ import annotations

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.loaders.imagefolder import list_images
from clip_bench.tasks.class_groups import num_task_classes


def load_indexfolder(ctx: LoadContext, split_dirs: bool = True) -> FileImages:
    """Load a tree whose class folders are ``0``, ``1``, ... in the task's class order (any subset of them)."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_root = ctx.root / ctx.source_split if split_dirs else ctx.root
    if not split_root.is_dir():
        raise ctx.missing(f"no folder for split {ctx.source_split!r}", split_root)
    folders = sorted((p for p in split_root.iterdir() if p.is_dir()), key=lambda p: (not p.name.isdigit(), p.name))
    bad = [p.name for p in folders if not p.name.isdigit()]
    if bad:
        raise ctx.missing(f"class folders must be named by class index; found {', '.join(bad[:5])}", split_root)
    n_classes = num_task_classes(ctx.task)
    too_big = [p.name for p in folders if int(p.name) >= n_classes]
    if too_big:
        raise ctx.missing(f"folders {', '.join(too_big[:5])} exceed the task's {n_classes} classes", split_root)
    paths, labels = [], []
    for folder in sorted(folders, key=lambda p: int(p.name)):
        files = list_images(folder)
        paths.extend(files)
        labels.extend([int(folder.name)] * len(files))
    if not paths:
        raise ctx.missing("the class folders hold no images", split_root)
    return FileImages(paths, np.asarray(labels, dtype=np.int64))
