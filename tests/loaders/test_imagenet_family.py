"""ImageNet-family tasks on fixtures in their real layouts, scored by the tiny CLIP.

The tiny CLIP only knows digits, so each test writes digit images into the folders of ten chosen
ImageNet classes and overrides the 1000 class names with the digits at those positions (and uses
one template, to keep the text side fast). It then must find the right class among all 1000 (or the
task's 200 / 113): a wrong WNID order, class subset, label map or pooling rule cannot score ~90%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import digits_rgb, fixture_task, write_json, write_wds
from PIL import Image

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.tasks.catalog import get_task
from clip_bench.tasks.class_groups import class_indices, load_class_groups, pool_logits
from clip_bench.tasks.prompts import load_classnames, resolve_prompt_file
from clip_bench.util.errors import ClipBenchError, DataNotFoundError

PER_DIGIT = 8
TEMPLATE = ['a photo of the number: "{}".']


def lines(ref: str) -> list[str]:
    return resolve_prompt_file(ref).read_text().split()


WNIDS = lines("imagenet_wnids.txt")
NAMES = list(load_classnames("imagenet"))


@pytest.fixture(scope="module")
def digit_images():
    images, labels = digits_rgb("test", 32)
    return [images[labels == d][:PER_DIGIT] for d in range(10)]


def write_class_folders(root: Path, folders: list[str], images_by_folder: dict[str, np.ndarray]) -> None:
    for name in folders:
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, images in images_by_folder.items():
        for j, img in enumerate(images):
            Image.fromarray(img).save(root / name / f"{name}_{j}.png")


def digit_names(tmp_path: Path, positions: list[int], base: list[str] | None = None) -> str:
    """A class-name file: `base` (ImageNet's names) with digit d at positions[d]."""
    names = list(base or NAMES)
    for d, pos in enumerate(positions):
        names[pos] = str(d)
    return write_json(tmp_path / "names.json", names)


def run(tiny_model, task: str, cfg, names: str, **kw):
    templates = write_json(Path(names).parent / "templates.json", TEMPLATE)
    return zeroshot(tiny_model, task, cfg, classnames=names, templates=templates, **kw)


def rows_by_subset(rows, metric="top1"):
    return {r["subset"] or "": r for r in rows if r["metric"] == metric}


# --- the class lists are data, and consistent with each other ---------------------------------

def test_class_lists_are_consistent():
    assert len(WNIDS) == 1000 == len(set(WNIDS)) and WNIDS == sorted(WNIDS)
    assert WNIDS[0] == "n01440764" and NAMES[0] == "tench"
    for name in ("imagenet_r", "imagenet_a", "imagenet_o"):
        idx = class_indices(f"{name}_classes")
        assert len(idx) == 200 and list(idx) == [i for g in load_class_groups(f"{name}_classes") for i in g]
        assert lines(f"{name}_wnids.txt") == [WNIDS[i] for i in idx]
    groups = load_class_groups("objectnet_classes")
    folders = lines("objectnet_folders.txt")
    on_names = load_classnames("objectnet_classes")
    assert len(groups) == len(folders) == len(on_names) == 113 and folders == sorted(folders)
    flat = [i for g in groups for i in g]
    assert len(flat) == len(set(flat)) == 125  # disjoint groups over 125 ImageNet classes
    assert on_names[folders.index("alarm_clock")] == "alarm clock"
    assert [NAMES[i] for i in groups[folders.index("alarm_clock")]] == ["analog clock", "digital clock"]
    assert get_task("imagenet").extra["subsets"].keys() == {"imagenet_a", "imagenet_r", "objectnet"}


def test_pool_logits_takes_the_max_over_each_group():
    logits = np.array([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 4.0]])
    np.testing.assert_array_equal(pool_logits(logits, [(0, 1), (2,), (3, 0)]), [[5.0, 1.0, 2.0], [3.0, 0.0, 4.0]])


