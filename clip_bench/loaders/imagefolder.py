"""``root/<split>/<class folder>/<image>`` trees, with class order taken from the task, not the disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.tasks.prompts import load_classnames

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def list_images(folder: Path) -> list[Path]:
    """Image files below `folder`, sorted so every run sees the same order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_imagefolder(
    ctx: LoadContext,
    folders: str | None = None,
    split_dirs: bool = True,
    allow_extra_folders: bool = False,
) -> FileImages:
    """Load an ImageFolder tree.

    `folders` names a prompt/class file listing the folder of each task class in task order
    (e.g. ImageNet WordNet IDs); without it, the folders are the task's class names.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_root = ctx.root / ctx.source_split if split_dirs else ctx.root
    if not split_root.is_dir():
        raise ctx.missing(f"no folder for split {ctx.source_split!r}", split_root)
    if folders:
        names = [n if isinstance(n, str) else n[0] for n in load_classnames(folders)]
    else:
        names = ctx.task.prompt_set().display_names()
    on_disk = {p.name for p in split_root.iterdir() if p.is_dir()}
    absent = [n for n in names if n not in on_disk]
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise ctx.missing(f"{len(absent)} of {len(names)} class folders are missing: {shown}", split_root)
    extra = sorted(on_disk - set(names))
    if extra and not allow_extra_folders:
        raise ctx.missing(
            f"{len(extra)} folders are not classes of this task ({', '.join(extra[:5])}); "
            "remove them or check that --data-root points at the right dataset",
            split_root,
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        files = list_images(split_root / name)
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise ctx.missing("the class folders hold no images", split_root)
    return FileImages(paths, np.asarray(labels, dtype=np.int64))
