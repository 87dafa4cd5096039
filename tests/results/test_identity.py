"""Result identity: a subset, override, non-default probe or skipped-image run is never taken for the
standard result."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from clip_bench import zeroshot
from clip_bench.probe import ProbeConfig
from clip_bench.protocols.sweep import ModelEntry, expected_main_row, run_sweep
from clip_bench.results.rows import make_row, read_rows, result_id

TINY = [ModelEntry("tiny-clip-digits")]


def _board(out) -> dict[str, str]:
    with open(out / "leaderboard.csv") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) <= 1
    return lines[0] if lines else {}


def _main(rows):
    (row,) = [r for r in rows if r["is_main"] and not r["subset"]]
    return row


def test_limit_row_never_counts_as_the_full_result(eval_config):
    limited = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", limit=5)
    assert _main(limited)["n"] == 5 and not _main(limited)["standard"]
    assert _board(eval_config.output_dir).get("digits", "") == ""  # nonstandard rows stay off the leaderboard
    counts = run_sweep(TINY, ["digits"], ["zeroshot"], eval_config, device="cpu", echo=lambda _m: None)
    assert counts == {"done_before": 0, "ran": 1, "failed": 0}
    assert _board(eval_config.output_dir)["digits"] == "91.67"
    rows = read_rows(eval_config.output_dir)
    assert sorted((r["standard"], r["n"]) for r in rows if r["is_main"]) == [(False, 5), (True, 360)]
    # a sweep with --limit skips only an identical --limit row
    again = run_sweep(TINY, ["digits"], ["zeroshot"], replace(eval_config, limit=5), device="cpu", echo=lambda _m: None)
    assert again["done_before"] == 1
    other = run_sweep(TINY, ["digits"], ["zeroshot"], replace(eval_config, limit=6), device="cpu", echo=lambda _m: None)
    assert other["ran"] == 1
    full = run_sweep(TINY, ["digits"], ["zeroshot"], eval_config, device="cpu", echo=lambda _m: None)
    assert full["done_before"] == 1
    assert _board(eval_config.output_dir)["digits"] == "91.67"


def test_classnames_override_is_labelled_and_kept_off_the_board(eval_config, tmp_path):
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", classnames=str(names))
    assert not _main(rows)["standard"]
    assert _board(eval_config.output_dir).get("digits", "") == ""
    counts = run_sweep(TINY, ["digits"], ["zeroshot"], eval_config, device="cpu", echo=lambda _m: None)
    assert counts["ran"] == 1 and _board(eval_config.output_dir)["digits"] == "91.67"
    # the same file as the task's own names is the standard evaluation
    own = tmp_path / "own.json"
    own.write_text(json.dumps(list("0123456789")))
    assert zeroshot("tiny-clip-digits", "digits", replace(eval_config, output_dir=None), device="cpu",
                    classnames=str(own))[0]["standard"] is True


@pytest.fixture
def shadow_digits(tmp_path):
    """A user task file named digits (passed by path) that scores the val split instead of test.

    Under CLIP_BENCH_TASKS such a file is an error (tests/tasks/test_schema.py); passed as a path it runs,
    with an identity of its own.
    """
    path = tmp_path / "mytasks" / "digits.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: digits\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [train, val, test]\neval_split: val\n"
        "sources:\n  sklearn:\n    loader: digits\n    args: {size: 32}\n")
    return str(path)


def test_user_task_shadowing_a_builtin_name_gets_its_own_identity(eval_config, shadow_digits):
    rows = zeroshot("tiny-clip-digits", shadow_digits, eval_config, device="cpu")
    row = _main(rows)
    assert row["split"] == "val" and row["standard"] is False
    assert _board(eval_config.output_dir).get("digits", "") == ""
    from clip_bench.models.resolve import ModelHandle

    handle = ModelHandle.of("tiny-clip-digits", device="cpu")
    shadow_id = expected_main_row(handle, shadow_digits, "zeroshot", eval_config)["result_id"]
    assert shadow_id == row["result_id"]


def test_result_id_covers_every_input():
    fields = dict(model_fingerprint="f", task="t", task_version=1, task_hash="h", source="s", source_config="c",
                  split="test", protocol="zeroshot", metric="top1", subset=None, limit=None, classnames_hash="n",
                  templates_hash="p", feature_kind="embed", precision="fp32", device="cpu", value=50.0,
                  date="2026-01-01")
    base = make_row(**fields)
    changes = dict(model_fingerprint="g", task="u", task_version=2, task_hash="i", source="wds", source_config="d",
                   split="val", protocol="linear_probe", metric="top5", subset="imagenet_r", limit=5,
                   classnames_hash="m", templates_hash="q", feature_kind="pre-proj", precision="bf16",
                   solver="sklearn", seed=1, k=4, skipped_images=3, probe_rule="an-older-rule")
    ids = {result_id(base)}
    for key, value in changes.items():
        ids.add(make_row(**{**fields, key: value})["result_id"])
    assert len(ids) == len(changes) + 1
    # what does not change a value does not change the identity
    same = make_row(**{**fields, "value": 1.0, "date": "2027-01-01", "device": "cuda:0", "skipped_images": 0})
    assert same["result_id"] == base["result_id"]
    # below fp32 the device type counts (autocast kernels differ)
    half = {**fields, "precision": "fp16"}
    assert make_row(**half)["result_id"] != make_row(**{**half, "device": "cuda:0"})["result_id"]


def _digits_without_val(tmp_path):
    """The digits task with no val split, so the linear probe holds its validation set out of train."""
    from pathlib import Path

    import clip_bench

    text = (Path(clip_bench.__file__).parent.parent / "tasks" / "digits.yaml").read_text()
    text = text.replace("splits: [train, val, test]", "splits: [train, test]")
    text = text.replace("name: digits", "name: digitsnoval")
    path = tmp_path / "digitsnoval.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_non_default_probe_settings_are_part_of_the_row_identity(eval_config, tmp_path):
    """--val-fraction 0.5 (and any non-default ProbeConfig knob) gave another number under the default
    row's result_id, so the sweep took it for the default measurement. Default rows keep their ids."""
    from clip_bench.models.resolve import ModelHandle
    from clip_bench.protocols.linprobe import fewshot, linprobe
    from clip_bench.protocols.sweep import expected_main_row

    task = _digits_without_val(tmp_path)
    (default,) = linprobe("tiny-clip-digits", task, eval_config, device="cpu")
    (half,) = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=ProbeConfig(val_fraction=0.5))
    assert half["extra"]["n_val"] != default["extra"]["n_val"]
    assert half["result_id"] != default["result_id"]
    # another protocol than the paper's: kept apart from the leaderboard, which shows the default
    assert default["standard"] and not half["standard"]
    handle = ModelHandle.of("tiny-clip-digits", None, "cpu", "fp32")
    assert expected_main_row(handle, task, "linprobe", eval_config)["result_id"] == default["result_id"]
    grid = ProbeConfig(c_min=1e-2, c_max=1e2)
    (narrow,) = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=grid)
    assert narrow["result_id"] != default["result_id"] and not narrow["standard"]
    kw = dict(shots=(2,), seeds=1, with_zeroshot=False, device="cpu")
    plain = [r for r in fewshot("tiny-clip-digits", "digits", eval_config, **kw) if r["extra"].get("seed") == 0]
    prior = [r for r in fewshot("tiny-clip-digits", "digits", eval_config, probe=ProbeConfig(prior_scale=1.0), **kw)
             if r["extra"].get("seed") == 0]
    assert plain[0]["extra"]["C_prior"] != prior[0]["extra"]["C_prior"]
    assert plain[0]["result_id"] != prior[0]["result_id"]
    assert plain[0]["standard"] and not prior[0]["standard"]


