"""Result rows carry their provenance; the leaderboard is rebuilt from every row."""

from __future__ import annotations

import csv
import json

import open_clip
import torch

import clip_bench
from clip_bench import zeroshot
from clip_bench.results.leaderboard import write_leaderboard
from clip_bench.results.rows import ROW_FIELDS, make_row, read_rows


def test_row_contents(eval_config):
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu")
    for r in rows:
        assert set(ROW_FIELDS) <= set(r)
        assert r["model"] == "tiny-clip-digits" and r["pretrained"] == "builtin"
        assert r["task"] == "digits" and r["task_version"] == 1 and r["split"] == "test"
        assert r["protocol"] == "zeroshot" and r["n"] == 360 and r["source"] == "sklearn"
        assert len(r["templates_hash"]) == 16 and len(r["classnames_hash"]) == 16
        assert r["clip_bench_version"] == clip_bench.__version__
        assert r["torch_version"] == torch.__version__ and r["open_clip_version"] == open_clip.__version__
        assert r["device"] == "cpu" and r["precision"] == "fp32" and r["date"].startswith("20")
    assert [r["is_main"] for r in rows] == [r["metric"] == "top1" for r in rows]
    assert read_rows(eval_config.output_dir) == json.loads(json.dumps(rows))


def test_leaderboard_one_line_per_model_latest_wins(tmp_path):
    from clip_bench.results.rows import append_rows

    def row(model, task, value, date):
        return make_row(model=model, pretrained="x", task=task, protocol="zeroshot", metric="top1", value=value,
                        is_main=True, date=date)

    append_rows(tmp_path, [row("A", "t1", 10.0, "2026-01-01"), row("A", "t2", 20.0, "2026-01-01"),
                           row("B", "t1", 30.0, "2026-01-01"), row("A", "t1", 11.0, "2026-02-01")])
    append_rows(tmp_path, [make_row(model="A", pretrained="x", task="t1", protocol="zeroshot", metric="top5",
                                    value=99.0, is_main=False, date="2026-03-01")])
    with open(write_leaderboard(tmp_path)) as fh:
        table = list(csv.DictReader(fh))
    assert [(t["model"], t["t1"], t["t2"]) for t in table] == [("A", "11.00", "20.00"), ("B", "30.00", "")]


def _board_row(**kw):
    from clip_bench.results.rows import make_row

    base = dict(model="M", pretrained="w", task="digits", protocol="zeroshot", metric="top1", is_main=True,
                subset=None, standard=True, precision="fp32", date="2026-01-01T00:00:00+00:00", value=91.67)
    return make_row(**{**base, **kw})


def test_a_bf16_run_is_shown_apart_not_in_place_of_the_fp32_result(tmp_path):
    """Precision changes a number, so a later bf16 run of the same model must not replace
    the fp32 value on the leaderboard (nor be averaged into its means): it is its own, labelled line.
    Probe rows on non-default features likewise."""
    from clip_bench.results.leaderboard import leaderboard_table, write_leaderboard
    from clip_bench.results.rows import append_rows, read_rows

    append_rows(tmp_path, [
        _board_row(),
        _board_row(precision="bf16", value=90.00, date="2026-02-01T00:00:00+00:00"),
        _board_row(protocol="linear_probe", feature_kind="pre-proj", features_requested="auto", value=94.0),
        _board_row(protocol="linear_probe", feature_kind="embed", features_requested="embed", value=93.0,
                   date="2026-02-01T00:00:00+00:00"),
    ])
    rows = read_rows(tmp_path)
    table = leaderboard_table(rows)
    got = {(r["model"], r["protocol"]): r["digits"] for _, r in table.iterrows()}
    assert got == {("M", "zeroshot"): 91.67, ("M [bf16]", "zeroshot"): 90.0,
                   ("M", "linear_probe"): 94.0, ("M [features=embed]", "linear_probe"): 93.0}
    assert "M [bf16]," in write_leaderboard(tmp_path).read_text()
