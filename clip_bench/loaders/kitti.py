"""KITTI closest-vehicle distance, as VTAB defines it, from the KITTI object benchmark's own files.

Label (VTAB ``closest_vehicle_distance``): z, the forward distance in metres of the nearest Car, Van or
Truck in the image's label file (``DontCare`` rows ignored); 0 if z <= 8, 1 if 8 < z <= 20, 2 if z > 20,
3 if the image has no vehicle.

Splits (TFDS ``kitti:3.1.0``, which VTAB uses): the 7,481 labelled training images are grouped by the
drive (video) they come from, using the devkit's ``mapping/train_rand.txt`` and
``mapping/train_mapping.txt``; with NumPy's legacy generator seeded 123, 10% of the sorted drives are
drawn for test, then 10% of the remaining for validation; the rest is train (6,347 / 423 / 711 images).

Layout (torchvision's ``Kitti`` layout plus the devkit)::

    <root>/Kitti/raw/training/image_2/<id>.png
    <root>/Kitti/raw/training/label_2/<id>.txt
    <root>/Kitti/raw/devkit/mapping/train_rand.txt, train_mapping.txt
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.loaders.fetch import fetch_archive, require, torchvision_fetch

VEHICLES = ("Car", "Van", "Truck")
THRESHOLDS = (8.0, 20.0)  # metres: <= 8 near, <= 20 middle, beyond: far
DEVKIT_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/devkit_object.zip"
SPLIT_SEED = 123
HELD_OUT_PERCENT = {"test": 10, "validation": 10}


def closest_vehicle_label(label_file: Path) -> int:
    """The VTAB distance class of one KITTI label file."""
    dists = []
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 15 and parts[0] in VEHICLES:
            dists.append(float(parts[13]))
    if not dists:
        return len(THRESHOLDS) + 1
    return int(np.searchsorted(THRESHOLDS, min(dists), side="left"))


def tfds_kitti_splits(train_rand: str, train_mapping: list[str]) -> dict[str, list[int]]:
    """Image indices of TFDS's train/validation/test splits, grouped by drive (see module docstring)."""
    line_ids = [int(x) - 1 for x in train_rand.replace("\n", "").split(",") if x.strip()]
    drives: dict[str, list[int]] = defaultdict(list)
    for image_id, line_id in enumerate(line_ids):
        drives[train_mapping[line_id].split(" ")[1]].append(image_id)
    rng = np.random.RandomState(SPLIT_SEED)
    n_test = max(1, HELD_OUT_PERCENT["test"] * len(drives) // 100)
    n_val = max(1, HELD_OUT_PERCENT["validation"] * len(drives) // 100)
    test = set(rng.choice(sorted(drives), n_test, replace=False))
    val = set(rng.choice(sorted(set(drives) - test), n_val, replace=False))
    out: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for drive, images in drives.items():
        out["test" if drive in test else "validation" if drive in val else "train"].extend(images)
    return {k: sorted(v) for k, v in out.items()}


def load_kitti_distance(ctx: LoadContext) -> FileImages:
    """One TFDS split (train, validation, test) of KITTI with VTAB closest-vehicle-distance labels."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    raw = ctx.root / "Kitti" / "raw"
    training, mapping = raw / "training", raw / "devkit" / "mapping"
    if ctx.download:
        if not (training / "label_2").is_dir():
            torchvision_fetch(ctx, "Kitti", ctx.root, train=True)
        if not (mapping / "train_rand.txt").exists():
            fetch_archive(ctx, DEVKIT_URL, raw / "devkit")
    require(ctx, training / "image_2", training / "label_2", mapping / "train_rand.txt", mapping / "train_mapping.txt")
    splits = tfds_kitti_splits(
        (mapping / "train_rand.txt").read_text(), (mapping / "train_mapping.txt").read_text().splitlines()
    )
    if ctx.source_split not in splits:
        raise ctx.missing(f"KITTI has no split {ctx.source_split!r} (train, validation, test)")
    ids = [f"{i:06d}" for i in splits[ctx.source_split]]
    labels = []
    for i in ids:
        label_file = training / "label_2" / f"{i}.txt"
        if not label_file.exists():
            raise ctx.missing(f"the label file of image {i} is missing", label_file)
        labels.append(closest_vehicle_label(label_file))
    data = FileImages([training / "image_2" / f"{i}.png" for i in ids], np.asarray(labels, dtype=np.int64))
    data.annotation_files = [mapping / "train_rand.txt", mapping / "train_mapping.txt",
                             *(training / "label_2" / f"{i}.txt" for i in ids)]
    return data
