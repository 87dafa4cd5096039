"""Retrieval fixtures in real on-disk formats, built from the digits: varied, unique captions per image.

* :func:`write_retrieval_wds` writes what CLIP_benchmark's ``convert_retrieval_dataset`` writes: shards
  ``<split>/<n>.tar`` of ``s%07d.<ext>`` + ``s%07d.txt`` (captions joined by newlines), ``nshards.txt`` and
  ``dataset_type.txt`` = ``retrieval``.
* :func:`write_karpathy` writes Karpathy's split file (``{"images": [...], "dataset": ...}``) beside an image folder.
* :func:`hf_retrieval_dataset` is a Hugging Face ``datasets.Dataset`` with DataComp's retrieval columns (``image``,
  ``caption``: a list of captions per image), as ``nlphuji/flickr_1k_test_image_text_retrieval`` has them; its
  ``save_to_disk`` folder is what ``--download`` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from dataset_fixtures import digits_rgb, encode, write_shards
from PIL import Image

TEMPLATES = ("a handwritten digit {d}, {s}", "the number {d} {s}", "a scan of a {d}, {s}")
STYLES = (
    "drawn thin", "with a thick stroke", "slightly slanted", "written quickly", "in bold ink", "small and neat",
    "a little smudged", "carefully traced", "off centre", "with a shaky line", "in faint pencil", "rather wide",
)


def digit_captions(labels: np.ndarray) -> list[list[str]]:
    """1-3 captions per image (image i gets 1 + i % 3), unique across the set, each naming the image's digit."""
    seen: dict[int, int] = {}
    out = []
    for i, d in enumerate(labels.tolist()):
        j = seen[d] = seen.get(d, -1) + 1  # the image's index within its class
        out.append([TEMPLATES[c].format(d=d, s=STYLES[j]) for c in range(1 + i % 3)])
    flat = [c for caps in out for c in caps]
    assert len(set(flat)) == len(flat)
    return out


#: The six recall rows of a retrieval task: image→text ("text retrieval") then text→image, at k = 1, 5, 10.
RECALL_METRICS = [*(f"text_retrieval_recall@{k}" for k in (1, 5, 10)),
                  *(f"image_retrieval_recall@{k}" for k in (1, 5, 10))]


def digit_retrieval_set(per_class: int = 5) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """The first `per_class` test digits of each class, in dataset order: (RGB images, labels, captions)."""
    images, labels = digits_rgb("test", 32)
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
    return images[keep], labels[keep], digit_captions(labels[keep])


def write_retrieval_wds(root: Path, split: str, images: np.ndarray, captions: list[list[str]],
                        shard_size: int = 10_000, ext: str = "webp") -> list[Path]:
    """A clip-benchmark retrieval WebDataset under `root` (lossless webp by default, as the exporter writes)."""
    shards = write_shards(root, split, len(images), shard_size, lambda i, key: [
        (f"{key}.{ext}", encode(images[i], ext)),
        (f"{key}.txt", "\n".join(c.replace("\n", r"\n") for c in captions[i]).encode("utf-8")),
    ])
    (root / "dataset_type.txt").write_text("retrieval\n")
    return shards


def write_karpathy(root: Path, images: np.ndarray, captions: list[list[str]],
                   annotations: str = "dataset_flickr30k.json",
                   image_dir: str = "flickr30k-images", filepath: str | None = None, n_train: int = 3) -> Path:
    """Karpathy's split file plus the image files: `n_train` train entries (to be ignored), then the test images."""
    folder = root / image_dir / (filepath or "")
    folder.mkdir(parents=True, exist_ok=True)
    items = [("train", f"train_{k}.png", images[k % len(images)], ["an unused training image"]) for k in range(n_train)]
    items += [("test", f"{1000 + i}.png", img, caps) for i, (img, caps) in enumerate(zip(images, captions))]
    entries, sent = [], 0
    for i, (split, name, img, caps) in enumerate(items):
        Image.fromarray(img).save(folder / name)
        sentences = [{"tokens": c.lower().split(), "raw": c, "imgid": i,
                      "sentid": sent + k} for k, c in enumerate(caps)]
        entry = {"sentids": [s["sentid"] for s in sentences], "imgid": i, "sentences": sentences, "split": split,
                 "filename": name}
        if filepath:
            entry["filepath"] = filepath
        entries.append(entry)
        sent += len(caps)
    path = root / annotations
    path.write_text(json.dumps({"images": entries, "dataset": "fixture"}))
    return path


def hf_retrieval_dataset(images: np.ndarray, captions: list[list[str]]):  # -> datasets.Dataset
    """One row per image: the PNG-encoded image and its list of captions (plus the ids the hub's copy carries)."""
    import datasets

    feats = datasets.Features({"image": datasets.Image(), "caption": datasets.Sequence(datasets.Value("string")),
                               "img_id": datasets.Value("string")})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": encode(im, "png"), "path": None} for im in images], "caption": captions,
         "img_id": [str(1000 + i) for i in range(len(images))]},
        features=feats,
    )
