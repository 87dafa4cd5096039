"""The DataComp-protocol tasks (``datacomp_*``): each follows DataComp's own definition (mlfoundations/datacomp
``tasklist.yml``), the collections follow open_clip's column order, and the schema keys they use are checked."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from cli_checks import one_line_error

from clip_bench.cache.identity import task_hash
from clip_bench.report.reference import reference_file
from clip_bench.tasks.catalog import get_task, list_collections, list_tasks
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import data_dir

#: open_clip CSV column -> (task, DataComp tasklist.yml key, size, task metric), written out from DataComp's
#: tasklist.yml (size, main_metric) and the suite's naming, independently of the task files.
PLAN = {
    "ImageNet 1k": ("datacomp_imagenet1k", "imagenet1k", 50000, "accuracy"),
    "Caltech-101": ("datacomp_caltech101", "vtab/caltech101", 6085, "mean_per_class_recall"),
    "CIFAR-10": ("datacomp_cifar10", "cifar10", 10000, "accuracy"),
    "CIFAR-100": ("datacomp_cifar100", "vtab/cifar100", 10000, "accuracy"),
    "CLEVR Counts": ("datacomp_clevr_counts", "vtab/clevr_count_all", 15000, "accuracy"),
    "CLEVR Distance": ("datacomp_clevr_distance", "vtab/clevr_closest_object_distance", 15000, "accuracy"),
    "Country211": ("datacomp_country211", "country211", 21100, "accuracy"),
    "Describable Textures": ("datacomp_dtd", "vtab/dtd", 1880, "accuracy"),
    "EuroSAT": ("datacomp_eurosat", "vtab/eurosat", 5400, "accuracy"),
    "FGVC Aircraft": ("datacomp_fgvc_aircraft", "fgvc_aircraft", 3333, "mean_per_class_recall"),
    "Food-101": ("datacomp_food101", "food101", 25250, "accuracy"),
    "GTSRB": ("datacomp_gtsrb", "gtsrb", 12630, "accuracy"),
    "ImageNet Sketch": ("datacomp_imagenet_sketch", "imagenet_sketch", 50889, "accuracy"),
    "ImageNet v2": ("datacomp_imagenetv2", "imagenetv2", 10000, "accuracy"),
    "ImageNet-A": ("datacomp_imagenet_a", "imagenet-a", 7500, "accuracy"),
    "ImageNet-O": ("datacomp_imagenet_o", "imagenet-o", 2000, "accuracy"),
    "ImageNet-R": ("datacomp_imagenet_r", "imagenet-r", 30000, "accuracy"),
    "KITTI Vehicle Distance": ("datacomp_kitti_distance", "vtab/kitti_closest_vehicle_distance", 711, "accuracy"),
    "MNIST": ("datacomp_mnist", "mnist", 10000, "accuracy"),
    "ObjectNet": ("datacomp_objectnet", "objectnet", 18574, "accuracy"),
    "Oxford Flowers-102": ("datacomp_flowers102", "vtab/flowers", 6149, "mean_per_class_recall"),
    "Oxford-IIIT Pet": ("datacomp_oxford_pets", "vtab/pets", 3669, "mean_per_class_recall"),
    "Pascal VOC 2007": ("datacomp_voc2007", "voc2007", 14976, "accuracy"),
    "PatchCamelyon": ("datacomp_pcam", "vtab/pcam", 32768, "accuracy"),
    "Rendered SST2": ("datacomp_rendered_sst2", "renderedsst2", 1821, "accuracy"),
    "RESISC45": ("datacomp_resisc45", "vtab/resisc45", 6300, "accuracy"),
    "Stanford Cars": ("datacomp_stanford_cars", "cars", 8041, "accuracy"),
    "STL-10": ("datacomp_stl10", "stl10", 8000, "accuracy"),
    "SUN397": ("datacomp_sun397", "sun397", 108754, "accuracy"),
    "SVHN": ("datacomp_svhn", "vtab/svhn", 26032, "accuracy"),
    "iWildCam": ("datacomp_iwildcam", "wilds/iwildcam", 42791, "macro_f1"),
    "Camelyon17": ("datacomp_camelyon17", "wilds/camelyon17", 85054, "accuracy"),
    "FMoW": ("datacomp_fmow", "wilds/fmow", 22108, "worst_group_top1"),
    "Dollar Street": ("datacomp_dollar_street", "fairness/dollar_street", 3503, "worst_group_top5"),
    "GeoDE": ("datacomp_geode", "fairness/geode", 12488, "worst_group_top1"),
}
GROUP_BY = {"datacomp_fmow": "region", "datacomp_dollar_street": "income", "datacomp_geode": "region"}
#: The three retrieval / WinoGAViL tasks of the 38, after SVHN in open_clip's docs/openclip_results.csv.
RETRIEVAL = ["datacomp_flickr1k", "datacomp_mscoco5k", "datacomp_winogavil"]
#: What each description must say: the protocol differences from the paper task, and the known pitfalls.
MUST_SAY = {
    "datacomp_voc2007": ["single-label", "11-point mAP", "14,976"],
    "datacomp_sun397": ["All 108,754 images", "ignores the split", "19,850"],
    "datacomp_resisc45": ["6,300", "25,200"],
    "datacomp_eurosat": ["5,400", "5,000"],
    "datacomp_clevr_counts": ["15,000", "500"],
    "datacomp_caltech101": ["6,085", "VTAB"],
    "datacomp_objectnet": ["113-way", "own class names"],
    "datacomp_fmow": ["mlfoundations/datacomp#61", "4 test images"],
    "datacomp_iwildcam": ["mlfoundations/datacomp#87", "duplicated", "Classes are indices"],
    "datacomp_clevr_distance": ["class 3's name is empty"],
    "datacomp_kitti_distance": ["LAION-AI/CLIP_benchmark#21"],
}


def csv_columns(name: str) -> list[str]:
    """The per-dataset columns of a published open_clip table shipped in clip_bench/assets/reference/."""
    with reference_file(name).open() as f:
        header = next(csv.reader(f))
    return header[header.index("Average perf. on 35 datasets") + 1:]


def test_openclip35_is_open_clips_column_order():
    columns = csv_columns("openclip_classification_results.csv")
    assert len(columns) == 35 and set(columns) == set(PLAN)
    assert list_collections()["openclip35"] == [PLAN[c][0] for c in columns]


def test_datacomp38_is_the_38_in_column_order_as_far_as_their_task_files_exist():
    names = [PLAN[c][0] for c in csv_columns("openclip_classification_results.csv")]
    at = names.index("datacomp_svhn") + 1
    all38 = [*names[:at], *RETRIEVAL, *names[at:]]
    assert len(all38) == 38
    assert list_collections()["datacomp38"] == [t for t in all38 if t in list_tasks()]
    assert set(all38) - set(list_collections()["datacomp38"]) <= set(RETRIEVAL)


@pytest.mark.parametrize("column", sorted(PLAN))
def test_every_task_follows_datacomps_definition(column):
    name, key, size, metric = PLAN[column]
    task = get_task(name)
    raw = yaml.safe_load((data_dir("tasks") / f"{name}.yaml").read_text())
    repo = "djghosh/wds_" + key.removeprefix("fairness/").replace("/", "-") + "_test"
    assert (task.metric, task.splits, task.eval_split, list(task.sources)) == (metric, ("test",), "test", ["wds"])
    src = task.source()
    assert (src.loader, src.args, src.path, src.prompts_from_data) == ("wds", {"repo": repo}, repo.split("/")[1], True)
    assert src.expected == {"test": size} and src.label_map is None
    assert set(src.files["test"]) >= {"classnames.txt", "zeroshot_classification_templates.txt"}
    assert repo in src.download and "--download" in src.download
    assert "prompts" not in raw and "include" not in raw  # the prompts are the data's own
    assert task.extra.get("group_by") == ({"column": 0, "name": GROUP_BY[name]} if name in GROUP_BY else None)
    assert f'column "{column}"' in (data_dir("tasks") / f"{name}.yaml").read_text().splitlines()[1]
    for phrase in MUST_SAY.get(name, []):
        assert phrase in task.description, (name, phrase)
    assert "zeroshot_classification_templates.txt" in task.description
    with pytest.raises(ClipBenchError, match="no class names or templates of its own"):
        task.prompt_set()  # read from the data only


def test_paper_tasks_are_unchanged_by_the_datacomp_tasks():
    voc = get_task("voc2007")
    assert voc.metric == "map_11point" and voc.multilabel and "wds" not in voc.sources
    assert not any(s.prompts_from_data for t in list_tasks() if not t.startswith("datacomp_")
                   for s in get_task(t).sources.values())


def test_binding_to_data_changes_no_identity(tmp_path):
    task = get_task("datacomp_cifar10")
    bound = task.bind_data(tmp_path)
    assert bound.prompt_folder == tmp_path / "wds_cifar10_test" and task.prompt_folder is None
    assert task_hash(bound) == task_hash(task) == task_hash(task.bind_data(tmp_path / "elsewhere"))
    mnist = get_task("mnist")
    assert mnist.bind_data(tmp_path, "wds") is mnist  # no source of it reads prompts from data


# --- schema -------------------------------------------------------------------------------------

GOOD = {"name": "dc", "version": 1, "metric": "accuracy", "splits": ["test"],
        "sources": {"wds": {"loader": "wds", "path": "wds_dc_test", "prompts_from_data": True}}}
DROP = object()


def write(folder: Path, **changes) -> str:
    """GOOD with changes (``src_<key>`` inside the source; DROP removes a key), as a task file in `folder`."""
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        where, key = (raw["sources"]["wds"], key[4:]) if key.startswith("src_") else (raw, key)
        if value is DROP:
            del where[key]
        else:
            where[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dc.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_a_false_prompts_from_data_is_the_same_definition_as_none(tmp_path):
    absent = get_task(write(tmp_path / "a", prompts="digits", src_prompts_from_data=DROP))
    false = get_task(write(tmp_path / "b", prompts="digits", src_prompts_from_data=False))
    assert task_hash(absent) == task_hash(false) != task_hash(get_task(write(tmp_path / "c", prompts="digits")))


@pytest.mark.parametrize(("changes", "message"), [
    ({"src_prompts_from_data": "yes"}, "'prompts_from_data' in source 'wds' must be true or false"),
    ({"src_path": DROP}, "source 'wds' has prompts_from_data: true, so its class names come from its data folder: "
                         "give it a 'path'"),
    ({"src_label_map": [1, 0]}, "remove its 'label_map'"),
    ({"metric": "worst_group_top5", "group_by": {"column": -1, "name": "region"}}, "'group_by' at the top level must "
                                                                                   "be a mapping {column"),
    ({"metric": "worst_group_top5", "group_by": {"column": 0}}, "'group_by' at the top level must be"),
    ({"metric": "worst_group_top5", "group_by": {"column": 0, "name": "region", "x": 1}}, "'group_by'"),
    ({"metric": "worst_group_top5", "group_by": [0, "region"]}, "'group_by'"),
])
def test_bad_datacomp_keys_are_one_line_errors(tmp_path, capsys, changes, message):
    assert message in one_line_error(["tasks", write(tmp_path, **changes)], capsys)


@pytest.mark.parametrize("metric", ["macro_f1", "worst_group_top1", "worst_group_top5"])
def test_the_group_metrics_are_names_a_task_may_give(tmp_path, metric):
    task = get_task(write(tmp_path, metric=metric, group_by={"column": 2, "name": "income"}))
    assert task.metric == metric and task.extra["group_by"] == {"column": 2, "name": "income"}
