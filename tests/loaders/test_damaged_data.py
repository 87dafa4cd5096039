"""Damaged or odd data in the loaders a new user points at: one line naming the file, exit status 2,
and never a silently changed label."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_checks import one_line_error
from dataset_fixtures import encode, write_digit_folder
from PIL import Image

from clip_bench.cli.app import main
from clip_bench.loaders import load_split
from clip_bench.tasks.catalog import get_task

TASK = """name: strict_loaders
version: 1
prompts: mnist
metric: accuracy
splits: [test]
sources:
  parquet: {loader: hf_datasets, path: pq}
  disk: {loader: hf_datasets, path: disk}
  sampled: {loader: sampled_folders, path: sf, args: {folder: x, per_class: {test: rets}}}
"""


@pytest.fixture
def setup(tmp_path):
    task = tmp_path / "strict_loaders.yaml"
    task.write_text(TASK)
    data = tmp_path / "data"

    def argv(source: str) -> list[str]:
        return ["zeroshot", "--model", "tiny-clip-digits", "--task", str(task), "--source", source, "--data-root",
                str(data), "--no-cache", "--output-dir", str(tmp_path / "out"), "--workers", "0", "--quiet"]

    return str(task), data, argv


def write_parquet(data, labels, images=None) -> str:
    path = data / "pq" / "test" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    png = encode(np.zeros((8, 8, 3), np.uint8), "png")
    cells = images if images is not None else [{"bytes": png, "path": None}] * len(labels)
    pq.write_table(pa.table({"image": cells, "label": labels}), path)
    return str(path)


def test_fractional_float_labels_are_an_error_not_truncated(setup, capsys):
    """Today label 1.7 silently becomes class 1."""
    task, data, argv = setup
    write_parquet(data, [0.0, 1.7, 2.0, 3.0])
    msg = one_line_error(argv("parquet"), capsys)
    assert "column 'label' does not hold integer class indices or class names (found 1.7)" in msg, msg


def test_whole_float_labels_are_read_exactly(setup):
    task, data, _ = setup
    write_parquet(data, [0.0, 9.0, 2.0, 3.0])
    np.testing.assert_array_equal(load_split(get_task(task), "parquet", "test", data).targets, [0, 9, 2, 3])


@pytest.mark.parametrize("label", [-1, 10])
def test_label_outside_the_classes_is_an_error(setup, capsys, label):
    """Today -1 is scored as if it were a class, and 10 for a 10-class task silently counts as wrong."""
    task, data, argv = setup
    write_parquet(data, [0, 1, label, 3])
    msg = one_line_error(argv("parquet"), capsys)
    assert f"the data has label {label}, outside the source's 10 classes (0..9)" in msg, msg


def test_corrupt_parquet_names_the_file(setup, capsys):
    task, data, argv = setup
    path = write_parquet(data, [0, 1])
    with open(path, "wb") as f:
        f.write(b"not a parquet file at all")
    msg = one_line_error(argv("parquet"), capsys)
    assert "part-0.parquet is not a readable parquet file" in msg and path in msg, msg


def test_damaged_save_to_disk_folder(setup, capsys):
    task, data, argv = setup
    (data / "disk" / "test").mkdir(parents=True)
    (data / "disk" / "test" / "state.json").write_text("{")
    msg = one_line_error(argv("disk"), capsys)
    assert f"{data / 'disk' / 'test'} is not a readable save_to_disk folder" in msg, msg


def test_empty_image_cell_is_a_named_bad_image(setup, capsys):
    """Today a null image cell is a TypeError traceback from a DataLoader."""
    task, data, argv = setup
    write_parquet(data, [0, 1], images=[None, None])
    msg = one_line_error(argv("parquet"), capsys)
    assert "cannot read image" in msg and "part-0.parquet (row group 0, row 0)" in msg and "--skip-bad-images" in msg


def test_sampled_folders_bad_per_class_count(setup, capsys):
    task, data, argv = setup
    (data / "sf" / "x" / "a").mkdir(parents=True)
    msg = one_line_error(argv("sampled"), capsys)
    assert f"task file {task}: 'per_class' of source 'sampled' must map each split" in msg and "got 'rets'" in msg


def test_decompression_bomb_is_a_named_bad_image(tmp_path, capsys, monkeypatch):
    """Today PIL's DecompressionBombError escapes as a traceback; it must name the file and be skippable."""
    task = tmp_path / "bomb.yaml"
    task.write_text("name: bomb\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  local: {loader: imagefolder, path: bomb}\n")
    write_digit_folder(tmp_path / "data" / "bomb" / "test", per_class=1)
    big = tmp_path / "data" / "bomb" / "test" / "3" / "big.png"
    Image.new("RGB", (64, 64)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40 // 2)  # 64x64 is a "bomb", the 32x32 digits are not
    argv = ["zeroshot", "--model", "tiny-clip-digits", "--task", str(task), "--data-root", str(tmp_path / "data"),
            "--no-cache", "--workers", "0", "--quiet", "--output-dir", str(tmp_path / "out"), "--format", "json"]
    msg = one_line_error(argv, capsys)
    assert f"cannot read image {big}" in msg and "--skip-bad-images" in msg, msg
    assert main([*argv, "--skip-bad-images"]) == 0
    assert '"skipped_images": 1' in capsys.readouterr().out
