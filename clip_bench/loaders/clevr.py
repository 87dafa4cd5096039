"""CLEVR object counts (the CLIP paper's "CLEVR Counts"): how many objects a rendered scene holds, 3 to 10.

The source label is ``count - 3`` (3..10 -> 0..7). The CLIP paper evaluates on small random subsets
(2,000 train / 500 test); this loader draws them with a fixed seed from CLEVR v1.0's ``train`` and
``val`` scenes (the released ``test`` scenes have no annotations): ``numpy.random.default_rng(seed)``
chooses `size` images without replacement from the split's scenes sorted by file name.

Layout (torchvision's ``CLEVRClassification`` layout, which ``--download`` fills)::

    <root>/clevr/CLEVR_v1.0/images/{train,val}/CLEVR_<split>_<n>.png
    <root>/clevr/CLEVR_v1.0/scenes/CLEVR_{train,val}_scenes.json
"""

from __future__ import annotations

import json

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.loaders.fetch import require, torchvision_fetch

MIN_COUNT = 3


def load_clevr_counts(ctx: LoadContext, sizes: dict[str, int] | None = None, seed: int = 0) -> FileImages:
    """A seeded subset of CLEVR `source_split` (``sizes[split]`` images; all of them when not given)."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    data = ctx.root / "clevr" / "CLEVR_v1.0"
    scenes_file = data / "scenes" / f"CLEVR_{ctx.source_split}_scenes.json"
    if not scenes_file.exists() and ctx.download:
        torchvision_fetch(ctx, "CLEVRClassification", ctx.root, split=ctx.source_split)
    require(ctx, scenes_file, data / "images" / ctx.source_split)
    try:
        scenes = json.loads(scenes_file.read_text())["scenes"]
        counts = {s["image_filename"]: len(s["objects"]) for s in scenes}
    except (ValueError, KeyError, TypeError) as exc:
        raise ctx.missing(f"{scenes_file.name} is not a CLEVR scenes file ({exc})", scenes_file) from None
    names = sorted(counts)
    size = (sizes or {}).get(ctx.source_split)
    if size is not None:
        if size > len(names):
            raise ctx.missing(f"{scenes_file.name} lists {len(names)} scenes, fewer than the {size} sampled",
                              scenes_file)
        names = [names[i] for i in np.sort(np.random.default_rng(seed).choice(len(names), size, replace=False))]
    paths = [data / "images" / ctx.source_split / n for n in names]
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise ctx.missing(f"{len(absent)} of {len(paths)} images are missing (first: {absent[0].name})",
                          absent[0].parent)
    labels = np.asarray([counts[n] - MIN_COUNT for n in names], dtype=np.int64)
    dataset = FileImages(paths, labels)
    dataset.annotation_files = [scenes_file]
    return dataset
