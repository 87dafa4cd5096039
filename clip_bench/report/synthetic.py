"""Plausible synthetic result rows, for tests and for previewing the report without running models."""

from __future__ import annotations

from typing import Any

import numpy as np

from clip_bench.report.published import published_map
from clip_bench.report.reference import paper_tables
from clip_bench.results.rows import make_row
from clip_bench.tasks.catalog import headline_collections

#: Shift accuracies (zero-shot ViT-B/32, from the testbed's ``vit_b_32_clip_zeroshot`` row) and the
#: ImageNet accuracy on each shift's classes.
_SHIFTS = {"imagenetv2": 55.77, "imagenet_sketch": 42.37, "imagenet_r": 69.26, "imagenet_a": 31.39, "objectnet": 43.96}
_SUBSETS = {"imagenet_a": 87.42, "imagenet_r": 88.10, "objectnet": 70.93}
METRIC = {
    "fgvc_aircraft": "mean_per_class_recall", "oxford_pets": "mean_per_class_recall",
    "caltech101": "mean_per_class_recall", "flowers102": "mean_per_class_recall", "voc2007": "map_11point",
    "hateful_memes": "roc_auc", "kinetics700": "mean_top1_top5",
}


#: Rough training images per class, for the full-data probe's place on the shots-to-match axis.
_TRAIN_PER_CLASS = {"cifar10": 5000, "cifar100": 500, "food101": 750, "birdsnap": 40, "sun397": 50,
                    "stanford_cars": 41, "fgvc_aircraft": 67, "voc2007": 250, "imagenet": 1281}


def _row(model: str, pretrained: str, task: str, protocol: str, value: float, date: str, intervals: bool = False,
         **kw: Any) -> dict[str, Any]:
    value = float(np.clip(value, 0.5, 99.5))
    row = make_row(
        model=model, pretrained=pretrained, task=task, protocol=protocol, metric=METRIC.get(task, "top1"),
        value=value, is_main=True, split="test", n=1000, date=date, **kw,
    )
    if intervals:  # a normal-approximation 95 % interval for a proportion over n = 1000
        half = 196 * float(np.sqrt(value / 100 * (1 - value / 100) / 1000))
        row["ci_low"], row["ci_high"] = max(0.0, value - half), min(100.0, value + half)
    return row


def _n_classes(task: str) -> int:
    from clip_bench.results.fewshot import _n_classes_catalogue

    return _n_classes_catalogue(task) or 100


def synthetic_rows(
    models: tuple[tuple[str, str], ...] = (("ViT-B/32", "openai"), ("ViT-B-32", "laion2b_s34b_b79k")),
    shots: tuple[int, ...] = (1, 2, 4, 8, 16),
    seeds: int = 3,
    fewshot_tasks: int | None = 8,
    seed: int = 0,
    intervals: bool = False,
) -> list[dict[str, Any]]:
    """Zero-shot, linear-probe and few-shot rows for `models` on the 27 datasets and the shifts.

    The first model's zero-shot numbers are the paper's ViT-B/32 values plus noise, so deltas against
    published results are small except where noise is added on purpose (kitti_distance, +3 points).
    With `intervals`, main-metric rows (not per-seed ones) carry 95 % ``ci_low``/``ci_high``.
    """
    rng = np.random.default_rng(seed)
    tables = paper_tables()
    paper = dict(zip(tables["datasets"], tables["zero_shot_table11"]["ViT-B/32"]))
    lp_paper = dict(zip(tables["datasets"], tables["linear_probe_table10_clip_rows"]["ViT-B/32"]))
    column = {c.task: c.name for c in published_map()["paper"]}
    clip27 = headline_collections()["clip27"]
    rows: list[dict[str, Any]] = []
    for m, (model, pretrained) in enumerate(models):
        date = f"2024-01-0{m + 1}T00:00:00+00:00"
        offset = 3.0 * m
        for task in clip27:
            zs = paper[column[task]] + offset + rng.normal(0, 0.3) + (3.0 if task == "kitti_distance" else 0)
            lp = lp_paper[column[task]] + offset + rng.normal(0, 0.3)
            rows.append(_row(model, pretrained, task, "zeroshot", zs, date, intervals))
            rows.append(_row(model, pretrained, task, "linear_probe", lp, date, intervals,
                             n_refit=_TRAIN_PER_CLASS.get(task, 100) * _n_classes(task)))
            rows.append(make_row(model=model, pretrained=pretrained, task=task, protocol="zeroshot",
                                 metric="top5", value=min(99.0, zs + 20), is_main=False, date=date))
        for shift, acc in _SHIFTS.items():
            rows.append(_row(model, pretrained, shift, "zeroshot", acc + offset + rng.normal(0, 0.3), date, intervals))
        for subset, acc in _SUBSETS.items():
            rows.append(_row(model, pretrained, "imagenet", "zeroshot", acc + offset / 2, date, intervals,
                             subset=subset))
        for task in clip27[:fewshot_tasks]:
            zs = paper[column[task]] + offset
            lp = lp_paper[column[task]] + offset
            start = zs - rng.uniform(5, 30)  # 1-shot below zero-shot, rising towards the full probe
            for k in shots:
                frac = np.log2(k) / 7
                mean = start + (lp - start) * frac
                vals = mean + rng.normal(0, 1.5 / np.sqrt(k), size=seeds)
                for s, v in enumerate(vals):
                    rows.append(_row(model, pretrained, task, f"fewshot_k{k}", v, date, seed=s, k=k,
                                     n_train=k * _n_classes(task)))
                rows.append(_row(model, pretrained, task, f"fewshot_k{k}", float(vals.mean()), date, intervals,
                                 aggregate="mean", std=float(vals.std(ddof=1)), seeds=seeds))
    return rows
