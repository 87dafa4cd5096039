"""The CLI end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(args: list[str], tmp_path: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLIP_BENCH_CACHE": str(tmp_path / "cache"), "CLIP_BENCH_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "clip_bench", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_zeroshot_json_prints_exactly_the_rows(tmp_path):
    proc = run(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--format", "json", "--workers", "0",
                "--output-dir", str(tmp_path / "out")], tmp_path)
    rows = json.loads(proc.stdout)  # stdout is the JSON and nothing else
    assert {r["metric"] for r in rows} == {"top1", "top5", "mean_per_class_recall"}
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["value"] >= 85 and top1["n"] == 360
    stored = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert stored == rows
    board = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    # the report's schema: the older columns first, then the published averages (none here), then the tasks
    assert board[0] == ("model,pretrained,protocol,mean_clip27,n_clip27,mean_shifts,n_shifts,mean_openclip35,"
                        "n_openclip35,mean_datacomp38,n_datacomp38,mean_datacomp_shifts,n_datacomp_shifts,"
                        "mean_datacomp_vtab,n_datacomp_vtab,mean_datacomp_retrieval,n_datacomp_retrieval,digits")
    assert board[1].startswith("tiny-clip-digits,builtin,zeroshot,,0,,0,,0,,0,,0,,0,,0,")
    assert float(board[1].split(",")[17]) == pytest.approx(top1["value"], abs=0.01)


def test_table_output_and_quiet(tmp_path):
    proc = run(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--quiet", "--workers", "0",
                "--output-dir", "out"], tmp_path)
    assert "digits" in proc.stdout and "top1 *" in proc.stdout
    assert "img/s" not in proc.stderr  # no progress bar with --quiet
    again = run(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--workers", "0", "--output-dir",
                 "out"], tmp_path)
    assert again.stdout.splitlines()[2] == proc.stdout.splitlines()[2]


def test_version_and_module_entry(tmp_path):
    proc = run(["--version"], tmp_path)
    assert proc.stdout.startswith("clip-bench ")


def test_tasks_and_models_list(tmp_path):
    tasks = run(["tasks"], tmp_path).stdout
    assert "digits" in tasks and "accuracy" in tasks
    models = run(["models", "--filter", "ViT-B-32"], tmp_path).stdout
    assert "tiny-clip-digits" not in models and "laion2b_s34b_b79k" in models and "ViT-B/32" in models


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["zeroshot", "--model", "ViT-B-23", "--task", "digits"], "unknown model 'ViT-B-23'. Did you mean: ViT-B-32"),
        (["zeroshot", "--model", "tiny-clip-digits", "--task", "digitz"],
         "unknown task 'digitz'. Did you mean: digits"),
        (["zeroshot", "--model", "tiny-clip-digits", "--pretrained", "/nope/w.safetensors", "--task", "digits"],
         "checkpoint file /nope/w.safetensors does not exist"),
    ],
)
def test_user_errors_are_one_clear_line(tmp_path, args, expected):
    proc = run(args, tmp_path, check=False)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_root_names_the_path(tmp_path):
    task = tmp_path / "folder_task.yaml"
    task.write_text(
        "name: folder_task\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
        "sources:\n  local:\n    loader: imagefolder\n    path: my_digits\n"
        "    download: put images in <root>/test/<class>/\n"
    )
    proc = run(["zeroshot", "--model", "tiny-clip-digits", "--task", str(task), "--data-root", str(tmp_path / "d")],
               tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path / "d" / "my_digits" / "test") in proc.stderr
    assert "put images in" in proc.stderr


def test_export_datacomp_writes_eval_results_jsonl(tmp_path):
    from clip_bench.results.rows import append_rows, make_row

    rows = [make_row(model="my-clip", pretrained="run1", task=t, protocol="zeroshot", metric=m, value=v, is_main=True)
            for t, m, v in (("datacomp_voc2007", "top1", 76.4), ("voc2007", "map_11point", 83.1))]
    append_rows(tmp_path / "results", rows)
    proc = run(["export", "--format", "datacomp", "--results", "results", "--out", "dc.jsonl"], tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "dc.jsonl").read_text().splitlines()]
    assert lines == [{"key": "voc2007", "dataset": "Pascal VOC 2007", "metrics": {"acc1": pytest.approx(0.764),
                                                                               "main_metric": pytest.approx(0.764)}}]
    assert "1 of 38 DataComp tasks written to dc.jsonl" in proc.stdout and "datacomp_imagenet1k" in proc.stdout
    bad = run(["export", "--results", "results", "--model", "nobody"], tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "my-clip (run1)" in bad.stderr
