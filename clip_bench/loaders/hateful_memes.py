"""Hateful Memes (Facebook AI) from its released layout: ``img/`` plus one JSON-lines file per split.

Each line is ``{"id": ..., "img": "img/01235.png", "label": 0 or 1, "text": ...}``; label 1 is hateful.
The CLIP paper scores the 500-image ``dev`` set (``dev_seen.jsonl`` in the later release holds the
same 500) with ROC AUC.
"""

from __future__ import annotations

import json

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext


def load_hateful_memes(ctx: LoadContext, files: dict[str, list[str]] | None = None) -> FileImages:
    """Images and labels of one split; `files` lists candidate JSON-lines names per source split."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    candidates = (files or {}).get(ctx.source_split, [f"{ctx.source_split}.jsonl"])
    path = next((ctx.root / n for n in candidates if (ctx.root / n).exists()), None)
    if path is None:
        raise ctx.missing(f"no annotation file ({' or '.join(candidates)})", ctx.root)
    paths, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            paths.append(ctx.root / row["img"])
            labels.append(int(row["label"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ctx.missing(f"line {n} of {path.name} has no img/label ({exc}); is the split labelled?",
                              path) from None
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise ctx.missing(f"{len(absent)} of {len(paths)} images are missing (first: {absent[0].name})",
                          absent[0].parent)
    data = FileImages(paths, np.asarray(labels, dtype=np.int64))
    data.annotation_files = [path]
    return data
