"""Two runs sharing --cache-dir and --output-dir both finish with the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from slow_child import slow_encode_script

from clip_bench.results.rows import read_rows

CHILD = slow_encode_script("from clip_bench.cli.app import main\nraise SystemExit(main(sys.argv[1:]))", sleep="0.05")


def _run_two(tmp_path, args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "out"), "--workers", "0",
              "--batch-size", "16", "--shard-size", "32", "--quiet"]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, *args, *common], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "FileNotFoundError" not in err
    entries = list((tmp_path / "cache" / "features").iterdir())
    assert len(entries) == 1
    assert sorted(p.name for p in entries[0].iterdir() if not p.name.startswith(".lock")) == [
        "features.npy", "labels.npy", "meta.json"]  # no orphan part or temporary file
    return outs


@pytest.mark.slow
def test_two_identical_runs_share_a_cache(tmp_path):
    outs = _run_two(tmp_path, ["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--format", "json"])
    a, b = (json.loads(out) for out, _ in outs)
    assert [(r["metric"], r["value"]) for r in a] == [(r["metric"], r["value"]) for r in b]
    assert a[0]["value"] == pytest.approx(91.67, abs=0.005)
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 6 and {r["result_id"] for r in rows} == {r["result_id"] for r in a}


@pytest.mark.slow
def test_two_sweeps_share_a_cache_and_results(tmp_path):
    (tmp_path / "m.txt").write_text("tiny-clip-digits\n")
    _run_two(tmp_path, ["sweep", "--models", str(tmp_path / "m.txt"), "--tasks", "digits"])
    main = [r for r in read_rows(tmp_path / "out") if r["is_main"]]
    assert main and {round(r["value"], 2) for r in main} == {91.67}
