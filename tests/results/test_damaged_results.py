"""Damaged or unwritable results: torn lines anywhere are counted with their line numbers, write failures of
outcomes and of the report are one line with nothing computed lost, damaged outcomes are rebuilt or skipped,
ids read from a results file never name a path outside it, and the robustness figure draws 0 % and 100 %."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from clip_bench import zeroshot
from clip_bench.cli.app import main
from clip_bench.metrics.classification import all_metrics
from clip_bench.report import build_report
from clip_bench.report.compare import compare
from clip_bench.results.outcomes import OutcomeError, attach_outcomes, load, load_for_row, outcome_relpath
from clip_bench.results.rows import append_rows, make_row, read_rows
from clip_bench.util.errors import ClipBenchError

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _row(model: str, task: str, value: float, **kw) -> dict:
    return make_row(model=model, pretrained="tag", model_fingerprint=model, task=task, task_version=1, source="s",
                    split="test", protocol="zeroshot", metric="top1", value=value, is_main=True,
                    date="2026-01-01", **kw)


def _write_model(out: Path, model: str, task: str, right: np.ndarray, labels: np.ndarray) -> dict:
    """The rows (with outcomes files) of a model whose top-1 prediction is right where `right` says."""
    scores = np.zeros((labels.size, 10))
    scores[np.arange(labels.size), np.where(right, labels, (labels + 1) % 10)] = 1.0
    rows = [make_row(model=model, pretrained="tag", model_fingerprint=model, task=task, task_version=1,
                     source="s", split="test", protocol="zeroshot", metric=m, value=v, is_main=(m == "top1"),
                     n=int(labels.size), date="2026-01-01") for m, v in all_metrics(scores, labels, "accuracy").items()]
    attach_outcomes(rows, scores, labels, out)
    append_rows(out, rows)
    return next(r for r in rows if r["is_main"])


@pytest.fixture
def two_models(tmp_path: Path) -> Path:
    """Models `a` (90 % top-1) and `b` (60 %) on tasks t1 and t2, with their outcomes files."""
    rng = np.random.default_rng(0)
    out = tmp_path / "results"
    for task in ("t1", "t2"):
        labels = rng.integers(0, 10, 300)
        _write_model(out, "a", task, rng.random(300) < 0.9, labels)
        _write_model(out, "b", task, rng.random(300) < 0.6, labels)
    return out


def _main_row(results: Path, model: str, task: str) -> dict:
    return next(r for r in read_rows(results) if (r["model"], r["task"], r["is_main"]) == (model, task, True))


# --- torn lines ----------------------------------------------------------------------------------------------


def test_a_torn_line_in_the_middle_is_reported_with_its_line_number(tmp_path, capsys):
    append_rows(tmp_path, [_row("A", "digits", 1.0)])
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"model": "B", "val\n')  # a row torn in the middle of the file, then more rows after it
    append_rows(tmp_path, [_row("C", "digits", 2.0), _row("D", "digits", 3.0)])
    assert [r["model"] for r in read_rows(tmp_path)] == ["A", "C", "D"]
    err = capsys.readouterr().err
    assert "skipped 1 line(s) that are not result rows (line 2: not JSON (a torn line" in err
    summary = build_report(tmp_path, tmp_path / "report", quiet=True)
    assert summary.lines[0].startswith("read 3 rows from 1 results file: 3 models (1 malformed rows skipped: "
                                       "results.jsonl line 2: not JSON")
    assert "results.jsonl line 2: not JSON" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


# --- outcomes and report files that cannot be written --------------------------------------------------------


def test_an_outcomes_folder_that_is_a_file_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import clip_bench.protocols.zeroshot as zeroshot_protocol

    out = tmp_path / "out"
    out.mkdir()
    (out / "outcomes").write_text("a file where the outcomes folder belongs")
    monkeypatch.setattr(zeroshot_protocol, "get_features", lambda *a, **k: pytest.fail("work started"))
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--cache-dir", str(tmp_path / "c"),
                 "--data-root", str(tmp_path / "data"), "--output-dir", str(out), "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot write per-sample outcomes to {out / 'outcomes'}" in err


def test_a_full_disk_while_writing_outcomes_keeps_every_row(eval_config, tiny_model, monkeypatch):
    import clip_bench.results.outcomes as outcomes

    def full(*_a, **_k):
        raise ENOSPC

    monkeypatch.setattr(outcomes, "save", full)
    with pytest.raises(ClipBenchError, match=r"cannot write per-sample outcomes to .*outcomes/[0-9a-f]{24}\.npz "
                                             r"\(No space left on device\) \(and 2 more\); the rows are in"):
        zeroshot(tiny_model, "digits", eval_config, limit=20)
    rows = read_rows(eval_config.output_dir)  # every computed row was written, with its interval
    assert [r["metric"] for r in rows] == ["top1", "top5", "mean_per_class_recall"]
    assert all(r["ci_low"] is not None and r["outcomes"] is None for r in rows)


def test_a_report_out_that_is_a_file_is_one_line(two_models, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["report", "--results", str(two_models), "--out", str(blocker), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"cannot write the report to {blocker}" in err


def test_a_full_disk_while_writing_the_report_prints_what_was_computed(two_models, tmp_path, capsys, monkeypatch):
    import clip_bench.report.summary as api

    real = api.write_text_atomic

    def full(path, text):
        if Path(path).name == "report.html":
            raise ENOSPC
        real(path, text)

    monkeypatch.setattr(api, "write_text_atomic", full)
    assert main(["report", "--results", str(two_models), "--out", str(tmp_path / "report"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "leaderboard zero-shot: 2 models x 2 tasks" in captured.out  # the lines computed before the failure
    assert len(captured.err.strip().splitlines()) == 1
    assert "cannot write the report file" in captured.err and "No space left on device" in captured.err


# --- damaged outcomes files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_outcomes_skip_that_comparison_with_a_reason(two_models, tmp_path, damage):
    path = two_models / outcome_relpath(_main_row(two_models, "a", "t1"))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] if damage == "truncated" else b"")
    c = compare("a", "b", two_models)
    assert [t.task for t in c.tasks] == ["t2"] and c.wins == 1
    assert len(c.refused) == 1 and c.refused[0].startswith(f"t1: skipped, outcomes file {path} is damaged")
    with pytest.raises(ClipBenchError, match="is damaged"):
        compare("a", "b", two_models, tasks=["t1"])
    build_report(two_models, tmp_path / "report", quiet=True)  # the report keeps its other comparisons
    assert "t1: skipped" in (tmp_path / "report" / "comparisons.csv").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, tiny_model):
    """Zero-shot rows of the tiny CLIP on 50 digits, and of a second checkpoint ("twin") with the same weights
    in another file (another fingerprint, the same numbers)."""
    from safetensors.torch import load_file, save_file

    from clip_bench.config import EvalConfig, ExtractConfig
    from clip_bench.util.resources import assets_dir

    tmp = tmp_path_factory.mktemp("digits")
    cfg = EvalConfig(data_root=tmp / "data", cache_dir=tmp / "cache", output_dir=tmp / "root" / "results",
                     extract=ExtractConfig(batch_size=128, workers=0, quiet=True))
    rows = zeroshot(tiny_model, "digits", cfg, limit=50)
    twin = tmp / "twin"
    twin.mkdir()
    (twin / "tiny.json").write_bytes((assets_dir() / "tiny_clip" / "tiny-clip-digits.json").read_bytes())
    state = load_file(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors"))
    save_file(state, str(twin / "twin.safetensors"), metadata={"copy": "twin"})  # other bytes, same weights
    twin_rows = zeroshot(str(twin / "tiny.json"), "digits", cfg, pretrained=str(twin / "twin.safetensors"),
                         device="cpu", limit=50, label="twin")
    assert twin_rows[0]["model_fingerprint"] != rows[0]["model_fingerprint"]
    return cfg, rows, twin_rows


def test_damaged_outcomes_are_rebuilt_from_the_caches(digits_run, capsys):
    cfg, rows, twin_rows = digits_run
    top1 = next(r for r in rows if r["metric"] == "top1")
    path = cfg.output_dir / top1["outcomes"]
    good = path.read_bytes()
    path.write_bytes(good[:40])
    c = compare("tiny-clip-digits", "twin", cfg.output_dir, cache_dir=cfg.cache_dir, data_root=cfg.data_root)
    assert [t.task for t in c.tasks] == ["digits"] and c.tasks[0].diff == 0.0 and not c.refused
    assert "is damaged" in capsys.readouterr().err  # said, then rebuilt from the feature and text caches
    assert load_for_row(top1, cfg.output_dir).value == pytest.approx(top1["value"])
    assert load(path).n == 50


def test_rebuilt_outcomes_that_cannot_be_stored_are_compared_from_memory(digits_run, tmp_path, capsys):
    cfg, rows, twin_rows = digits_run
    folder = tmp_path / "results"
    append_rows(folder, [{**r, "outcomes": None} for r in [*rows, *twin_rows]])
    (folder / "outcomes").write_text("a file where the outcomes folder belongs")
    c = compare("tiny-clip-digits", "twin", folder, cache_dir=cfg.cache_dir, data_root=cfg.data_root)
    assert [t.task for t in c.tasks] == ["digits"] and c.tasks[0].n == 50 and c.tasks[0].diff == 0.0
    assert "using the rebuilt outcomes without storing them" in capsys.readouterr().err


# --- ids read from a results file ----------------------------------------------------------------------------


def test_a_result_id_that_is_a_path_names_no_file(digits_run, tmp_path):
    cfg, rows, twin_rows = digits_run
    top1 = {**next(r for r in rows if r["metric"] == "top1"), "model": "evil", "outcomes": None,
            "result_id": "../../../x/A"}
    evil = tmp_path / "evil" / "results"
    append_rows(evil, [top1, *twin_rows])
    with pytest.raises(ClipBenchError, match=r"result_id '\.\./\.\./\.\./x/A' is not a result id"):
        compare("evil", "twin", evil, tasks=["digits"], cache_dir=cfg.cache_dir, data_root=cfg.data_root)
    assert not list(tmp_path.rglob("A.npz"))  # it would have been written to tmp_path/x/A.npz
    from clip_bench.protocols.replay import backfill

    valid_path = next(r for r in rows if r["metric"] == "top1")["outcomes"]
    with pytest.raises(ClipBenchError, match=r"^the top1 row of evil on digits: its result_id '\.\./"):
        backfill({**top1, "outcomes": valid_path}, evil, cfg.cache_dir, cfg.data_root)
    assert not list(tmp_path.rglob("A.npz")) and not (evil / valid_path).exists()
    with pytest.raises(OutcomeError, match="is not an outcomes file"):
        load_for_row({**top1, "outcomes": "../../x.npz"}, evil)
    with pytest.raises(OutcomeError, match="is not an outcomes file"):
        load_for_row({**rows[0], "outcomes": "/etc/hostname"}, evil)


def test_a_row_id_that_is_a_path_is_one_line_in_the_cli(two_models, capsys):
    row = json.loads(json.dumps(_main_row(two_models, "a", "t1")))
    with open(two_models / "results.jsonl", "a") as fh:
        fh.write(json.dumps({**row, "model": "c", "outcomes": "outcomes/../../../escape.npz"}) + "\n")
    assert main(["compare", "c", "b", "--results", str(two_models), "--task", "t1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not an outcomes file" in err


# --- the robustness figure at 0 % and 100 % ------------------------------------------------------------------


@pytest.mark.parametrize(("imagenet", "shift"), [(100.0, 60.0), (70.0, 0.0)])
def test_accuracy_of_0_or_100_percent_is_drawn_at_the_edge(tmp_path, imagenet, shift):
    rows = [_row("M", "imagenet", imagenet, ci_low=max(imagenet - 1, 0), ci_high=min(imagenet + 1, 100)),
            _row("M", "imagenetv2", shift, ci_low=max(shift - 1, 0), ci_high=min(shift + 1, 100))]
    append_rows(tmp_path / "results", rows)
    summary = build_report(tmp_path / "results", tmp_path / "report", quiet=True)
    assert (tmp_path / "report" / "plots" / "effective_robustness.png").is_file()
    assert any("drawn at the edge of the ImageNetV2 panel" in n for n in summary.notes)
    fig = summary.figures["effective_robustness"]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.endswith("(at edge)") for t in texts)


def test_a_failing_report_part_is_one_line_and_the_others_are_kept(two_models, tmp_path, monkeypatch):
    import clip_bench.report.build as api

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "robustness_section", broken)
    summary = build_report(two_models, tmp_path / "report", quiet=True)
    assert "skipped effective robustness: it failed (RuntimeError: boom); the other parts are complete" in summary.lines
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "comparisons.csv").is_file()
