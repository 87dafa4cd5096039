"""Task loaders that parse a dataset's own files: VOC XML, FER2013 CSV, PCam HDF5, Hateful Memes JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import dataset_fixtures
import numpy as np
import pytest
from task_fixtures import fixture_task, main_row, save_images

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.metrics.classification import map_11point
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import DataNotFoundError

# --- PASCAL VOC 2007 -----------------------------------------------------------------------------

#: image id -> [(class, difficult)]
VOC_OBJECTS = {
    "000001": [("dog", 0), ("person", 0)],
    "000002": [("train", 0)],
    "000004": [("diningtable", 0), ("chair", 0), ("chair", 1)],
    "000006": [("pottedplant", 0), ("sofa", 1)],  # sofa only difficult: ignored for sofa (-1)
    "000008": [("aeroplane", 0), ("tvmonitor", 0)],
    "000010": [("sheep", 0), ("dog", 0)],
}


def write_voc(root: Path) -> None:
    dataset_fixtures.write_voc(root, {"test": VOC_OBJECTS})


def test_voc2007_multi_hot_targets_in_task_order_and_map(tmp_path, eval_config):
    write_voc(eval_config.data_root / "voc2007")
    task = fixture_task(tmp_path, "voc2007", {"torchvision": {"test": 6}})
    data = load_split(get_task(task), None, "test", eval_config.data_root)
    names = get_task("voc2007").prompt_set().display_names()
    assert data.targets.shape == (6, 20) and data.targets.dtype == np.float32
    for row, objects in zip(data.targets, VOC_OBJECTS.values()):
        assert {names[j] for j in np.flatnonzero(row > 0)} == {c for c, d in objects if not d}
        assert {names[j] for j in np.flatnonzero(row < 0)} == ({c for c, d in objects if d}
                                                               - {c for c, d in objects if not d})
    assert data.targets[3, names.index("sofa")] == -1 and data.targets[2, names.index("chair")] == 1
    assert map_11point(data.targets + 0.0, data.targets) == pytest.approx(100.0)
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "map_11point" and row["n"] == 6 and 0.0 < row["value"] <= 100.0


def test_voc2007_missing_image_is_named(tmp_path, eval_config):
    write_voc(eval_config.data_root / "voc2007")
    (eval_config.data_root / "voc2007" / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000004.jpg").unlink()
    with pytest.raises(DataNotFoundError, match=r"1 of 6 images are missing \(first: 000004.jpg\)"):
        load_split(get_task("voc2007"), None, "test", eval_config.data_root)


# --- FER2013 -------------------------------------------------------------------------------------

def write_fer(root: Path) -> None:
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for usage, per_class in (("Training", 2), ("PublicTest", 1), ("PrivateTest", 2)):
        for label in range(7):
            for _ in range(per_class):
                pixels = " ".join(map(str, rng.integers(0, 255, 48 * 48)))
                lines.append(f"{label},{pixels},{usage}")
    (root / "fer2013").mkdir(parents=True)
    (root / "fer2013" / "fer2013.csv").write_text("\n".join(lines) + "\n")


def test_fer2013_csv_splits_labels_and_synonyms(tmp_path, eval_config):
    write_fer(eval_config.data_root / "fer2013")
    task = fixture_task(tmp_path, "fer2013", {"torchvision": {"train": 14, "val": 7, "test": 14}})
    spec = get_task(task)
    sizes = {s: len(load_split(spec, None, s, eval_config.data_root)) for s in spec.splits}
    assert sizes == {"train": 14, "val": 7, "test": 14}
    test = load_split(spec, None, "test", eval_config.data_root)
    assert np.array_equal(test.targets, np.repeat(np.arange(7), 2))  # Kaggle order = prompts.md order
    assert test.load_image(0).size == (48, 48)
    happy = spec.prompt_set().prompts_for(3)
    assert any("smiling" in p for p in happy) and any("happy" in p for p in happy)
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 14


# --- PatchCamelyon -------------------------------------------------------------------------------

def test_pcam_hdf5_loads_lazily_and_evaluates(tmp_path, eval_config):
    h5py = pytest.importorskip("h5py")
    base = eval_config.data_root / "pcam" / "pcam"
    base.mkdir(parents=True)
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=np.uint8)
    images = np.random.default_rng(0).integers(0, 255, (8, 96, 96, 3), dtype=np.uint8)
    with h5py.File(base / "camelyonpatch_level_2_split_test_x.h5", "w") as f:
        f.create_dataset("x", data=images)
    with h5py.File(base / "camelyonpatch_level_2_split_test_y.h5", "w") as f:
        f.create_dataset("y", data=labels.reshape(8, 1, 1, 1))
    task = fixture_task(tmp_path, "pcam", {"torchvision": {"test": 8}})
    data = load_split(get_task(task), None, "test", eval_config.data_root)
    assert np.array_equal(data.targets, labels)
    assert np.array_equal(np.asarray(data.load_image(5)), images[5])
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 8
    with pytest.raises(DataNotFoundError, match=r"camelyonpatch_level_2_split_valid_x.h5 is missing"):
        load_split(get_task(task), None, "val", eval_config.data_root)


# --- Hateful Memes -------------------------------------------------------------------------------

def test_hateful_memes_jsonl_and_roc_auc(tmp_path, eval_config):
    root = eval_config.data_root / "hateful_memes"
    labels = [0, 1, 0, 1, 1, 0]
    rows = [{"id": i, "img": f"img/{i:05d}.png", "label": y, "text": "a meme"} for i, y in enumerate(labels)]
    save_images([root / r["img"] for r in rows])
    (root / "dev_seen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # the later release's name
    task = fixture_task(tmp_path, "hateful_memes", {"local": {"test": 6}})
    data = load_split(get_task(task), None, "test", eval_config.data_root)
    assert data.targets.tolist() == labels and Path(data.paths[1]).name == "00001.png"
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "roc_auc" and row["n"] == 6 and 0.0 <= row["value"] <= 100.0
    with pytest.raises(DataNotFoundError, match=r"no annotation file \(train.jsonl\)"):
        load_split(get_task(task), None, "train", eval_config.data_root)


# --- a clip-benchmark WebDataset source with its own label order ---------------------------------

def test_fer2013_wds_source_labels_are_remapped_to_prompt_order(tmp_path, eval_config):
    """CLIP_benchmark numbers FER2013 alphabetically; the wds source's label_map restores prompts.md order."""
    import io
    import tarfile

    from PIL import Image

    root = eval_config.data_root / "wds_fer2013"
    (root / "test").mkdir(parents=True)
    alphabetical = ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
    (root / "classnames.txt").write_text("\n".join(alphabetical) + "\n")
    with tarfile.open(root / "test" / "0.tar", "w") as tf:
        for i, label in enumerate(range(7)):
            buf = io.BytesIO()
            Image.new("L", (48, 48), color=i * 30).save(buf, format="PNG")
            for ext, payload in (("png", buf.getvalue()), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"s{i:04d}.{ext}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    task = fixture_task(tmp_path, "fer2013", {"wds": {"test": 7}})
    data = load_split(get_task(task), "wds", "test", eval_config.data_root)
    names = get_task(task).prompt_set().display_names()
    assert [names[t] for t in data.targets] == alphabetical
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu", source="wds"))
    assert row["source"] == "wds" and row["n"] == 7
