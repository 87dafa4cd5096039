"""The ImageFolder loader on images the test writes, with class order taken from the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import write_digit_folder

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import DataNotFoundError

TASK_YAML = """name: digits_folder
version: 1
prompts: digits
metric: accuracy
splits: [test]
sources:
  local:
    loader: imagefolder
    path: digits_folder
"""


@pytest.fixture
def folder_task(tmp_path):
    path = tmp_path / "digits_folder.yaml"
    path.write_text(TASK_YAML)
    return str(path)


def test_imagefolder_counts_labels_and_accuracy(tmp_path, folder_task, eval_config):
    write_digit_folder(eval_config.data_root / "digits_folder" / "test", per_class=8)
    data = load_split(get_task(folder_task), None, "test", eval_config.data_root)
    assert len(data) == 80
    assert np.array_equal(np.bincount(data.targets), [8] * 10)
    # class index follows the task's class list ("0".."9"), and files map to their folder's class
    assert all(Path(p).parent.name == str(t) for p, t in zip(data.paths, data.targets))
    rows = zeroshot("tiny-clip-digits", folder_task, eval_config, device="cpu")
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["n"] == 80 and top1["value"] >= 80


def test_missing_class_folder_is_an_error(tmp_path, folder_task, eval_config):
    write_digit_folder(eval_config.data_root / "digits_folder" / "test", per_class=1)
    (eval_config.data_root / "digits_folder" / "test" / "7" / "000.png").unlink()
    (eval_config.data_root / "digits_folder" / "test" / "7").rmdir()
    with pytest.raises(DataNotFoundError, match="1 of 10 class folders are missing: 7"):
        load_split(get_task(folder_task), None, "test", eval_config.data_root)


def test_missing_root_names_expected_path(folder_task, eval_config):
    with pytest.raises(DataNotFoundError, match=str(eval_config.data_root / "digits_folder" / "test")):
        load_split(get_task(folder_task), None, "test", eval_config.data_root)
