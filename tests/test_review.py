"""Regressions a new user meets: read-only caches, odd result lines, skipped images across shards, sweep's JSON
output, the README's examples, table columns, the models filter, error messages that point to the right place."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest

from clip_bench import text_cache
from clip_bench.cli import main
from clip_bench.errors import ClipBenchError
from clip_bench.report.leaderboard import protocol_table
from clip_bench.results import append_rows, make_row, read_rows

ROOT = Path(__file__).resolve().parents[1]


def _unit_rows(n: int, d: int = 8) -> np.ndarray:
    arr = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def _read_only(monkeypatch):
    """Every lock or write in the text cache fails as on a read-only mount (EROFS, also for root)."""

    def refuse(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(text_cache, "file_lock", refuse)
    monkeypatch.setattr(text_cache, "save_npy_atomic", refuse)


def test_read_only_text_cache_is_read_and_a_write_is_one_clear_error(tmp_path, monkeypatch):
    cache = text_cache.TextEmbeddingCache(tmp_path, "fp", "tok")
    cache.add(["a", "b"], _unit_rows(2))
    _read_only(monkeypatch)
    found, missing = text_cache.TextEmbeddingCache(tmp_path, "fp", "tok").lookup(["a", "b", "c"])
    assert sorted(found) == ["a", "b"] and missing == ["c"]  # was: OSError traceback (only PermissionError caught)
    with pytest.raises(ClipBenchError, match=r"cannot write the text-embedding cache at .*Read-only file system"):
        text_cache.TextEmbeddingCache(tmp_path, "fp", "tok").add(["c"], _unit_rows(1))


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


def test_readme_python_imports_exist():
    """Every `from clip_bench... import X` the README and docs/ show imports (the compare example used a moved
    name)."""
    readme = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    lines = sorted(set(re.findall(r"^\s*(from clip_bench[\w.]* import [\w, ]+|import clip_bench[\w.]*)\s*$", readme,
                                  flags=re.M)))
    assert lines
    exec("\n".join(lines), {})


def test_skipped_image_in_a_batch_that_straddles_two_shards(tmp_path, eval_config):
    """A batch holding the end of one shard and a bad image of the next one: the skip belongs to the next shard.

    Before, the skip was counted in the shard being closed, whose sidecar then failed its own check and the
    merge said "changed or vanished while merging" on every run.
    """
    from dataclasses import replace

    from fixture_writers import write_digit_folder

    from clip_bench import zeroshot
    from clip_bench.features import ExtractConfig

    write_digit_folder(eval_config.data_root / "dg" / "test", per_class=3)
    (eval_config.data_root / "dg" / "test" / "4" / "001.png").write_bytes(b"\x89PNG not really")  # index 13
    task = tmp_path / "dg.yaml"
    task.write_text("name: dg\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  local: {loader: imagefolder, path: dg}\n")
    extract = ExtractConfig(batch_size=8, workers=0, shard_size=10, quiet=True, skip_bad_images=True)
    rows = zeroshot("tiny-clip-digits", str(task), replace(eval_config, extract=extract), device="cpu")
    assert rows[0]["n"] == 29 and rows[0]["extra"]["skipped_images"] == 1
    whole = zeroshot("tiny-clip-digits", str(task), replace(eval_config, cache_dir=None, extract=replace(
        extract, batch_size=64, shard_size=64)), device="cpu")
    assert rows[0]["value"] == whole[0]["value"]


def test_sweep_format_json_prints_only_the_rows(tmp_path, capsys):
    """`--format json` is among sweep's options: stdout is exactly the rows of the jobs run (was: ignored)."""
    models = tmp_path / "models.txt"
    models.write_text("tiny-clip-digits\n")
    args = ["sweep", "--models", str(models), "--tasks", "digits", "--cache-dir", str(tmp_path / "c"),
            "--output-dir", str(tmp_path / "o"), "--workers", "0", "--device", "cpu", "--format", "json"]
    assert main(args) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [round(r["value"], 2) for r in rows if r["is_main"]] == [91.67]
    assert "1 ran" in out.err
    assert main(args) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == [] and "1 already in the results" in out.err


def _readme_console(command: str) -> str:
    """The output the README shows under `$ <command>` in a console block."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split(f"$ {command}\n", 1)[1]
    return block.split("```", 1)[0]


def test_readme_quickstart_table_is_what_zeroshot_prints(eval_config, capsys):
    from dataclasses import replace

    from clip_bench import zeroshot
    from clip_bench.cli import print_rows

    rows = zeroshot("tiny-clip-digits", "digits", replace(eval_config, output_dir=None), device="cpu")
    print_rows(rows, "table")
    assert capsys.readouterr().out == _readme_console("clip-bench zeroshot --model tiny-clip-digits --task digits")


def test_rows_without_intervals_print_no_empty_ci_column(capsys):
    """Retrieval rows carry no interval: the table has no blank '95% CI' column (as the README shows)."""
    from clip_bench.cli import print_rows

    rows = [make_row(model="tiny-clip-digits", pretrained="builtin", task="flickr30k", protocol="retrieval",
                     metric=m, value=v, is_main=main, n=n)
            for m, v, main, n in (("text_retrieval_recall@1", 16.0, False, 50), ("mean_recall", 66.18, True, 149))]
    print_rows(rows, "table")
    out = capsys.readouterr().out
    assert "95% CI" not in out and out.splitlines()[-1] == "* main metric of the task; values in percent"
    assert out.splitlines()[2].split() == ["tiny-clip-digits", "(builtin)", "flickr30k", "retrieval",
                                           "text_retrieval_recall@1", "16.00", "50"]


def test_classname_count_error_shows_the_task_names_instead_of_a_command_that_does_not():
    from clip_bench.evaluate import _check_classname_count
    from clip_bench.tasks import get_task

    with pytest.raises(ClipBenchError) as err:
        _check_classname_count(get_task("digits"), 9, "cn.txt")
    assert "its own names: '0', '1', '2', ..., '9'" in str(err.value)
    assert "clip-bench tasks" not in str(err.value)  # `clip-bench tasks digits` shows no class names


def test_models_filter_applies_to_every_section(capsys):
    assert main(["models", "--filter", "siglip"]) == 0
    out = capsys.readouterr().out
    assert "tiny-clip-digits" not in out and "ViT-B-16-SigLIP" in out  # the built-in model ignored the filter
    assert main(["models", "--filter", "no-such-model-zzz"]) == 2
    assert "no model name or pretrained tag contains 'no-such-model-zzz'" in capsys.readouterr().err
