"""Rows are right or refused: class-name counts, non-finite values, torn lines and lines that are not rows,
unwritable folders, bad images."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import write_digit_folder

from clip_bench import zeroshot
from clip_bench.cli.app import main
from clip_bench.config import ExtractConfig
from clip_bench.results.leaderboard import protocol_table
from clip_bench.results.rows import append_rows, make_row, read_rows
from clip_bench.util.errors import ClipBenchError


def _names(tmp_path: Path, n: int) -> str:
    path = tmp_path / f"names{n}.json"
    path.write_text(json.dumps([f"digit {i}" for i in range(n)]))
    return str(path)


@pytest.mark.parametrize(("n", "limit"), [(11, None), (9, 4)])
def test_class_name_count_must_match_the_task(tmp_path, eval_config, n, limit):
    with pytest.raises(ClipBenchError, match=rf"gives {n} class names but task 'digits' has 10 classes"):
        zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", classnames=_names(tmp_path, n), limit=limit)


def test_class_name_count_error_exits_2(tmp_path, capsys):
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--classnames", _names(tmp_path, 11),
                 "--cache-dir", str(tmp_path / "c"), "--output-dir", str(tmp_path / "o"), "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "11 class names" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_non_finite_rows_are_refused(tmp_path):
    with pytest.raises(ClipBenchError, match="metric top1 of model M on task t .* nan"):
        make_row(model="M", task="t", protocol="zeroshot", metric="top1", value=float("nan"))
    row = make_row(model="M", task="t", protocol="fewshot_k1", metric="top1", value=50.0, std=float("nan"))
    with pytest.raises(ClipBenchError, match="non-finite fields \\(std\\)"):
        append_rows(tmp_path, [make_row(model="M", task="t", protocol="zeroshot", metric="top1", value=1.0), row])
    assert not (tmp_path / "results.jsonl").exists()  # nothing of the refused call was written


def test_torn_line_is_reported_once_and_never_merges(tmp_path, capsys):
    append_rows(tmp_path, [make_row(model="A", value=1.0)])
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"model": "B", "val')  # a writer killed mid-row
    append_rows(tmp_path, [make_row(model="C", value=2.0), make_row(model="D", value=3.0)])
    assert capsys.readouterr().err.count("torn line") == 1
    append_rows(tmp_path, [make_row(model="E", value=4.0)])
    assert "torn line" not in capsys.readouterr().err
    assert [r["model"] for r in read_rows(tmp_path)] == ["A", "C", "D", "E"]


def test_output_dir_that_cannot_be_written_fails_before_any_work(tmp_path, eval_config, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    import clip_bench.protocols.zeroshot as zeroshot_protocol

    monkeypatch.setattr(zeroshot_protocol, "get_features", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ClipBenchError, match=rf"cannot write results to {blocker}/out/results.jsonl"):
        zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=blocker / "out")


def test_full_output_dir_prints_the_rows_and_fails(tmp_path, eval_config, monkeypatch, capsys):
    import clip_bench.results.rows as results

    real = os.fsync

    def full(fd):  # only the results file is on a full disk
        if os.readlink(f"/proc/self/fd/{fd}").endswith("results.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(ClipBenchError, match=r"cannot write results to .*results.jsonl \(No space left on device\)"):
        zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", limit=20)
    err = capsys.readouterr().err
    dumped = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [r["metric"] for r in dumped] == ["top1", "top5", "mean_per_class_recall"]


def test_cache_dir_that_cannot_be_written_is_a_clear_error(tmp_path, eval_config):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ClipBenchError, match=rf"cannot write the feature cache at {blocker}/features/\w+"):
        zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", cache_dir=blocker, limit=10)


def test_full_cache_keeps_finished_shards(tmp_path, eval_config, monkeypatch):
    import clip_bench.cache.features as features

    real, calls = features.save_npy_atomic, []

    def fills_up(path, arr):
        calls.append(path)
        if len(calls) > 4:  # two shards fit, the third does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, arr)

    monkeypatch.setattr(features, "save_npy_atomic", fills_up)
    cfg = dict(device="cpu", output_dir=None, extract=ExtractConfig(workers=0, quiet=True, shard_size=50))
    with pytest.raises(ClipBenchError, match=r"No space left on device.*Finished shards are kept"):
        zeroshot("tiny-clip-digits", "digits", eval_config, **cfg)
    assert len(list(eval_config.cache_dir.glob("features/*/part-*.json"))) == 2
    monkeypatch.setattr(features, "save_npy_atomic", real)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, **cfg)
    assert rows[0]["value"] == pytest.approx(91.67, abs=0.005)


def _bomb_task(tmp_path: Path, data_root: Path) -> str:
    from PIL import Image

    write_digit_folder(data_root / "dg" / "test", per_class=2)
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(data_root / "dg" / "test" / "3" / "001.png")
    task = tmp_path / "dg.yaml"
    task.write_text("name: dg\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  local: {loader: imagefolder, path: dg}\n")
    return str(task)


def test_decompression_bomb_names_the_file_and_can_be_skipped(tmp_path, eval_config, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # the 200x200 image is over twice the limit
    task = _bomb_task(tmp_path, eval_config.data_root)
    eval_config.extract = ExtractConfig(workers=0, quiet=True)
    with pytest.raises(ClipBenchError, match=r"cannot read image .*dg/test/3/001\.png.*decompression bomb"):
        zeroshot("tiny-clip-digits", task, eval_config, device="cpu")
    eval_config.extract = ExtractConfig(workers=0, quiet=True, skip_bad_images=True)
    rows = zeroshot("tiny-clip-digits", task, eval_config, device="cpu")
    assert rows[0]["n"] == 19 and rows[0]["extra"]["skipped_images"] == 1 and rows[0]["standard"] is False


def test_results_file_never_holds_nan(eval_config):
    zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", limit=10)
    text = (eval_config.output_dir / "results.jsonl").read_text()
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in results.jsonl"))
    assert os.path.getsize(eval_config.output_dir / "results.jsonl") > 0


def test_reading_results_while_another_run_creates_the_output_directory(tmp_path, monkeypatch):
    """Two sweeps sharing --output-dir: one saw the directory missing (is_dir False), the other created
    it, and the first then read the directory as a results file: "cannot read out (Is a directory)"."""
    from clip_bench.results.rows import read_rows

    out = tmp_path / "out"
    assert read_rows(out) == []  # not there yet
    out.mkdir()
    real_is_dir = Path.is_dir
    monkeypatch.setattr(Path, "is_dir",
                        lambda self: False if self == out else real_is_dir(self))  # checked a moment earlier
    assert read_rows(out) == []
    monkeypatch.undo()
    (out / "results.jsonl").write_text("")
    assert read_rows(out) == [] and read_rows(out / "results.jsonl") == []


def _row(**kw):
    base = dict(model="M", pretrained="w", task="digits", protocol="zeroshot", metric="top1", is_main=True,
                subset=None, standard=True, date="2024-01-01T00:00:00+00:00", value=50.0)
    return make_row(**{**base, **kw})


def test_results_lines_that_are_not_rows_never_reach_a_table(tmp_path, capsys):
    append_rows(tmp_path, [_row(value=91.5)])
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('[1, 2, 3]\n"text"\n{"model": null, "value": 1}\n')
        good = json.loads(json.dumps(_row(value=10.0)))
        for bad_value in ("NaN", '"high"', "true", "Infinity"):
            line = json.dumps({**good, "date": "2099-01-01T00:00:00+00:00"})
            fh.write(re.sub(r'"value": [^,}]+', f'"value": {bad_value}', line) + "\n")
    rows = read_rows(tmp_path)
    assert [r["value"] for r in rows] == [91.5]
    err = capsys.readouterr().err
    assert err.count("skipped 7 line(s) that are not result rows") == 1
    assert protocol_table(rows)["digits"].tolist() == [91.5]
    read_rows(tmp_path)
    assert "skipped" not in capsys.readouterr().err  # said once per file


def test_compare_on_results_with_odd_rows_is_one_line(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text('{"model": null, "value": 1}\n[1]\n' + json.dumps(_row(model="x")) + "\n")
    assert main(["compare", "x", "y", "--results", str(tmp_path)]) == 2  # was: TypeError traceback
    assert "no result rows for model 'y'" in capsys.readouterr().err


def test_classname_count_error_shows_the_task_names_instead_of_a_command_that_does_not():
    from clip_bench.protocols.zeroshot import _check_classname_count
    from clip_bench.tasks.catalog import get_task

    with pytest.raises(ClipBenchError) as err:
        _check_classname_count(get_task("digits"), 9, "cn.txt")
    assert "its own names: '0', '1', '2', ..., '9'" in str(err.value)
    assert "clip-bench tasks" not in str(err.value)  # `clip-bench tasks digits` shows no class names
