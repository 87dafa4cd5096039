"""Loaders for image–text retrieval sets: images, each with one or more captions.

Two on-disk layouts:

* ``wds_retrieval``: clip-benchmark's retrieval WebDataset (``clip-benchmark/wds_flickr30k``,
  ``wds_mscoco_captions``, ``wds_flickr8k``), as CLIP_benchmark's ``convert_retrieval_dataset`` writes it::

      dataset_type.txt        "retrieval"
      <split>/nshards.txt     the number of shards
      <split>/0.tar, 1.tar    samples ``s0000000.webp|png|jpg|jpeg`` + ``s0000000.txt`` (UTF-8, one caption
                              a line; a newline inside a caption was written as the two characters ``\\n``)

* ``karpathy_json``: the images plus Karpathy's split file (``dataset_flickr30k.json``, ``dataset_coco.json``,
  ``dataset_flickr8k.json``): ``{"images": [{"split", "filename", "filepath"?, "sentences": [{"raw"}...]}]}``;
  the image of an entry is ``<images>/<filepath>/<filename>`` (COCO entries carry ``filepath``, e.g. ``val2014``).

Both return a :class:`CaptionedImages`: the images (targets are the image indices ``0..N-1``) and, per image,
its captions with surrounding whitespace stripped. Images are read lazily; only captions and offsets are held.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import FileImages, LabeledImages, LoadContext
from .hub import hub_snapshot
from .webdataset import IMAGE_EXTENSIONS, TarImages, _split_name, list_shards

RETRIEVAL_META_FILES = ("dataset_type.txt",)


class CaptionedImages(LabeledImages):
    """Images with their captions; ``targets[i] == i`` so cached feature rows name their image."""

    def __init__(self, images: LabeledImages, captions: list[list[str]]) -> None:
        self.images = images
        self.captions = captions
        self.targets = np.arange(len(captions), dtype=np.int64)

    def load_image(self, index: int) -> Image.Image:
        return self.images.load_image(index)

    def describe(self, index: int) -> str:
        return self.images.describe(index)

    @property
    def n_captions(self) -> int:
        return sum(len(c) for c in self.captions)

    def data_files(self) -> list[str | Path] | None:
        images = self.images.data_files()
        return None if images is None else [*images, *self.annotation_files]

    def cache_provenance(self) -> dict[str, Any]:
        """What the feature cache stores beside the image features: the captions, so a cache hit needs no data."""
        return {"captions": self.captions}


def _clean(captions: list[str]) -> list[str]:
    return [c.strip() for c in captions if c.strip()]


def _check(ctx: LoadContext, captions: list[list[str]], names: list[str], expected_captions: int | None) -> None:
    """Every image needs a caption (else it has no true match); the caption total must match when declared."""
    empty = [n for n, c in zip(names, captions) if not c]
    if empty:
        raise ctx.missing(f"{len(empty)} images have no caption (first: {empty[0]}); every image needs at least one")
    total = sum(len(c) for c in captions)
    if expected_captions is not None and total != expected_captions and ctx.source.expected.get(ctx.split) == len(captions):
        raise ctx.missing(
            f"the {ctx.split} split has {total} captions but {expected_captions} are expected; "
            "is this the same dataset and annotation file?"
        )


def _index_retrieval_shard(path: Path) -> tuple[list[str], list[tuple[int, int]], list[bytes], list[str]]:
    """One shard in tar order: sample keys, image (offset, size), raw caption bytes, and incomplete keys."""
    images: dict[str, tuple[int, int, int]] = {}
    texts: dict[str, bytes] = {}
    order: list[str] = []
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if not m.isfile():
                continue
            key, ext = _split_name(m.name)
            if key not in images and key not in texts:
                order.append(key)
            if ext in IMAGE_EXTENSIONS:
                rank = IMAGE_EXTENSIONS.index(ext)
                if key not in images or rank < images[key][0]:
                    images[key] = (rank, m.offset_data, m.size)
            elif ext == "txt":
                fh = tf.extractfile(m)
                texts[key] = fh.read() if fh is not None else b""
    done = [k for k in order if k in images and k in texts]
    incomplete = [k for k in order if k not in images or k not in texts]
    return done, [images[k][1:] for k in done], [texts[k] for k in done], incomplete


def load_wds_retrieval(
    ctx: LoadContext, repo: str | None = None, revision: str | None = None, expected_captions: int | None = None
) -> CaptionedImages:
    """The ``wds_retrieval`` loader: a local copy of a clip-benchmark retrieval WebDataset (``--download``: `repo`)."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_dir = ctx.root / ctx.source_split
    shards, expected = list_shards(split_dir) if split_dir.is_dir() else ([], None)
    if not shards or (expected is not None and len(shards) != expected):
        if ctx.download and repo:
            hub_snapshot(ctx, ctx.root, repo, [f"{ctx.source_split}/*", *RETRIEVAL_META_FILES], revision)
            shards, expected = list_shards(split_dir) if split_dir.is_dir() else ([], None)
        if not shards:
            show = repo and not ctx.download and not ctx.source.download
            hint = f" (pass --download to fetch {repo} from the Hugging Face hub)" if show else ""
            raise ctx.missing(f"no WebDataset shards <n>.tar for split {ctx.source_split!r}{hint}", split_dir)
        if expected is not None and len(shards) != expected:
            raise ctx.missing(f"only {len(shards)} of the {expected} shards listed in nshards.txt are present", split_dir)
    type_file = ctx.root / "dataset_type.txt"
    if type_file.exists():
        kind = type_file.read_text(encoding="utf-8").strip().lower()
        if kind != "retrieval":
            raise ctx.missing(f"dataset_type.txt says {kind!r}, not 'retrieval'; this is not an image-text retrieval set",
                              type_file)
    shard_ids: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    captions: list[list[str]] = []
    names: list[str] = []
    for i, path in enumerate(shards):
        try:
            keys, members, raw_texts, incomplete = _index_retrieval_shard(path)
        except (tarfile.TarError, OSError) as exc:
            raise ctx.missing(f"shard {path.name} is not a readable tar file ({exc})", path) from None
        if incomplete:
            raise ctx.missing(
                f"{len(incomplete)} samples in {path.name} lack an image or a .txt caption file "
                f"(first: {incomplete[0]!r}); is this a retrieval WebDataset?", path,
            )
        try:
            captions.extend(_clean(raw.decode("utf-8").splitlines()) for raw in raw_texts)
        except UnicodeDecodeError as exc:
            raise ctx.missing(f"a caption file in {path.name} is not UTF-8 ({exc})", path) from None
        names.extend(f"{path.name}:{k}" for k in keys)
        shard_ids.extend([i] * len(members))
        offsets.extend(m[0] for m in members)
        sizes.extend(m[1] for m in members)
    if not captions:
        raise ctx.missing("the shards hold no samples", split_dir)
    _check(ctx, captions, names, expected_captions)
    images = TarImages(shards, np.asarray(shard_ids, dtype=np.int32), np.asarray(offsets, dtype=np.int64),
                       np.asarray(sizes, dtype=np.int64), np.arange(len(captions), dtype=np.int64))
    data = CaptionedImages(images, captions)
    data.annotation_files = [type_file] if type_file.exists() else []
    return data


