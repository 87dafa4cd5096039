"""DataComp's WebDataset layout (the ``djghosh/wds_<task>_test`` repos): a ``.npy`` beside a ``.cls`` is metadata,
class names and templates come from the data's own files, ``--download`` fetches the shipped ``datacomp_*`` tasks,
and zero-shot top-1 equals LAION CLIP_benchmark's own evaluation of the same files with the same model."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_checks import one_line_error
from dataset_fixtures import digits_rgb, npy_bytes, write_wds
from task_fixtures import fixture_task, main_row

from clip_bench import zeroshot
from clip_bench.cache.data_fingerprint import fingerprint_dataset
from clip_bench.loaders import load_split
from clip_bench.tasks.catalog import get_task, list_collections
from clip_bench.tasks.prompts import PromptSet
from clip_bench.util.errors import ClipBenchError, DataNotFoundError

#: CLEVR Distance style: class 3's name is empty (a blank line in classnames.txt).
NAMES = ["0", "1", "2", "", "4", "5", "6", "7", "8", "9"]
TEMPLATES = ('a photo of the number: "{c}".', "the digit {c}")
TASK = """name: dc_digits
version: 1
metric: accuracy
splits: [test]
sources:
  wds:
    loader: wds
    path: wds_dc_digits_test
    args: {repo: someone/wds_dc_digits_test}
    prompts_from_data: true
    download: pass --download (fetches someone/wds_dc_digits_test from the Hugging Face hub).
