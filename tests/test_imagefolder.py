"""The ImageFolder loader on images the test writes, with class order taken from the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip_bench import zeroshot
from clip_bench.errors import DataNotFoundError
from clip_bench.loaders import load_split
from clip_bench.loaders.digits import digits_arrays
from clip_bench.tasks import get_task

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


def write_digit_tree(root: Path, per_class: int = 8) -> dict[str, int]:
    images, labels = digits_arrays("test", 32)
    counts: dict[str, int] = {}
    for c in range(10):
        folder = root / "test" / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(images[labels == c][:per_class]):
            Image.fromarray(img).save(folder / f"{j:03d}.png")
        counts[str(c)] = per_class
    return counts


@pytest.fixture
def folder_task(tmp_path):
    path = tmp_path / "digits_folder.yaml"
    path.write_text(TASK_YAML)
    return str(path)


def test_imagefolder_counts_labels_and_accuracy(tmp_path, folder_task, eval_config):
    write_digit_tree(eval_config.data_root / "digits_folder")
    data = load_split(get_task(folder_task), None, "test", eval_config.data_root)
    assert len(data) == 80
    assert np.array_equal(np.bincount(data.targets), [8] * 10)
    # class index follows the task's class list ("0".."9"), and files map to their folder's class
    assert all(Path(p).parent.name == str(t) for p, t in zip(data.paths, data.targets))
    rows = zeroshot("tiny-clip-digits", folder_task, eval_config, device="cpu")
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["n"] == 80 and top1["value"] >= 80


def test_missing_class_folder_is_an_error(tmp_path, folder_task, eval_config):
    write_digit_tree(eval_config.data_root / "digits_folder", per_class=1)
    (eval_config.data_root / "digits_folder" / "test" / "7" / "000.png").unlink()
    (eval_config.data_root / "digits_folder" / "test" / "7").rmdir()
    with pytest.raises(DataNotFoundError, match="1 of 10 class folders are missing: 7"):
        load_split(get_task(folder_task), None, "test", eval_config.data_root)


def test_missing_root_names_expected_path(folder_task, eval_config):
    with pytest.raises(DataNotFoundError, match=str(eval_config.data_root / "digits_folder" / "test")):
        load_split(get_task(folder_task), None, "test", eval_config.data_root)
