"""Loaders for image–text retrieval sets: images, each with one or more captions.

Three on-disk layouts:

* ``wds_retrieval``: clip-benchmark's retrieval WebDataset (``clip-benchmark/wds_flickr30k``,
  ``wds_mscoco_captions``, ``wds_flickr8k``), as CLIP_benchmark's ``convert_retrieval_dataset`` writes it::

      dataset_type.txt        "retrieval"
      <split>/nshards.txt     the number of shards
      <split>/0.tar, 1.tar    samples ``s0000000.webp|png|jpg|jpeg`` + ``s0000000.txt`` (UTF-8, one caption
                              a line; a newline inside a caption was written as the two characters ``\\n``)

* ``karpathy_json``: the images plus Karpathy's split file (``dataset_flickr30k.json``, ``dataset_coco.json``,
  ``dataset_flickr8k.json``): ``{"images": [{"split", "filename", "filepath"?, "sentences": [{"raw"}...]}]}``;
  the image of an entry is ``<images>/<filepath>/<filename>`` (COCO entries carry ``filepath``, e.g. ``val2014``).

* ``hf_retrieval``: a Hugging Face dataset with one image per row and a list of captions per row (DataComp's
  ``nlphuji/flickr_1k_test_image_text_retrieval`` and ``nlphuji/mscoco_2014_5k_test_image_text_retrieval``:
  columns ``image`` and ``caption``), saved with ``save_to_disk`` as ``<split>/`` (what ``--download`` writes),
  or as parquet files (:mod:`clip_bench.loaders.hf_datasets` finds them).

All three return a :class:`CaptionedImages`: the images (targets are the image indices ``0..N-1``) and, per image,
its captions with surrounding whitespace stripped. Images are read lazily; only captions and offsets are held.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_bench.loaders.base import FileImages, LabeledImages, LoadContext
from clip_bench.loaders.hf_datasets import open_hf_split
from clip_bench.loaders.hub_download import hub_save_to_disk, hub_snapshot
from clip_bench.loaders.webdataset import TarImages, check_unique_keys, key_hashes, list_shards, read_shard

RETRIEVAL_META_FILES = ("dataset_type.txt",)
CAPTION_EXTENSIONS = ("txt",)
_ABSENT = object()


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
    if (expected_captions is not None and total != expected_captions
            and ctx.source.expected.get(ctx.split) == len(captions)):
        raise ctx.missing(
            f"the {ctx.split} split has {total} captions but {expected_captions} are expected; "
            "is this the same dataset and annotation file?"
        )


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
            raise ctx.missing(f"only {len(shards)} of the {expected} shards listed in nshards.txt are present",
                              split_dir)
    type_file = ctx.root / "dataset_type.txt"
    if type_file.exists():
        kind = type_file.read_text(encoding="utf-8").strip().lower()
        if kind != "retrieval":
            raise ctx.missing(f"dataset_type.txt says {kind!r}, not 'retrieval'; "
                              "this is not an image-text retrieval set", type_file)
    shard_ids: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    captions: list[list[str]] = []
    names: list[str] = []
    starts: list[int] = []
    hashes: list[np.ndarray] = []
    for i, path in enumerate(shards):
        index = read_shard(ctx, path, CAPTION_EXTENSIONS)
        if index.incomplete:
            raise ctx.missing(
                f"{len(index.incomplete)} samples in {path.name} lack an image or a .txt caption file "
                f"(first: {index.incomplete[0]!r}); is this a retrieval WebDataset?", path,
            )
        try:
            captions.extend(_clean(raw.decode("utf-8").splitlines()) for raw in index.labels)
        except UnicodeDecodeError as exc:
            raise ctx.missing(f"a caption file in {path.name} is not UTF-8 ({exc})", path) from None
        starts.append(len(names))
        hashes.append(key_hashes(index))
        names.extend(f"{path.name}:{k}" for k in index.keys)
        shard_ids.extend([i] * len(index.members))
        offsets.extend(m[0] for m in index.members)
        sizes.extend(m[1] for m in index.members)
    check_unique_keys(ctx, shards, starts, hashes, CAPTION_EXTENSIONS)
    if not captions:
        raise ctx.missing("the shards hold no samples", split_dir)
    _check(ctx, captions, names, expected_captions)
    images = TarImages(shards, np.asarray(shard_ids, dtype=np.int32), np.asarray(offsets, dtype=np.int64),
                       np.asarray(sizes, dtype=np.int64), np.arange(len(captions), dtype=np.int64))
    data = CaptionedImages(images, captions)
    data.annotation_files = [type_file] if type_file.exists() else []
    return data


KARPATHY_SHAPE = '{"images": [{"split", "filename", "filepath"?, "sentences": [{"raw": ...}]}]}'


def _karpathy_entries(ctx: LoadContext, ann_path: Path, annotations: str, data: Any) -> list[dict[str, Any]]:
    """The entries of this source split, after checking every field the loader reads (an error names the field)."""

    def bad(field: str, value: Any, want: str) -> Exception:
        found = "missing" if value is _ABSENT else f"{json.dumps(value)[:40]} (a JSON {_json_type(value)})"
        return ctx.missing(f"{annotations} is not a Karpathy split file: {field} should be {want} but is {found}; "
                           f"expected {KARPATHY_SHAPE}", ann_path)

    def get(entry: dict[str, Any], key: str, where: str, kind: type, want: str) -> Any:
        value = entry.get(key, _ABSENT)
        if not isinstance(value, kind):
            raise bad(f"{where}.{key}" if where else f'"{key}"', value, want)
        return value

    if not isinstance(data, dict):
        raise bad("the top level", data, "an object")
    items = get(data, "images", "", list, "a list")
    entries = []
    for i, entry in enumerate(items):
        where = f"images[{i}]"
        if not isinstance(entry, dict):
            raise bad(where, entry, "an object")
        if get(entry, "split", where, str, "a split name") != ctx.source_split:
            continue
        if not get(entry, "filename", where, str, "a file name").strip():
            raise bad(f"{where}.filename", entry["filename"], "a file name")
        if "filepath" in entry:
            get(entry, "filepath", where, str, "a folder name")
        for j, sentence in enumerate(get(entry, "sentences", where, list, "a list")):
            if not isinstance(sentence, dict):
                raise bad(f"{where}.sentences[{j}]", sentence, "an object")
            if not isinstance(sentence.get("raw", _ABSENT), str):
                raise bad(f"{where}.sentences[{j}].raw", sentence.get("raw", _ABSENT), "a caption string")
        entries.append(entry)
    return entries


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ctx.missing(f"{annotations} is not a Karpathy split file ({type(exc).__name__}: {exc}); expected "
                          f"{KARPATHY_SHAPE}", ann_path) from None
    entries = _karpathy_entries(ctx, ann_path, annotations, data)
    paths = [ctx.root / images / e.get("filepath", "") / e["filename"] for e in entries]
    captions = [_clean([s["raw"] for s in e["sentences"]]) for e in entries]
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


def load_hf_retrieval(
    ctx: LoadContext, image_column: str = "image", caption_column: str = "caption", repo: str | None = None,
    revision: str | None = None, expected_captions: int | None = None,
) -> CaptionedImages:
    """The ``hf_retrieval`` loader: rows of (image, list of captions) of a Hugging Face dataset on disk, in row
    order. ``--download`` with a `repo` writes the split with ``datasets.load_dataset`` + ``save_to_disk``."""
    fetch = None
    if ctx.download and repo and ctx.root is not None:
        root = ctx.root

        def fetch() -> None:
            hub_save_to_disk(ctx, root, repo, revision)

    split = open_hf_split(ctx, image_column, [caption_column], fetch)
    cells = split.columns[caption_column]
    for i, cell in enumerate(cells):
        if not isinstance(cell, list) or not all(isinstance(c, str) for c in cell):
            found = "text" if isinstance(cell, str) else type(cell).__name__
            raise ctx.missing(f"row {i} of column {caption_column!r} holds {found}, not a list of caption strings "
                              "(one row per image, with all its captions)", split.where)
    captions = [_clean(c) for c in cells]
    if not captions:
        raise ctx.missing("the dataset has no rows", split.where)
    _check(ctx, captions, [f"{split.where} row {i}" for i in range(len(captions))], expected_captions)
    return CaptionedImages(split.images(np.arange(len(captions), dtype=np.int64)), captions)