"""


@pytest.fixture(scope="module")
def digits():
    return digits_rgb("test", 32)


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "dc_digits.yaml"
    path.write_text(TASK)
    return str(path)


def metadata_for(labels: np.ndarray) -> np.ndarray:
    """[region, sample id, label, a constant]: WILDS-like integer metadata."""
    n = len(labels)
    return np.stack([labels % 3, np.arange(n), labels, np.full(n, 7)], axis=1).astype(np.int64)


def write_dc(root: Path, images, labels, names=NAMES, metadata=None, shard_size=64):
    return write_wds(root / "wds_dc_digits_test", "test", images, labels, names, shard_size=shard_size,
                     templates=TEMPLATES, metadata=metadata)


# --- metadata ------------------------------------------------------------------------------------


def test_npy_beside_cls_is_metadata_not_a_label(task_file, digits, eval_config):
    images, labels = digits
    meta = metadata_for(labels[:150])
    write_dc(eval_config.data_root, images[:150], labels[:150], metadata=meta)
    data = load_split(get_task(task_file), None, "test", eval_config.data_root)
    np.testing.assert_array_equal(data.targets, labels[:150])  # the .cls, never the .npy
    assert data.metadata.dtype == np.int64 and data.metadata.shape == (150, 4)
    np.testing.assert_array_equal(data.metadata, meta)  # row i = sample i, across the three shards
    write_dc(eval_config.data_root, images[:20], labels[:20])  # no .npy: no metadata
    assert load_split(get_task(task_file), None, "test", eval_config.data_root).metadata is None


def _rewrite_member(shard: Path, member: str, data: bytes | None) -> None:
    """Replace (or, with None, drop) one member of a tar shard, keeping the others in order."""
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(shard, "w") as tf:
        for m, raw in members:
            if m.name == member:
                if data is None:
                    continue
                raw = data
            info = tarfile.TarInfo(m.name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))


@pytest.mark.parametrize(("shard", "key", "member", "message"), [
    (1, "s0000070", None, r"sample 's0000070' in shard 1.tar has no \.npy metadata, but sample 's0000000' in shard "
                          r"0.tar has 4 entries"),
    (0, "s0000005", npy_bytes(np.arange(3)), r"sample 's0000005' in shard 0.tar has a \.npy metadata vector of 3 "
                                        r"entries, but sample 's0000000' in shard 0.tar has 4 entries"),
    (0, "s0000000", npy_bytes(np.arange(3)), r"sample 's0000001' in shard 0.tar has a \.npy metadata vector of 4 "
                                        r"entries, but sample 's0000000' in shard 0.tar has 3 entries"),
    (1, "s0000066", npy_bytes(np.array([1.0, 2.5, 0.0, 7.0])), r"metadata of sample 's0000066' in shard 1.tar holds "
                                                          r"2.5, which is not a whole number"),
    (1, "s0000066", npy_bytes(np.zeros((2, 2), dtype=np.int64)), r"metadata of sample 's0000066' in shard 1.tar has "
                                                            r"shape \(2, 2\) and dtype int64"),
    (1, "s0000066", b"not an npy file", r"metadata of sample 's0000066' in shard 1.tar cannot be read"),
])
def test_metadata_problems_are_one_line_errors_naming_shard_and_key(task_file, digits, eval_config, capsys, shard, key,
                                                                    member, message):
    images, labels = digits
    shards = write_dc(eval_config.data_root, images[:100], labels[:100], metadata=metadata_for(labels[:100]))
    _rewrite_member(shards[shard], f"{key}.npy", member)
    with pytest.raises(DataNotFoundError, match=message):
        load_split(get_task(task_file), None, "test", eval_config.data_root)
    line = one_line_error(["zeroshot", "--model", "tiny-clip-digits", "--task", task_file, "--data-root",
                           str(eval_config.data_root), "--cache-dir", str(eval_config.cache_dir), "--output-dir",
                           str(eval_config.output_dir)], capsys)
    assert key in line and f"{shard}.tar" in line


def test_whole_number_floats_and_bools_are_exact_integers(task_file, digits, eval_config):
    images, labels = digits
    meta = [np.array([3.0, -1.0]), np.array([True, False]), np.array([2**40, 5], dtype=np.uint64)]
    write_dc(eval_config.data_root, images[:3], labels[:3], metadata=meta)
    data = load_split(get_task(task_file), None, "test", eval_config.data_root)
    np.testing.assert_array_equal(data.metadata, [[3, -1], [1, 0], [2**40, 5]])
    assert data.metadata.dtype == np.int64


def test_metadata_is_covered_by_the_data_fingerprint(task_file, digits, eval_config):
    images, labels = digits
    meta = metadata_for(labels[:40])
    shards = write_dc(eval_config.data_root, images[:40], labels[:40], metadata=meta)
    root = eval_config.data_root / "wds_dc_digits_test"
    task = get_task(task_file)
    data = load_split(task, None, "test", eval_config.data_root)
    assert set(map(str, shards)) <= set(map(str, data.data_files()))  # the shards hold the .npy members
    before = fingerprint_dataset(data, root)
    changed = meta[5].copy()
    changed[0] += 1  # one sample's region, nothing else
    _rewrite_member(shards[0], "s0000005.npy", npy_bytes(changed))
    again = load_split(task, None, "test", eval_config.data_root)
    np.testing.assert_array_equal(again.targets, data.targets)
    assert again.metadata[5, 0] == meta[5, 0] + 1
    assert fingerprint_dataset(again, root) != before


# --- class names and templates from the data ------------------------------------------------------


def test_prompts_from_data_give_the_rows_their_hashes_and_standardness(task_file, digits, eval_config, tiny_model,
                                                                       tmp_path):
    images, labels = digits
    write_dc(eval_config.data_root, images[:60], labels[:60], metadata=metadata_for(labels[:60]))
    task = get_task(task_file).bind_data(eval_config.data_root)
    prompts = task.prompt_set()
    assert prompts.classnames == tuple(NAMES) and prompts.templates == TEMPLATES  # the blank line is class 3
    assert prompts.prompts_for(3) == ['a photo of the number: "".', "the digit "]  # as str.format(c='') gives
    row = main_row(zeroshot(tiny_model, task_file, eval_config))
    assert (row["classnames_hash"], row["templates_hash"]) == (PromptSet(tuple(NAMES), TEMPLATES).classnames_hash,
                                                               PromptSet(tuple(NAMES), TEMPLATES).templates_hash)
    assert row["standard"] is True and row["n"] == 60
    # the user's own class names for the same data: another result_id, not standard
    own = tmp_path / "names.txt"
    own.write_text("\n".join(str(i) for i in range(10)) + "\n")
    other = main_row(zeroshot(tiny_model, task_file, eval_config, classnames=str(own)))
    assert other["standard"] is False and other["result_id"] != row["result_id"]
    assert other["classnames_hash"] != row["classnames_hash"] and other["templates_hash"] == row["templates_hash"]
    # other class names in the data folder itself: other hashes, so another result_id
    (eval_config.data_root / "wds_dc_digits_test" / "classnames.txt").write_text("\n".join(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]) + "\n")
    renamed = main_row(zeroshot(tiny_model, task_file, eval_config))
    assert renamed["classnames_hash"] != row["classnames_hash"] and renamed["result_id"] != row["result_id"]


def test_compare_refuses_rows_scored_with_other_templates_from_the_data(task_file, digits, eval_config, tiny_model,
                                                                        tmp_path):
    """The data's own templates are part of what a row measured, like its class names: two models scored before
    and after the data folder's template file changed are both standard rows, so compare must not pair them."""
    from model_fixtures import checkpoint_folder

    from clip_bench.report.compare import compare

    images, labels = digits
    write_dc(eval_config.data_root, images[:60], labels[:60])
    folder = eval_config.data_root / "wds_dc_digits_test"
    data = load_split(get_task(task_file), None, "test", eval_config.data_root)
    before = fingerprint_dataset(data, folder)
    a = main_row(zeroshot(tiny_model, task_file, eval_config))
    (folder / "zeroshot_classification_templates.txt").write_text("{c}\n")
    after = fingerprint_dataset(load_split(get_task(task_file), None, "test", eval_config.data_root), folder)
    assert after != before  # the files the task reads from the data folder, its templates among them
    other = checkpoint_folder(tmp_path / "perturbed", perturb=True)
    b = main_row(zeroshot(str(other / "tiny.json"), task_file, eval_config,
                          pretrained=str(other / "epoch_32.safetensors"), device="cpu"))
    assert a["standard"] and b["standard"] and a["templates_hash"] != b["templates_hash"]
    with pytest.raises(ClipBenchError, match="measured on different data"):
        compare(a["model_fingerprint"], b["model_fingerprint"], eval_config.output_dir)


