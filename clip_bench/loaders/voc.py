"""PASCAL VOC 2007 as multi-label classification: one multi-hot row per image, from the detection XML.

Layout (torchvision's ``VOCDetection`` layout, which ``--download`` fills)::

    <root>/VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt
    <root>/VOCdevkit/VOC2007/Annotations/<id>.xml
    <root>/VOCdevkit/VOC2007/JPEGImages/<id>.jpg

Targets follow the devkit's classification ground truth (``VOCevalcls``): per image and class, 1 when
the image holds an object of that class not marked ``difficult``, -1 ("ignore") when its only objects
of that class are difficult, 0 otherwise. The 11-point mAP skips ignored entries per class (they are
neither hits nor false positives); a linear probe trains with them as negatives. ``keep_difficult:
true`` counts difficult objects as positives instead (no ignored entries).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from clip_bench.loaders.base import FileImages, LoadContext
from clip_bench.loaders.fetch import torchvision_fetch

#: The devkit's class order: the source's label (column) order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


#: Target values: a positive, a negative, and an entry the devkit ignores (difficult-only).
POSITIVE, NEGATIVE, IGNORE = 1.0, 0.0, -1.0


def voc_targets(xml_path: Path, keep_difficult: bool = False) -> np.ndarray:
    """The (20,) float32 target vector of one annotation file: 1 positive, 0 negative, -1 ignore."""
    row = np.full(len(VOC_CLASSES), NEGATIVE, dtype=np.float32)
    for obj in ET.parse(xml_path).getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            continue
        c = VOC_CLASSES.index(name)
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        if keep_difficult or not difficult:
            row[c] = POSITIVE
        elif row[c] == NEGATIVE:
            row[c] = IGNORE
    return row


def load_voc(ctx: LoadContext, year: str = "2007", keep_difficult: bool = False) -> FileImages:
    """One image set of VOC<year> with multi-hot targets in ``VOC_CLASSES`` order."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / "VOCdevkit" / f"VOC{year}"
    ids_file = base / "ImageSets" / "Main" / f"{ctx.source_split}.txt"
    if not ids_file.exists() and ctx.download:
        torchvision_fetch(ctx, "VOCDetection", ctx.root, year=year, image_set=ctx.source_split)
    if not ids_file.exists():
        hint = "" if ctx.download else " (pass --download to fetch it)"
        raise ctx.missing(f"no image list for VOC{year} {ctx.source_split!r}{hint}", ids_file)
    ids = [ln.split()[0] for ln in ids_file.read_text().splitlines() if ln.strip()]
    rows = []
    for i in ids:
        xml = base / "Annotations" / f"{i}.xml"
        if not xml.exists():
            raise ctx.missing(f"the annotation of image {i} is missing", xml)
        rows.append(voc_targets(xml, keep_difficult))
    paths = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise ctx.missing(f"{len(absent)} of {len(paths)} images are missing (first: {absent[0].name})",
                          absent[0].parent)
    targets = np.stack(rows) if rows else np.zeros((0, len(VOC_CLASSES)), dtype=np.float32)
    data = FileImages(paths, targets)
    data.annotation_files = [ids_file, *(base / "Annotations" / f"{i}.xml" for i in ids)]
    return data