# --- ImageNet itself, with the subset rows -----------------------------------------------------

# digit d lives in ImageNet class POSITIONS[d]: some in ImageNet-R's / -A's / ObjectNet's classes
POSITIONS = [1, 2, 4, 6, 11, 15, 409, 530, 671, 0]


def test_imagenet_imagefolder_with_subset_rows(tmp_path, digit_images, eval_config, tiny_model):
    val = eval_config.data_root / "imagenet" / "val"
    write_class_folders(val, WNIDS, {WNIDS[p]: digit_images[d] for d, p in enumerate(POSITIONS)})
    with pytest.raises(DataNotFoundError, match="80 samples but 50000 are expected"):
        load_split(get_task("imagenet"), None, "test", eval_config.data_root)  # the shipped task wants all of val
    task = fixture_task("imagenet", tmp_path)
    data = load_split(get_task(task), None, "test", eval_config.data_root)
    assert len(data) == 10 * PER_DIGIT
    np.testing.assert_array_equal(np.unique(data.targets), sorted(POSITIONS))
    assert data.describe(0).split("/")[-2] == WNIDS[data.targets[0]]

    rows = run(tiny_model, task, eval_config, digit_names(tmp_path, POSITIONS))
    assert {r["task"] for r in rows} == {"imagenet"}
    top1 = rows_by_subset(rows)
    assert set(top1) == {"", "imagenet_a", "imagenet_r", "objectnet"}
    assert top1[""]["n"] == 80 and top1[""]["value"] > 80.0
    for subset in ("imagenet_a", "imagenet_r", "objectnet"):
        members = set(class_indices(f"{subset}_classes").tolist())
        assert top1[subset]["n"] == PER_DIGIT * sum(p in members for p in POSITIONS)
        # the same images scored among fewer classes can only do better
        assert top1[subset]["value"] > 80.0
    assert top1["objectnet"]["n"] == 3 * PER_DIGIT  # 409, 530, 671


def test_imagenetv2_numeric_folders(tmp_path, digit_images, eval_config, tiny_model):
    root = eval_config.data_root / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    write_class_folders(root, [str(p) for p in POSITIONS], {str(p): digit_images[d] for d, p in enumerate(POSITIONS)})
    task = fixture_task("imagenetv2", tmp_path)
    data = load_split(get_task(task), None, "test", eval_config.data_root)
    assert len(data) == 80
    assert sorted(set(data.targets.tolist())) == sorted(POSITIONS)  # folder "409" is class 409, not the 7th folder
    row = rows_by_subset(run(tiny_model, task, eval_config, digit_names(tmp_path, POSITIONS)))[""]
    assert row["n"] == 80 and row["value"] > 80.0


def test_imagenet_sketch_layout(tmp_path, digit_images, eval_config):
    sketch = eval_config.data_root / "imagenet-sketch" / "sketch"
    write_class_folders(sketch, WNIDS, {WNIDS[5]: digit_images[0][:3]})
    data = load_split(get_task(fixture_task("imagenet_sketch", tmp_path)), None, "test", eval_config.data_root)
    assert len(data) == 3 and set(data.targets.tolist()) == {5}


# --- the 200-class sets: ImageNet's classifier restricted to their classes ---------------------

def test_imagenet_r_scores_on_its_200_classes(tmp_path, digit_images, eval_config, tiny_model):
    r_idx = class_indices("imagenet_r_classes").tolist()
    r_wnids = lines("imagenet_r_wnids.txt")
    chosen = [0, 5, 17, 42, 77, 100, 133, 150, 181, 199]  # positions within ImageNet-R's 200
    write_class_folders(
        eval_config.data_root / "imagenet-r", r_wnids, {r_wnids[c]: digit_images[d] for d, c in enumerate(chosen)}
    )
    task = fixture_task("imagenet_r", tmp_path)
    data = load_split(get_task(task), None, "test", eval_config.data_root)
    assert sorted(set(data.targets.tolist())) == chosen  # labels index the 200 classes, in sorted-WNID order
    rows = run(tiny_model, task, eval_config, digit_names(tmp_path, [r_idx[c] for c in chosen]))
    row = rows_by_subset(rows)[""]
    assert row["n"] == 80 and row["value"] > 80.0


