"""Tasks that derive labels or splits from annotation files: KITTI distance, CLEVR counts, SUN397 partitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from task_fixtures import fixture_task, main_row, save_images

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.loaders.kitti import closest_vehicle_label, tfds_kitti_splits
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import DataNotFoundError

SOURCE_CLASSES = Path(__file__).parents[1] / "data" / "source_classes"

# --- KITTI ---------------------------------------------------------------------------------------


def kitti_line(kind: str, z: float) -> str:
    """One KITTI label row: type, truncated, occluded, alpha, bbox(4), dimensions(3), location(3), rotation_y."""
    return f"{kind} 0.00 0 -1.57 100.0 150.0 200.0 250.0 1.5 1.6 3.9 1.0 1.7 {z} 0.01"


#: label-file rows -> VTAB closest-vehicle-distance class
KITTI_CASES = [
    ([("Car", 5.0)], 0),
    ([("Van", 8.0)], 0),  # the 8 m boundary is still "near"
    ([("Truck", 15.0), ("Pedestrian", 3.0)], 1),  # pedestrians are not vehicles
    ([("Car", 30.0), ("Car", 20.5)], 2),
    ([("Pedestrian", 4.0), ("Cyclist", 9.0)], 3),
    ([("DontCare", -1000.0)], 3),
    ([("Car", 25.0), ("Van", 7.0)], 0),
]


def test_kitti_closest_vehicle_labels(tmp_path):
    for i, (objects, want) in enumerate(KITTI_CASES):
        path = tmp_path / f"{i}.txt"
        path.write_text("\n".join(kitti_line(k, z) for k, z in objects) + "\n")
        assert closest_vehicle_label(path) == want, objects


def write_kitti(raw: Path, n_drives: int = 30, per_drive: int = 2) -> None:
    n = n_drives * per_drive
    order = np.random.default_rng(1).permutation(n) + 1  # train_rand.txt: 1-based lines of train_mapping.txt
    (raw / "devkit" / "mapping").mkdir(parents=True)
    (raw / "devkit" / "mapping" / "train_rand.txt").write_text(",".join(map(str, order)) + "\n")
    mapping = [f"2011_09_26 2011_09_26_drive_{d:04d}_sync {f:010d}" for d in range(n_drives) for f in range(per_drive)]
    (raw / "devkit" / "mapping" / "train_mapping.txt").write_text("\n".join(mapping) + "\n")
    (raw / "training" / "label_2").mkdir(parents=True)
    for i in range(n):
        objects, _ = KITTI_CASES[i % len(KITTI_CASES)]
        (raw / "training" / "label_2" / f"{i:06d}.txt").write_text("\n".join(kitti_line(k, z) for k, z in objects))
    save_images([raw / "training" / "image_2" / f"{i:06d}.png" for i in range(n)], size=8)


def test_kitti_splits_follow_drives_and_evaluate(tmp_path, eval_config):
    raw = eval_config.data_root / "kitti" / "Kitti" / "raw"
    write_kitti(raw)
    mapping = raw / "devkit" / "mapping"
    splits = tfds_kitti_splits((mapping / "train_rand.txt").read_text(),
                               (mapping / "train_mapping.txt").read_text().splitlines())
    assert {k: len(v) for k, v in splits.items()} == {"train": 48, "validation": 6, "test": 6}  # 10% of 30 drives each
    assert sorted(sum(splits.values(), [])) == list(range(60))
    order = [int(x) - 1 for x in (mapping / "train_rand.txt").read_text().split(",")]
    lines = (mapping / "train_mapping.txt").read_text().splitlines()
    drive = {name: {lines[order[i]].split()[1] for i in ids} for name, ids in splits.items()}
    assert not drive["test"] & drive["train"] and not drive["validation"] & drive["train"]
    task = fixture_task(tmp_path, "kitti_distance", {"torchvision": {"train": 48, "val": 6, "test": 6}})
    test = load_split(get_task(task), None, "test", eval_config.data_root)
    assert test.targets.tolist() == [KITTI_CASES[i % len(KITTI_CASES)][1] for i in splits["test"]]
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 6


# --- CLEVR counts --------------------------------------------------------------------------------


def test_clevr_counts_sample_label_and_string_sorted_prompts(tmp_path, eval_config):
    data_dir = eval_config.data_root / "clevr" / "clevr" / "CLEVR_v1.0"
    counts = [3, 4, 5, 6, 7, 8, 9, 10, 10, 3, 5, 7]
    scenes = [{"image_filename": f"CLEVR_val_{i:06d}.png", "objects": [{}] * c} for i, c in enumerate(counts)]
    (data_dir / "scenes").mkdir(parents=True)
    (data_dir / "scenes" / "CLEVR_val_scenes.json").write_text(json.dumps({"scenes": scenes}))
    save_images([data_dir / "images" / "val" / s["image_filename"] for s in scenes], size=8)
    task = fixture_task(tmp_path, "clevr_counts", {"torchvision": {"test": 8}},
                        args={"torchvision": {"sizes": {"val": 8}}})
    spec = get_task(task)
    data = load_split(spec, None, "test", eval_config.data_root)
    assert len(data) == 8 and data.inner.paths == load_split(spec, None, "test", eval_config.data_root).inner.paths
    names = spec.prompt_set().display_names()  # ['10', '3', ..., '9']
    for path, target in zip(data.inner.paths, data.targets):
        assert names[target] == str(counts[int(Path(path).stem.split("_")[-1])])
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 8
    with pytest.raises(DataNotFoundError, match="CLEVR_train_scenes.json is missing"):
        load_split(spec, None, "train", eval_config.data_root)


# --- SUN397 --------------------------------------------------------------------------------------


def test_sun397_partition_and_classname_order(tmp_path, eval_config):
    base = eval_config.data_root / "sun397" / "SUN397"
    classes = json.loads((SOURCE_CLASSES / "sun397.json").read_text())["sources"]["torchvision"]["names"]
    base.mkdir(parents=True)
    (base / "ClassName.txt").write_text("".join(f"/{c[0]}/{c}\n" for c in classes))
    picked = ["abbey", "jail/indoor", "jail_cell", "youth_hostel"]
    rel = [f"/{c[0]}/{c}/sun_{j}.jpg" for c in picked for j in "ab"]
    save_images([base / r.lstrip("/") for r in rel], size=8)
    (base / "Partitions").mkdir()
    (base / "Partitions" / "Testing_01.txt").write_text("\n".join(rel) + "\n")
    task = fixture_task(tmp_path, "sun397", {"torchvision": {"test": 8}})
    spec = get_task(task)
    data = load_split(spec, None, "test", eval_config.data_root)
    names = spec.prompt_set().display_names()
    assert [names[t] for t in data.targets[::2]] == ["abbey", "jail indoor", "jail cell", "youth hostel"]
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 8
    with pytest.raises(DataNotFoundError, match="Training_01.txt is missing"):
        load_split(spec, None, "train", eval_config.data_root)