def test_duplicated_class_names_stay_separate_classes(task_file, digits, eval_config, tiny_model):
    """iWildCam repeats class names: classes are indices, and the duplicate's images still count as that class."""
    images, labels = digits
    names = [str(i) for i in range(10)] + ["3"]  # class 10 has class 3's name
    lab = labels[:60].copy()
    lab[lab == 9] = 10  # and the images of 9 are labelled 10
    write_dc(eval_config.data_root, images[:60], lab, names=names)
    data = load_split(get_task(task_file), None, "test", eval_config.data_root)
    np.testing.assert_array_equal(data.targets, lab)
    rows = zeroshot(tiny_model, task_file, eval_config)
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["n"] == 60
    # every image of class 10 is scored wrong (its predicted column is never 10: class 3's equal column wins)
    assert top1["value"] <= 100.0 * (60 - int((lab == 10).sum())) / 60


def test_missing_prompt_files_say_to_download(task_file, eval_config, capsys):
    task = get_task(task_file)
    with pytest.raises(ClipBenchError, match="has no class names or templates of its own.*bind_data"):
        task.prompt_set()  # not bound to a data root
    with pytest.raises(ClipBenchError, match=r"classnames.txt does not exist .*to get it: pass --download"):
        task.bind_data(eval_config.data_root).prompt_set()
    line = one_line_error(["zeroshot", "--model", "tiny-clip-digits", "--task", "datacomp_cifar10", "--data-root",
                           str(eval_config.data_root), "--cache-dir", str(eval_config.cache_dir), "--output-dir",
                           str(eval_config.output_dir)], capsys)
    assert "wds_cifar10_test/classnames.txt does not exist" in line
    assert "pass --download (fetches djghosh/wds_cifar10_test" in line


def test_templates_without_placeholder_name_the_file(task_file, digits, eval_config):
    images, labels = digits
    write_dc(eval_config.data_root, images[:5], labels[:5])
    (eval_config.data_root / "wds_dc_digits_test" / "zeroshot_classification_templates.txt").write_text(
        "a photo of {c}\n\nthe digit {c}\n")
    with pytest.raises(ClipBenchError, match=r"zeroshot_classification_templates.txt: template '' has no"):
        get_task(task_file).bind_data(eval_config.data_root).prompt_set()


# --- --download ----------------------------------------------------------------------------------

