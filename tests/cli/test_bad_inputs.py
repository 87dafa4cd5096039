"""Hand-edited or damaged inputs: results-file fields of the wrong type, task-file loader arguments of the
wrong type, class subsets out of range, a file-hash store of another schema. Each is a clear error or a
skipped line, never a traceback or a number."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from clip_bench.cache.data_fingerprint import STORE_FILE, file_hashes, open_store
from clip_bench.loaders import load_split
from clip_bench.protocols.zeroshot import subset_scores
from clip_bench.results.rows import scan_rows
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import data_dir


def _row(**fields: object) -> dict[str, object]:
    return {"model": "m", "pretrained": "p", "task": "digits", "protocol": "zeroshot", "metric": "top1",
            "value": 90.0, "n": 360, "is_main": True, "standard": True, **fields}


@pytest.mark.parametrize("field, value", [("is_main", "false"), ("standard", "maybe"), ("is_main", 1),
                                          ("n", -5), ("n", "360"), ("n", 3.5), ("n", True)])
def test_results_line_with_a_mistyped_flag_or_count_is_not_a_row(tmp_path, field, value):
    lines = [_row(), _row(metric="top5", value=99.0, is_main=False), _row(**{field: value})]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows, problems = scan_rows(tmp_path)
    assert len(rows) == 2
    assert len(problems) == 1 and problems[0].startswith(f"line 3: {field} ")


def _digits_task(tmp_path: Path, **changes: object) -> str:
    raw = yaml.safe_load((data_dir("tasks") / "digits.yaml").read_text())
    raw["name"] = "digits_copy"
    for key, value in changes.items():
        if key == "args":
            raw["sources"]["sklearn"]["args"] = value
        else:
            raw[key] = value
    path = tmp_path / "digits_copy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("args, expected", [({"size": "big"}, "'size' must be an integer"),
                                            ({"size": 32.5}, "'size' must be an integer"),
                                            ({"size": 0}, "'size' must be at least 8")])
def test_loader_argument_of_the_wrong_type_or_range_is_one_error(tmp_path, args, expected):
    task = get_task(_digits_task(tmp_path, args=args))
    with pytest.raises(ClipBenchError, match=expected):
        load_split(task, None, "test", tmp_path)


def test_loader_arguments_of_the_right_type_load(tmp_path):
    task = get_task(_digits_task(tmp_path, args={"size": 16}))
    assert len(load_split(task, None, "test", tmp_path)) == 360


def test_subset_naming_a_class_the_task_lacks_is_one_error(tmp_path):
    task = get_task(_digits_task(tmp_path, subsets={"some": [0, 99]}))
    logits, labels = np.zeros((4, 10), dtype=np.float32), np.array([0, 1, 2, 3])
    with pytest.raises(ClipBenchError, match="subset 'some' names class 99, but the task has only 10 classes"):
        subset_scores(task, logits, labels)


def test_file_hash_store_of_another_schema_hashes_the_files_anew(tmp_path, capsys):
    db = sqlite3.connect(tmp_path / STORE_FILE)
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, other INTEGER)")
    db.commit()
    db.close()
    data = tmp_path / "a.bin"
    data.write_bytes(b"some bytes")
    store = open_store(tmp_path)
    assert store is not None
    try:
        ((size, digest),) = file_hashes([data], store)
    finally:
        store.close()
    assert (size, digest) == (10, hashlib.sha256(b"some bytes").hexdigest())
    assert "cannot read the file-hash store" in capsys.readouterr().err
