"""The `wds` (clip-benchmark WebDataset) and `hf_datasets` loaders on fixtures written in their real formats."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import digits_rgb, encode, write_wds
from PIL import Image

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.loaders.webdataset import TarImages
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import DataNotFoundError

DIGITS = [str(i) for i in range(10)]

TASK_YAML = """name: {name}
version: 1
prompts: mnist
metric: accuracy
splits: [test]
sources:
  wds:
    loader: wds
    path: wds_digits
    args: {{repo: clip-benchmark/wds_digits_fixture}}
  hf:
    loader: hf_datasets
    path: hf_digits
  parquet:
    loader: hf_datasets
    path: hf_digits_parquet
    args: {{image_column: img, label_column: digit, repo: someone/digits_parquet}}
"""


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "wds_digits.yaml"
    path.write_text(TASK_YAML.format(name="wds_digits"))
    return str(path)


@pytest.fixture(scope="module")
def digits():
    return digits_rgb("test", 32)


def main_row(rows):
    return next(r for r in rows if r["is_main"] and not r.get("subset"))


def test_wds_digits_counts_order_and_accuracy(task_file, digits, eval_config, tiny_model):
    images, labels = digits
    shards = write_wds(eval_config.data_root / "wds_digits", "test", images, labels, DIGITS, shard_size=150)
    assert len(shards) == 3
    data = load_split(get_task(task_file), "wds", "test", eval_config.data_root)
    assert isinstance(data, TarImages)
    assert len(data) == len(labels) == 360
    np.testing.assert_array_equal(data.targets, labels)  # shard order, then member order
    for i in (0, 151, 359):  # lossless webp: pixels come back exactly
        np.testing.assert_array_equal(np.asarray(data.load_image(i)), images[i])
    assert data.describe(151).endswith("1.tar:s0000151.webp")
    rows = zeroshot(tiny_model, task_file, eval_config, source="wds")
    row = main_row(rows)
    assert row["n"] == 360 and row["source"] == "wds"
    assert row["value"] > 80.0  # the tiny CLIP knows digits (~90%)


def test_wds_reads_images_lazily_by_offset(tmp_path, task_file, digits, eval_config):
    images, labels = digits
    root = eval_config.data_root / "wds_digits"
    write_wds(root, "test", images[:20], labels[:20], DIGITS, ext="png")
    data = load_split(get_task(task_file), "wds", "test", eval_config.data_root)
    # the index holds offsets, never image bytes
    assert data.offset.dtype == np.int64 and not any(isinstance(v, bytes | Image.Image) for v in vars(data).values())
    with tarfile.open(root / "test" / "0.tar") as tf:
        raw = tf.extractfile("s0000007.png").read()
    assert data.read_bytes(7) == raw


def test_wds_prefers_one_image_per_sample_and_accepts_jpg(task_file, digits, eval_config):
    images, labels = digits
    root = eval_config.data_root / "wds_digits"
    write_wds(root, "test", images[:12], labels[:12], DIGITS, ext="jpg")
    data = load_split(get_task(task_file), "wds", "test", eval_config.data_root)
    assert len(data) == 12 and data.load_image(3).size == (32, 32)


def test_wds_missing_data_says_how_to_download(task_file, eval_config):
    with pytest.raises(DataNotFoundError, match=r"--download to fetch clip-benchmark/wds_digits_fixture"):
        load_split(get_task(task_file), "wds", "test", eval_config.data_root)


def test_wds_incomplete_shards_and_wrong_class_count(task_file, digits, eval_config):
    images, labels = digits
    root = eval_config.data_root / "wds_digits"
    write_wds(root, "test", images[:30], labels[:30], DIGITS, shard_size=10)
    (root / "test" / "2.tar").unlink()
    with pytest.raises(DataNotFoundError, match="only 2 of the 3 shards"):
        load_split(get_task(task_file), "wds", "test", eval_config.data_root)
    write_wds(root, "test", images[:30], labels[:30], DIGITS[:7], shard_size=10)
    with pytest.raises(DataNotFoundError, match="classnames.txt lists 7 classes but the task has 10"):
        load_split(get_task(task_file), "wds", "test", eval_config.data_root)


def test_wds_download_fetches_the_split_from_the_hub(monkeypatch, task_file, digits, eval_config):
    import huggingface_hub

    images, labels = digits
    calls = []

    def fake_snapshot_download(repo_id, repo_type, local_dir, allow_patterns, revision=None):
        calls.append((repo_id, repo_type, allow_patterns, revision))
        write_wds(Path(local_dir), "test", images[:10], labels[:10], DIGITS)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    data = load_split(get_task(task_file), "wds", "test", eval_config.data_root, download=True)
    assert len(data) == 10
    repo, kind, patterns, _ = calls[0]
    assert (repo, kind) == ("clip-benchmark/wds_digits_fixture", "dataset")
    assert "test/*" in patterns and "classnames.txt" in patterns


def test_wds_download_failure_is_a_clear_error(monkeypatch, task_file, eval_config):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("could not connect to huggingface.co")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DataNotFoundError, match="Hugging Face hub failed: OSError: could not connect"):
        load_split(get_task(task_file), "wds", "test", eval_config.data_root, download=True)


def test_wds_multilabel_targets(tmp_path, digits):
    images, _ = digits
    hot = np.zeros((6, 10), dtype=np.float32)  # one column per class of the task (mnist prompts: 10)
    hot[np.arange(6), np.arange(6) % 4] = 1
    hot[0, 3] = 1
    task = tmp_path / "ml.yaml"
    task.write_text(
        "name: ml\nversion: 1\nprompts: mnist\nmetric: map_11point\nmultilabel: true\nsplits: [test]\n"
        "sources:\n  wds: {loader: wds, path: ml}\n"
    )
    write_wds(tmp_path / "data" / "ml", "test", images[:6], hot, None, multilabel=True)
    data = load_split(get_task(str(task)), None, "test", tmp_path / "data")
    np.testing.assert_array_equal(data.targets, hot)


def _digits_dataset(images, labels, image_column="image", label_column="label"):
    import datasets

    feats = datasets.Features({image_column: datasets.Image(), label_column: datasets.ClassLabel(names=DIGITS)})
    return datasets.Dataset.from_dict(
        {image_column: [{"bytes": encode(im, "png"), "path": None} for im in images], label_column: labels.tolist()},
        features=feats,
    )


def test_hf_datasets_save_to_disk(task_file, digits, eval_config, tiny_model):
    images, labels = digits
    _digits_dataset(images, labels).save_to_disk(str(eval_config.data_root / "hf_digits" / "test"))
    data = load_split(get_task(task_file), "hf", "test", eval_config.data_root)
    assert len(data) == 360
    np.testing.assert_array_equal(data.targets, labels)
    np.testing.assert_array_equal(np.asarray(data.load_image(5)), images[5])
    row = main_row(zeroshot(tiny_model, task_file, eval_config, source="hf"))
    assert row["n"] == 360 and row["value"] > 80.0


def test_hf_datasets_parquet_hub_layout(task_file, digits, eval_config, tiny_model):
    images, labels = digits
    out = eval_config.data_root / "hf_digits_parquet" / "data" / "test-00000-of-00001.parquet"
    out.parent.mkdir(parents=True)
    _digits_dataset(images, labels, "img", "digit").to_parquet(str(out), batch_size=64)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out).num_row_groups > 1  # exercises the row-group lookup
    data = load_split(get_task(task_file), "parquet", "test", eval_config.data_root)
    np.testing.assert_array_equal(data.targets, labels)
    for i in (0, 64, 130, 359):
        np.testing.assert_array_equal(np.asarray(data.load_image(i)), images[i])
    row = main_row(zeroshot(tiny_model, task_file, eval_config, source="parquet"))
    assert row["n"] == 360 and row["value"] > 80.0


def test_hf_datasets_missing_column_and_split(task_file, digits, eval_config):
    images, labels = digits
    with pytest.raises(DataNotFoundError, match="no save_to_disk folder"):
        load_split(get_task(task_file), "hf", "test", eval_config.data_root)
    _digits_dataset(images[:5], labels[:5], "pixels").save_to_disk(str(eval_config.data_root / "hf_digits" / "test"))
    with pytest.raises(DataNotFoundError, match="no column 'image'"):
        load_split(get_task(task_file), "hf", "test", eval_config.data_root)


def test_hf_datasets_download_fetches_parquet_files(monkeypatch, task_file, digits, eval_config):
    import huggingface_hub

    images, labels = digits
    calls = []

    def fake_snapshot_download(repo_id, repo_type, local_dir, allow_patterns, revision=None):
        calls.append((repo_id, allow_patterns))
        out = Path(local_dir) / "data" / "test-00000-of-00001.parquet"
        out.parent.mkdir(parents=True)
        _digits_dataset(images[:9], labels[:9], "img", "digit").to_parquet(str(out))
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    data = load_split(get_task(task_file), "parquet", "test", eval_config.data_root, download=True)
    assert len(data) == 9 and calls[0][0] == "someone/digits_parquet" and "data/test-*.parquet" in calls[0][1]
