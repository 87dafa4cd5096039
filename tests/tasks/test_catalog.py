"""The CLIP-paper task catalogue: every task parses, has the paper's classes, metric and sources, and
each source's label order maps onto the task's class names (data in tests/data/source_classes/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from clip_bench.loaders import LOADERS, load_split
from clip_bench.tasks.catalog import get_task, list_collections, list_tasks
from clip_bench.tasks.status import task_status
from clip_bench.util.errors import ClipBenchError, DataNotFoundError

DATA = Path(__file__).parents[1] / "data" / "source_classes"

#: name -> (classes, templates, metric) from the CLIP repo's data/prompts.md and the CLIP paper's Table 9.
CATALOGUE = {
    "food101": (101, 1, "accuracy"), "cifar10": (10, 18, "accuracy"), "cifar100": (100, 18, "accuracy"),
    "birdsnap": (500, 1, "accuracy"), "sun397": (397, 2, "accuracy"), "stanford_cars": (196, 8, "accuracy"),
    "fgvc_aircraft": (100, 2, "mean_per_class_recall"), "voc2007": (20, 1, "map_11point"),
    "dtd": (47, 8, "accuracy"), "oxford_pets": (37, 1, "mean_per_class_recall"),
    "caltech101": (102, 34, "mean_per_class_recall"), "flowers102": (102, 1, "mean_per_class_recall"),
    "mnist": (10, 1, "accuracy"), "fer2013": (7, 6, "accuracy"), "stl10": (10, 2, "accuracy"),
    "eurosat": (10, 3, "accuracy"), "resisc45": (45, 18, "accuracy"), "gtsrb": (43, 3, "accuracy"),
    "kitti_distance": (4, 1, "accuracy"), "country211": (211, 5, "accuracy"), "pcam": (2, 1, "accuracy"),
    "clevr_counts": (8, 1, "accuracy"), "hateful_memes": (2, 1, "roc_auc"), "rendered_sst2": (2, 1, "accuracy"),
}
#: Tasks with no clip-benchmark WebDataset (or, for VOC, one with another protocol: single-label crops).
NO_WDS = {"birdsnap", "hateful_memes", "voc2007"}
PROMPTS_SOURCE = "openai/CLIP data/prompts.md @ d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"


def norm(name: str) -> str:
    """Case, underscores, slashes and hyphens dropped; whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[_/\-]", " ", name.lower())).strip()


def test_catalogue_tasks_parse_with_paper_classes_metric_and_sources():
    assert set(CATALOGUE) <= set(list_tasks())
    for name, (n_classes, n_templates, metric) in CATALOGUE.items():
        task = get_task(name)
        ps = task.prompt_set()
        assert (len(ps.classnames), len(ps.templates), task.metric) == (n_classes, n_templates, metric), name
        assert task.eval_split in task.splits and "train" in task.splits, name
        assert task.default_source in task.sources
        assert task.multilabel == (name == "voc2007")
        assert PROMPTS_SOURCE in json.loads(Path(task.classnames_ref if task.classnames_ref.endswith(".json") else
                                                  f"prompts/{task.classnames_ref}.json").read_text())["source"]
        for src in task.sources.values():
            assert src.loader in LOADERS, (name, src.loader)
            assert src.download, f"{name}/{src.name} does not say how to get its data"
            assert set(src.expected) <= set(task.splits) and set(src.files) <= set(task.splits), name
        if name in NO_WDS:
            assert "wds" not in task.sources
        else:
            wds = task.sources["wds"]
            assert wds.loader == "wds" and wds.args["repo"] == f"clip-benchmark/{wds.path}", name
        if "torchvision" in task.sources:
            assert task.default_source == "torchvision"


def test_collections():
    groups = list_collections()
    assert len(groups["clip27"]) == 27 and set(CATALOGUE) <= set(groups["clip27"])
    assert {"imagenet", "ucf101", "kinetics700"} <= set(groups["clip27"])
    assert groups["imagenet_shifts"] == ["imagenetv2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet"]
    assert set(groups["all"]) == set(list_tasks())


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_source_label_order_maps_onto_the_task_classes(name):
    """task_names[label_map[i]] must be the source's own class i (after normalising and explicit aliases)."""
    task = get_task(name)
    task_names = task.prompt_set().display_names()
    data = json.loads((DATA / f"{name}.json").read_text())
    aliases = {norm(k): norm(v) for k, v in data.get("aliases", {}).items()}
    assert set(data["sources"]) == set(task.sources), f"{name}: a source has no class-order data file entry"
    for src_name, info in data["sources"].items():
        names = info["names"]
        if info.get("sorted"):
            assert names == sorted(names), f"{name}/{src_name}: the documented sort rule does not hold"
        lm = task.sources[src_name].label_map
        lm = list(range(len(names))) if lm is None else list(lm)
        assert len(lm) == len(names) == len(task_names), f"{name}/{src_name}: class counts differ"
        assert sorted(lm) == list(range(len(task_names))), f"{name}/{src_name}: label_map is not a permutation"
        for i, raw in enumerate(names):
            got = norm(task_names[lm[i]])
            want = aliases.get(norm(raw), norm(raw))
            assert got == want, f"{name}/{src_name}: source class {i} {raw!r} maps to task class {task_names[lm[i]]!r}"