#: DataComp's tasklist.yml key of each shipped task (mlfoundations/datacomp tasklist.yml), written out here so
#: that the repository naming rule is checked against an independent list.
TASKLIST_KEYS = {
    "datacomp_imagenet1k": "imagenet1k", "datacomp_caltech101": "vtab/caltech101", "datacomp_cifar10": "cifar10",
    "datacomp_cifar100": "vtab/cifar100", "datacomp_clevr_counts": "vtab/clevr_count_all",
    "datacomp_clevr_distance": "vtab/clevr_closest_object_distance", "datacomp_country211": "country211",
    "datacomp_dtd": "vtab/dtd", "datacomp_eurosat": "vtab/eurosat", "datacomp_fgvc_aircraft": "fgvc_aircraft",
    "datacomp_food101": "food101", "datacomp_gtsrb": "gtsrb", "datacomp_imagenet_sketch": "imagenet_sketch",
    "datacomp_imagenetv2": "imagenetv2", "datacomp_imagenet_a": "imagenet-a", "datacomp_imagenet_o": "imagenet-o",
    "datacomp_imagenet_r": "imagenet-r", "datacomp_kitti_distance": "vtab/kitti_closest_vehicle_distance",
    "datacomp_mnist": "mnist", "datacomp_objectnet": "objectnet", "datacomp_flowers102": "vtab/flowers",
    "datacomp_oxford_pets": "vtab/pets", "datacomp_voc2007": "voc2007", "datacomp_pcam": "vtab/pcam",
    "datacomp_rendered_sst2": "renderedsst2", "datacomp_resisc45": "vtab/resisc45", "datacomp_stanford_cars": "cars",
    "datacomp_stl10": "stl10", "datacomp_sun397": "sun397", "datacomp_svhn": "vtab/svhn",
    "datacomp_iwildcam": "wilds/iwildcam", "datacomp_camelyon17": "wilds/camelyon17", "datacomp_fmow": "wilds/fmow",
    "datacomp_dollar_street": "fairness/dollar_street", "datacomp_geode": "fairness/geode",
}


def test_the_download_list_covers_the_collection():
    assert sorted(TASKLIST_KEYS) == sorted(list_collections()["openclip35"])


@pytest.mark.parametrize("name", sorted(TASKLIST_KEYS))
def test_download_fetches_each_datacomp_task_from_the_hub(monkeypatch, name, digits, tmp_path):
    """With --download a missing split comes from DataComp's own repo (mlfoundations/datacomp wds_eval.py:
    djghosh/wds_<key, '/' -> '-'>_test, the fairness/ prefix dropped), with its class names and templates."""
    import huggingface_hub

    images, labels = digits
    key = TASKLIST_KEYS[name]
    repo = "djghosh/wds_" + key.removeprefix("fairness/").replace("/", "-") + "_test"
    calls = []
    n_classes = 8  # a stand-in class list; the task takes whatever the data says

    def fake_snapshot_download(repo_id, repo_type, local_dir, allow_patterns, revision=None):
        calls.append((repo_id, repo_type, sorted(allow_patterns)))
        keep = labels < n_classes
        write_wds(Path(local_dir), "test", images[keep][:12], labels[keep][:12], [f"c{i}" for i in range(n_classes)],
                  shard_size=5, templates=("a photo of a {c}.",), metadata=metadata_for(labels[keep][:12]))
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    task = get_task(fixture_task(tmp_path, name, {"wds": {"test": 12}}))
    data = load_split(task, None, "test", tmp_path / "data", download=True)
    assert calls == [(repo, "dataset", sorted(["test/*", "classnames.txt", "zeroshot_classification_templates.txt",
                                               "dataset_type.txt"]))]
    assert len(data) == 12 and data.metadata.shape == (12, 4)
    folder = tmp_path / "data" / repo.split("/")[1]  # DataComp's download_evalsets.py folder name
    assert (folder / "test" / "2.tar").is_file()
    assert task.bind_data(tmp_path / "data").prompt_set().classnames == tuple(f"c{i}" for i in range(n_classes))


def test_zeroshot_with_download_fetches_before_reading_the_prompts(monkeypatch, task_file, digits, eval_config,
                                                                   tiny_model):
    import huggingface_hub

    images, labels = digits

    def fake_snapshot_download(repo_id, repo_type, local_dir, allow_patterns, revision=None):
        write_wds(Path(local_dir), "test", images[:30], labels[:30], NAMES, templates=TEMPLATES)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    row = main_row(zeroshot(tiny_model, task_file, eval_config, download=True))
    assert row["n"] == 30 and row["classnames_hash"] == PromptSet(tuple(NAMES), TEMPLATES).classnames_hash