@pytest.mark.slow
def test_probe_rows_of_a_run_that_skipped_images_have_their_own_identity(tmp_path, eval_config, monkeypatch):
    """linprobe/fewshot rows never recorded --skip-bad-images: a probe on features with an image left
    out had the clean run's result_id and counted as standard."""
    from dataset_fixtures import write_digit_folder

    from clip_bench.config import ExtractConfig
    from clip_bench.protocols.linprobe import fewshot, linprobe

    root = eval_config.data_root / "dg"
    write_digit_folder(root / "train", per_class=6)
    write_digit_folder(root / "test", per_class=2)
    task = tmp_path / "dg.yaml"
    task.write_text("name: dg\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [train, test]\n"
                    "eval_split: test\nsources:\n  local: {loader: imagefolder, path: dg}\n")
    eval_config.extract = ExtractConfig(workers=0, quiet=True)
    (clean,) = linprobe("tiny-clip-digits", str(task), eval_config, device="cpu")
    clean_k = fewshot("tiny-clip-digits", str(task), eval_config, device="cpu", shots=(2,), seeds=1,
                      with_zeroshot=False)
    (root / "train" / "3" / "001.png").write_bytes(b"not a png")
    eval_config.cache_dir = tmp_path / "cache2"
    eval_config.extract = ExtractConfig(workers=0, quiet=True, skip_bad_images=True)
    (skipped,) = linprobe("tiny-clip-digits", str(task), eval_config, device="cpu")
    assert (skipped["extra"]["n_train"] + skipped["extra"]["n_val"]
            == clean["extra"]["n_train"] + clean["extra"]["n_val"] - 1)
    assert skipped["extra"]["skipped_images"] == 1 and skipped["standard"] is False and clean["standard"] is True
    assert skipped["result_id"] != clean["result_id"]
    skipped_k = fewshot("tiny-clip-digits", str(task), eval_config, device="cpu", shots=(2,), seeds=1,
                        with_zeroshot=False)
    assert {r["result_id"] for r in skipped_k}.isdisjoint(r["result_id"] for r in clean_k)