def test_source_class_files_match_installed_torchvision_and_loaders():
    from torchvision.datasets import MNIST, Flowers102

    from clip_bench.loaders.voc import VOC_CLASSES

    def names(task: str, source: str = "torchvision") -> list[str]:
        return json.loads((DATA / f"{task}.json").read_text())["sources"][source]["names"]

    assert names("mnist") == list(MNIST.classes)
    assert names("flowers102") == list(Flowers102.classes)
    assert names("voc2007") == list(VOC_CLASSES)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_missing_data_is_one_clear_error(name, tmp_path):
    """With no data, every source of every task fails with DataNotFoundError naming the path and the fix."""
    task = get_task(name)
    assert task_status(task, tmp_path) == (False, f"{task.default_source}: no {tmp_path / task.source().path}")
    for src in task.sources.values():
        with pytest.raises(DataNotFoundError) as err:
            load_split(task, src.name, task.eval_split, tmp_path)
        msg = str(err.value)
        assert str(tmp_path / src.path) in msg and f"source {src.name!r}" in msg and "To get it:" in msg, msg
        assert "--download" in msg or "manual" in msg or "no automatic download" in msg, msg


def test_expected_counts_reject_a_partial_split(tmp_path):
    """A split with fewer samples than the YAML's `expected` is an error, however the loader read it."""
    from clip_bench.loaders import check_expected_size
    from clip_bench.loaders.base import LoadContext

    task = get_task("cifar10")
    src = task.source()
    ctx = LoadContext(task, src, "test", "test", tmp_path / "cifar10", tmp_path, False)
    check_expected_size(ctx, 10000)
    with pytest.raises(DataNotFoundError, match=r"has 9990 samples but 10000 are expected \(10 missing\)"):
        check_expected_size(ctx, 9990)
    with pytest.raises(DataNotFoundError, match="more than expected"):
        check_expected_size(ctx, 10001)


def test_task_status_reads_declared_files_only(tmp_path):
    task = get_task("fer2013")
    (tmp_path / "fer2013" / "fer2013").mkdir(parents=True)
    present, detail = task_status(task, tmp_path)
    assert not present and "test split missing" in detail
    (tmp_path / "fer2013" / "fer2013" / "icml_face_data.csv").write_text("")  # an accepted alternative
    present, detail = task_status(task, tmp_path)
    assert present and "train, val, test" in detail
    wds_present, wds_detail = task_status(task, tmp_path, "wds")
    assert not wds_present and "wds_fer2013" in wds_detail


def test_metrics_known_answers():
    from clip_bench.metrics.classification import map_11point, mean_per_class_recall, roc_auc

    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    assert map_11point(targets * 5.0 + 0.1, targets) == pytest.approx(100.0)  # perfect ranking
    # class 0: positives ranked 1st and 3rd -> precision 1 up to recall .5, 2/3 after: (6 + 5 * 2/3) / 11
    scores = np.array([[0.9], [0.8], [0.7], [0.1]])
    assert map_11point(scores, np.array([[1], [0], [1], [0]])) == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    assert roc_auc(logits, np.array([0, 1, 0, 1])) == pytest.approx(100.0)
    assert roc_auc(-logits, np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    # mean per-class recall weighs each class equally: 1/1 and 1/3 -> 66.7, while accuracy is 50
    assert mean_per_class_recall(np.eye(2)[[0, 1, 0, 0]], np.array([0, 1, 1, 1])) == pytest.approx(
        100 * (1 + 1 / 3) / 2)


def test_roc_auc_on_more_than_two_classes_is_a_one_line_error():
    from clip_bench.metrics.classification import roc_auc

    with pytest.raises(ClipBenchError, match="binary tasks"):
        roc_auc(np.zeros((4, 3)), np.array([0, 1, 2, 1]))