def test_imagenet_a_from_webdataset(tmp_path, digit_images, eval_config, tiny_model):
    a_idx = class_indices("imagenet_a_classes").tolist()
    chosen = [3, 30, 60, 90, 120, 140, 160, 170, 190, 198]
    images = np.concatenate(digit_images)
    labels = np.repeat(chosen, PER_DIGIT)  # wds_imagenet-a labels: index among the 200 sorted WNIDs
    write_wds(eval_config.data_root / "wds_imagenet-a", "test", images, labels, [NAMES[i] for i in a_idx])
    task = fixture_task("imagenet_a", tmp_path)
    rows = run(tiny_model, task, eval_config, digit_names(tmp_path, [a_idx[c] for c in chosen]), source="wds")
    row = rows_by_subset(rows)[""]
    assert row["n"] == 80 and row["value"] > 80.0 and row["source"] == "wds"


# --- ObjectNet: 113 classes, several mapping to more than one ImageNet class -------------------

def test_objectnet_pools_imagenet_classes(tmp_path, digit_images, eval_config, tiny_model):
    groups = load_class_groups("objectnet_classes")
    folders = lines("objectnet_folders.txt")
    multi = [j for j, g in enumerate(groups) if len(g) > 1]
    chosen = multi[:6] + [j for j, g in enumerate(groups) if len(g) == 1][:4]
    root = eval_config.data_root / "objectnet-1.0" / "images"
    write_class_folders(
        root, [*folders, "air_freshener", "bathrobe"], {folders[j]: digit_images[d] for d, j in enumerate(chosen)}
    )
    data = load_split(get_task("objectnet"), None, "test", eval_config.data_root)
    assert sorted(set(data.targets.tolist())) == sorted(chosen)
    # the digit is the LAST ImageNet class of each group: only max-pooling over the group finds it
    names = digit_names(tmp_path, [groups[j][-1] for j in chosen])
    row = rows_by_subset(run(tiny_model, "objectnet", eval_config, names))[""]
    assert row["n"] == 80 and row["value"] > 80.0

    # one name per ObjectNet class (e.g. `--classnames objectnet_classes`) is scored directly
    own = digit_names(tmp_path, chosen, base=list(load_classnames("objectnet_classes")))
    row = rows_by_subset(run(tiny_model, "objectnet", eval_config, own, output_dir=None))[""]
    assert row["value"] > 80.0


def test_class_groups_reject_a_short_name_list(tmp_path, digit_images, eval_config, tiny_model):
    r_wnids = lines("imagenet_r_wnids.txt")
    write_class_folders(eval_config.data_root / "imagenet-r", r_wnids, {r_wnids[0]: digit_images[0][:2]})
    names = write_json(tmp_path / "names.json", [str(i) for i in range(10)])
    with pytest.raises(ClipBenchError, match="gives 10 class names but task .imagenet_r. has 200 or 1000 classes"):
        run(tiny_model, fixture_task("imagenet_r", tmp_path), eval_config, names)


def test_missing_imagenet_points_at_the_manual_steps(eval_config):
    with pytest.raises(DataNotFoundError, match="image-net.org"):
        load_split(get_task("imagenet"), None, "test", eval_config.data_root)
    with pytest.raises(DataNotFoundError, match="--download to fetch clip-benchmark/wds_objectnet"):
        load_split(get_task("objectnet"), "wds", "test", eval_config.data_root)


def test_objectnet_names_file_is_valid_json_data():
    data = json.loads(resolve_prompt_file("objectnet_classes").read_text())
    assert {"source", "classnames", "class_groups"} <= set(data)
