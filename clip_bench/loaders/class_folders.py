"""Class-per-folder datasets without an official split (Caltech-101, EuroSAT, RESISC45), and trees whose
folder names spell the class names loosely (Birdsnap).

``sampled_folders`` splits each class's images with a fixed seed: the classes are the sorted folder
names (the source's label order), each class's files are sorted, permuted with
``numpy.random.default_rng(seed)`` (one generator, classes visited in order), and cut into the
per-class counts given for each split, in the order given; ``rest`` takes what is left.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.loaders.fetch import torchvision_fetch
from clip_bench.loaders.imagefolder import list_images
from clip_bench.util.errors import ClipBenchError


def source_class_count(ctx: LoadContext) -> int:
    """How many classes the source's labels index: its label_map's length, else the task's class count."""
    if ctx.source.label_map is not None:
        return len(ctx.source.label_map)
    return len(ctx.task.prompt_set().classnames)


def _shown(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def class_dirs(ctx: LoadContext, folder: Path) -> list[Path]:
    """The class folders under `folder` in sorted order, checked against the number of classes expected."""
    dirs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    want = source_class_count(ctx)
    if len(dirs) != want:
        raise ctx.missing(
            f"found {len(dirs)} class folders but this source has {want} classes "
            f"({_shown([d.name for d in dirs])})", folder,
        )
    return dirs


def per_class_split(n: int, counts: dict[str, int | str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Cut a permutation of range(n) into consecutive parts of the given sizes (``rest``: all remaining)."""
    perm = rng.permutation(n)
    parts: dict[str, np.ndarray] = {}
    start = 0
    for name, size in counts.items():
        stop = n if size == "rest" else start + int(size)
        if stop > n:
            raise ValueError(f"needs {stop} images, has {n}")
        parts[name] = np.sort(perm[start:stop])
        start = stop
    return parts


def load_sampled_folders(
    ctx: LoadContext,
    folder: str,
    per_class: dict[str, int | str],
    seed: int = 0,
    fetch: str | None = None,
) -> FileImages:
    """Class folders under ``<root>/<folder>``, split per class with a fixed seed (see module docstring).

    `fetch` names the torchvision dataset class that downloads the tree into the root with ``--download``.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / folder
    if not base.is_dir() and ctx.download and fetch:
        torchvision_fetch(ctx, fetch, ctx.root)
    if not base.is_dir():
        hint = " (pass --download to fetch it)" if fetch and not ctx.download else ""
        raise ctx.missing(f"no class folders{hint}", base)
    counts = per_class.values() if isinstance(per_class, dict) else [per_class]
    bad = [v for v in counts if v != "rest" and (isinstance(v, bool) or not isinstance(v, int) or v < 0)]
    if bad:
        raise ClipBenchError(
            f"task file {ctx.task.file or ctx.task.name}: 'per_class' of source {ctx.source.name!r} must map each "
            f"split to an image count per class (an integer >= 0) or 'rest', got {bad[0]!r}."
        )
    if ctx.source_split not in per_class:
        raise ctx.missing(f"this source defines no split {ctx.source_split!r} (it has {', '.join(per_class)})")
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs(ctx, base)):
        files = list_images(d)
        try:
            chosen = per_class_split(len(files), per_class, rng)[ctx.source_split]
        except ValueError as exc:
            raise ctx.missing(f"class folder {d.name!r} is incomplete: the split {exc}", d) from None
        paths.extend(files[i] for i in chosen)
        labels.extend([label] * len(chosen))
    return FileImages(paths, np.asarray(labels, dtype=np.int64))


def name_key(name: str) -> str:
    """Case, spacing and punctuation dropped: ``Allen's_Hummingbird`` and ``Allens Hummingbird`` match."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_named_folders(ctx: LoadContext, split_dirs: bool = True) -> FileImages:
    """``<root>/<split>/<class folder>/<image>`` where each folder is a task class name, matched loosely.

    Labels are task class indices, so the source needs no label_map.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / ctx.source_split if split_dirs else ctx.root
    if not base.is_dir():
        raise ctx.missing(f"no folder for split {ctx.source_split!r}", base)
    names = ctx.task.prompt_set().display_names()
    index = {name_key(n): i for i, n in enumerate(names)}
    found: dict[int, Path] = {}
    extra: list[str] = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        i = index.get(name_key(d.name))
        if i is None:
            extra.append(d.name)
        elif i in found:
            raise ctx.missing(f"folders {found[i].name!r} and {d.name!r} both name class {names[i]!r}", base)
        else:
            found[i] = d
    if extra:
        raise ctx.missing(f"{len(extra)} folders match no class of this task: {_shown(extra)}", base)
    absent = [n for i, n in enumerate(names) if i not in found]
    if absent:
        raise ctx.missing(f"{len(absent)} of {len(names)} class folders are missing: {_shown(absent)}", base)
    paths: list[Path] = []
    labels: list[int] = []
    for i in range(len(names)):
        files = list_images(found[i])
        paths.extend(files)
        labels.extend([i] * len(files))
    return FileImages(paths, np.asarray(labels, dtype=np.int64))
