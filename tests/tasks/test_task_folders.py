"""Class-folder tasks: seeded per-class splits (EuroSAT, Caltech-101) and loosely named folders (Birdsnap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from task_fixtures import fixture_task, main_row, save_images

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import DataNotFoundError

SOURCE_CLASSES = Path(__file__).parents[1] / "data" / "source_classes"


def folder_names(task: str) -> list[str]:
    return json.loads((SOURCE_CLASSES / f"{task}.json").read_text())["sources"]["torchvision"]["names"]


def write_class_tree(base: Path, names: list[str], per_class: int) -> None:
    save_images([base / n / f"{n}_{j:04d}.jpg" for n in names for j in range(per_class)], size=8)


def test_eurosat_seeded_split_is_fixed_disjoint_and_remapped(tmp_path, eval_config):
    write_class_tree(eval_config.data_root / "eurosat" / "eurosat" / "2750", folder_names("eurosat"), per_class=6)
    task = fixture_task(
        tmp_path, "eurosat", {"torchvision": {"train": 30, "test": 20}},
        args={"torchvision": {"per_class": {"train": 3, "test": 2}}},
    )
    spec = get_task(task)
    train = load_split(spec, None, "train", eval_config.data_root)
    test = load_split(spec, None, "test", eval_config.data_root)
    assert (len(train), len(test)) == (30, 20) and not set(train.inner.paths) & set(test.inner.paths)
    assert load_split(spec, None, "test", eval_config.data_root).inner.paths == test.inner.paths  # same every run
    names = spec.prompt_set().display_names()
    by_folder = {Path(p).parent.name: names[t] for p, t in zip(test.inner.paths, test.targets)}
    assert by_folder["AnnualCrop"] == "annual crop land" and by_folder["SeaLake"] == "lake or sea"
    assert by_folder["HerbaceousVegetation"] == "brushland or shrubland"
    row = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 20


def test_sampled_folders_errors_name_the_problem(tmp_path, eval_config):
    base = eval_config.data_root / "eurosat" / "eurosat" / "2750"
    write_class_tree(base, folder_names("eurosat")[:9], per_class=2)
    task = fixture_task(tmp_path, "eurosat", {}, args={"torchvision": {"per_class": {"train": 1, "test": 1}}})
    with pytest.raises(DataNotFoundError, match="found 9 class folders but this source has 10 classes"):
        load_split(get_task(task), None, "test", eval_config.data_root)
    write_class_tree(base, ["SeaLake"], per_class=1)
    with pytest.raises(DataNotFoundError,
                       match=r"class folder 'SeaLake' is incomplete: the split needs 2 images, has 1"):
        load_split(get_task(task), None, "test", eval_config.data_root)


def test_caltech101_keeps_background_and_maps_face_folders(tmp_path, eval_config):
    names = folder_names("caltech101")
    write_class_tree(eval_config.data_root / "caltech101" / "caltech101" / "101_ObjectCategories", names, per_class=3)
    task = fixture_task(
        tmp_path, "caltech101", {"torchvision": {"train": 102, "test": 204}},
        args={"torchvision": {"per_class": {"train": 1, "test": "rest"}}},
    )
    spec = get_task(task)
    test = load_split(spec, None, "test", eval_config.data_root)
    assert len(test) == 204 and np.array_equal(np.bincount(test.targets), [2] * 102)
    task_names = spec.prompt_set().display_names()
    by_folder = {Path(p).parent.name: task_names[t] for p, t in zip(test.paths, test.targets)}
    assert by_folder["BACKGROUND_Google"] == "background" and by_folder["Faces_easy"] == "centered face"
    assert by_folder["Faces"] == "off-center face" and by_folder["yin_yang"] == "yin and yang symbol"
    assert load_split(spec, None, "train", eval_config.data_root).targets.tolist() == list(range(102))


def test_birdsnap_folders_match_class_names_loosely(tmp_path, eval_config):
    names = get_task("birdsnap").prompt_set().display_names()
    base = eval_config.data_root / "birdsnap" / "test"
    for n in names:  # the download script's style: underscores, no apostrophes
        (base / n.replace(" ", "_").replace("'", "")).mkdir(parents=True)
    picked = [0, 3, 499]
    save_images([base / names[i].replace(" ", "_").replace("'", "") / f"{j}.jpg" for i in picked for j in range(2)])
    data = load_split(get_task("birdsnap"), None, "test", eval_config.data_root)
    assert data.targets.tolist() == [0, 0, 3, 3, 499, 499]
    assert names[3] == "Allens Hummingbird" and Path(data.paths[2]).parent.name == "Allens_Hummingbird"
    row = main_row(zeroshot("tiny-clip-digits", "birdsnap", eval_config, device="cpu"))
    assert row["metric"] == "top1" and row["n"] == 6
    (base / "Not_A_Bird").mkdir()
    with pytest.raises(DataNotFoundError, match="1 folders match no class of this task: Not_A_Bird"):
        load_split(get_task("birdsnap"), None, "test", eval_config.data_root)