# --- parity with CLIP_benchmark -------------------------------------------------------------------


def _clip_benchmark_logits(folder: Path, model):
    """(logits, targets) of CLIP_benchmark's zero-shot classifier and image loop on a WebDataset folder, as
    DataComp's eval_utils/wds_eval.py calls them (class names and templates from the dataset, amp off)."""
    import torch
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as zsc

    ds = build_dataset("wds/dc_digits", root=str(folder), transform=model.preprocess, split="test", download=False)
    loader = torch.utils.data.DataLoader(ds.batched(64), batch_size=None, shuffle=False, num_workers=0)
    classifier = zsc.zero_shot_classifier(model.model, model.tokenizer, ds.classes, ds.templates, "cpu", amp=False)
    return zsc.run_classification(model.model, classifier, loader, "cpu", amp=False)


def test_zeroshot_equals_clip_benchmark_on_the_same_files(task_file, digits, eval_config, tiny_model):
    """Top-1 by CLIP_benchmark's accuracy() rule (the first of torch's topk; accuracy() itself cannot run under
    NumPy 2, it converts a 1-element array with float()) and mean per-class recall as DataComp computes it
    (scikit-learn's balanced accuracy of the argmax)."""
    from sklearn.metrics import balanced_accuracy_score

    images, labels = digits
    n = 200
    write_dc(eval_config.data_root, images[:n], labels[:n], metadata=metadata_for(labels[:n]))
    logits, target = _clip_benchmark_logits(eval_config.data_root / "wds_dc_digits_test", tiny_model)
    correct = int((logits.topk(1, 1, True, True)[1][:, 0] == target).sum())  # counted exactly
    rows = {r["metric"]: r for r in zeroshot(tiny_model, task_file, eval_config)}
    assert rows["top1"]["n"] == n == len(target)
    assert rows["top1"]["value"] == pytest.approx(100.0 * correct / n, abs=1e-9)
    assert rows["mean_per_class_recall"]["value"] == pytest.approx(
        100.0 * balanced_accuracy_score(target, logits.argmax(1)), abs=1e-9)
    assert n // 2 < correct < n  # a real measurement: the tiny CLIP knows digits, not the empty name of class 3


def test_duplicated_class_names_predict_as_datacomps_argmax(task_file, digits, eval_config, tiny_model):
    """Two classes with one name tie exactly; clip-bench predicts the lower index, as DataComp's predictions for
    iWildCam's macro F1 (logits.argmax in eval_utils/wds_eval.py) do. (CLIP_benchmark's acc1, through torch's
    topk, may take the other one.)"""
    images, labels = digits
    names = [str(i) for i in range(10)] + ["3"]
    write_dc(eval_config.data_root, images[:100], labels[:100], names=names)
    logits, target = _clip_benchmark_logits(eval_config.data_root / "wds_dc_digits_test", tiny_model)
    assert bool((logits[:, 3] == logits[:, 10]).all())  # the peer's tie is exact too
    row = next(r for r in zeroshot(tiny_model, task_file, eval_config) if r["metric"] == "top1")
    assert row["value"] == pytest.approx(100.0 * int((logits.argmax(1) == target).sum()) / 100, abs=1e-9)


def test_shipped_task_reads_a_copy_in_datacomps_folder(digits, eval_config, tiny_model, tmp_path):
    """A folder laid out by DataComp's download_evalsets.py is read as it is by the shipped task definition."""
    images, labels = digits
    folder = eval_config.data_root / "wds_mnist_test"
    write_wds(folder, "test", images[:40], labels[:40], [str(i) for i in range(10)], templates=TEMPLATES)
    task = fixture_task(tmp_path, "datacomp_mnist", {"wds": {"test": 40}})
    raw = yaml.safe_load(Path(task).read_text())
    assert raw["sources"]["wds"]["prompts_from_data"] is True
    row = main_row(zeroshot(tiny_model, task, eval_config))
    assert row["n"] == 40 and row["value"] > 60.0