def load_karpathy_json(
    ctx: LoadContext, annotations: str, images: str = ".", expected_captions: int | None = None
) -> CaptionedImages:
    """The ``karpathy_json`` loader: the entries of Karpathy's split file whose ``split`` is this source split.

    Images are taken in the file's order; a missing image file is an error naming it (and how many are missing).
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    ann_path = ctx.root / annotations
    if not ann_path.exists():
        raise ctx.missing(f"the annotation file {annotations} is missing", ann_path)
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
        entries = [e for e in data["images"] if e["split"] == ctx.source_split]
        paths = [ctx.root / images / e.get("filepath", "") / e["filename"] for e in entries]
        captions = [_clean([s["raw"] for s in e["sentences"]]) for e in entries]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ctx.missing(
            f"{annotations} is not a Karpathy split file ({type(exc).__name__}: {exc}); expected "
            '{"images": [{"split", "filename", "sentences": [{"raw": ...}]}]}', ann_path,
        ) from None
    if not entries:
        raise ctx.missing(f"{annotations} has no image with split {ctx.source_split!r}", ann_path)
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise ctx.missing(f"{len(absent)} of the {len(paths)} {ctx.split} images are missing (first: {absent[0]})",
                          ctx.root / images)
    _check(ctx, captions, [str(p) for p in paths], expected_captions)
    data = CaptionedImages(FileImages(paths, np.arange(len(paths), dtype=np.int64)), captions)
    data.annotation_files = [ann_path]
    return data
