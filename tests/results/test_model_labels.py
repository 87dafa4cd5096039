"""Models are their fingerprints: two checkpoints with one file name are two lines everywhere, variants stay
apart in compare, and every table, legend and compare names a model by one short label."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import checkpoint_folder

from clip_bench.cli.app import main
from clip_bench.metrics.classification import all_metrics, main_metric_key
from clip_bench.protocols.sweep import ModelEntry, run_sweep
from clip_bench.report import build_report
from clip_bench.report.compare import compare
from clip_bench.results import fewshot as fs
from clip_bench.results.leaderboard import write_leaderboard
from clip_bench.results.outcomes import attach_outcomes
from clip_bench.results.rows import append_rows, make_row, read_rows
from clip_bench.util.errors import ClipBenchError


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_two_checkpoints_with_one_file_name_are_two_models(tmp_path, eval_config, monkeypatch):
    """The same ``tiny.json``/``epoch_32.safetensors`` text run from two folders (different weights): two
    leaderboard lines, two report lines, few-shot means of each model's own seeds, labels that tell them apart,
    and compare and the sweep never take one for the other."""
    from clip_bench.protocols.zeroshot import zeroshot

    runs = [checkpoint_folder(tmp_path / name, perturb=name == "run2") for name in ("run1", "run2")]
    seeds, zeroshot_values = {}, []
    for i, folder in enumerate(runs):
        monkeypatch.chdir(folder)
        main_row = next(r for r in zeroshot("tiny.json", "digits", eval_config, pretrained="epoch_32.safetensors",
                                            device="cpu") if r["is_main"])
        zeroshot_values.append(main_row["value"])
        # k-shot rows of this checkpoint, as `fewshot` writes them (its probes take a minute; their values do not
        # matter here, only whose they are)
        seeds[folder.name] = [60.0 + 10 * i + s for s in (0, 1)]
        identity = {k: main_row[k] for k in ("model", "pretrained", "model_fingerprint", "task", "task_version",
                                             "source", "split", "precision", "date")}
        append_rows(eval_config.output_dir, [
            make_row(**identity, protocol="fewshot_k2", metric="top1", value=v, is_main=True, n=main_row["n"],
                     feature_kind="pre-proj", features_requested="auto", seed=s, k=2)
            for s, v in enumerate(seeds[folder.name])])
    rows = read_rows(eval_config.output_dir)
    assert {r["model"] for r in rows} == {"tiny.json"} and len({r["model_fingerprint"] for r in rows}) == 2
    assert zeroshot_values[0] != zeroshot_values[1]

    board = [r for r in _csv(write_leaderboard(eval_config.output_dir)) if r["protocol"] == "zeroshot"]
    labels = {(r["model"], r["pretrained"]) for r in board}
    assert len(board) == 2 and len(labels) == 2
    assert sorted(float(r["digits"]) for r in board) == pytest.approx(sorted(zeroshot_values), abs=0.005)
    assert all(m == "tiny.json" and re.fullmatch(r"epoch_32\.safetensors #[0-9a-f]{6,}", p) for m, p in labels)

    summary = build_report(eval_config.output_dir, tmp_path / "report", quiet=True)
    assert "2 models" in summary.lines[0]
    assert len(summary.tables["leaderboard"]) == 2
    shown = {f"{m} ({p})" for m, p in labels}
    assert {line.split(": ")[1] for line in summary.lines if line.startswith("few-shot: tiny")} == shown
    curve = summary.tables["fewshot"]
    k2 = curve[curve["k"] == 2]
    assert len(k2) == 2 and set(k2["n_seeds"]) == {2}  # each model's own two seeds, never a mean of four
    means = sorted(k2["mean"])
    assert means == pytest.approx(sorted(float(np.mean(v)) for v in seeds.values()))
    pairs = _csv(tmp_path / "report" / "comparisons.csv")
    assert len(pairs) == 1 and {pairs[0]["model A"], pairs[0]["model B"]} == shown

    first, second = sorted(shown)
    c = compare(first, second, eval_config.output_dir)
    assert {c.model_a, c.model_b} == shown and [t.task for t in c.tasks] == ["digits"]
    with pytest.raises(ClipBenchError, match=r"'tiny.json' names 2 different models .*fingerprints"):
        compare("tiny.json", first, eval_config.output_dir)

    # the sweep's skip check: run1's results never stand in for run2's checkpoint of the same name
    out = tmp_path / "sweep"
    cfg = replace(eval_config, output_dir=out)
    entry = [ModelEntry("tiny.json", "epoch_32.safetensors")]
    counts = []
    for folder in (runs[0], runs[1], runs[1]):
        monkeypatch.chdir(folder)
        counts.append(run_sweep(entry, ["digits"], ["zeroshot"], cfg, device="cpu", echo=lambda _m: None))
    assert [(c["ran"], c["done_before"]) for c in counts] == [(1, 0), (1, 0), (0, 1)]


def _probe_rows(out: Path, model: str, value: float, date: str, features: str = "auto") -> None:
    """Linear-probe rows of `model` on task t (accuracy `value`, 300 images) with their outcomes."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    scores = rng.normal(size=(300, 10))
    right = rng.random(300) < value
    scores[np.arange(300), labels] = np.where(right, 10.0, -10.0)
    kind = "embed" if features == "embed" else "pre-proj"
    rows = [make_row(model=model, pretrained="tag", model_fingerprint=f"fp-{model}", task="t", task_version=1,
                     source="s", split="test", protocol="linear_probe", metric=m, value=v,
                     is_main=m == main_metric_key("accuracy"), n=300, date=date, feature_kind=kind,
                     features_requested=features)
            for m, v in all_metrics(scores, labels, "accuracy").items()]
    attach_outcomes(rows, scores, labels, out)
    append_rows(out, rows)


def test_compare_keeps_probe_variants_apart(tmp_path, capsys):
    """A default probe and a later ``--features embed`` probe of A against B's default: compare pairs the
    default rows (like with like) and says the other variant exists; it never takes A's latest row."""
    out = tmp_path / "results"
    _probe_rows(out, "A", 0.9, "2026-01-01")
    _probe_rows(out, "A", 0.5, "2026-02-01", features="embed")
    _probe_rows(out, "B", 0.7, "2026-01-01")
    c = compare("A", "B", out, protocol="linear_probe")
    assert c.tasks[0].value_a > 85 and c.model_a == "A (tag)"
    assert main(["compare", "A", "B", "--results", str(out), "--protocol", "linear_probe"]) == 0
    assert "[features=embed]" in capsys.readouterr().out  # the variant left out is named
    _probe_rows(out, "B", 0.7, "2026-02-01", features="embed")
    c = compare("A", "B", out, protocol="linear_probe", variant="features=embed")
    assert c.tasks[0].value_a < 60 and c.model_a == "A [features=embed] (tag)"
    c = compare("A [features=embed] (tag)", "B (tag)", out, protocol="linear_probe")  # as the leaderboard shows it
    assert c.tasks[0].value_a < 60 and c.model_b == "B [features=embed] (tag)"


def test_compare_says_which_variants_exist_when_none_is_shared(tmp_path, capsys):
    out = tmp_path / "results"
    _probe_rows(out, "A", 0.9, "2026-01-01", features="embed")
    _probe_rows(out, "B", 0.7, "2026-01-01")
    assert main(["compare", "A", "B", "--results", str(out), "--protocol", "linear_probe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "A (tag)) has linear_probe rows as [features=embed]" in err
    assert "B (tag)) as default" in err and "no variant is in both" in err
    assert "'A [features=embed] (tag)' 'B [default] (tag)'" in err  # how to compare them anyway, which works:
    c = compare("A [features=embed] (tag)", "B [default] (tag)", out, protocol="linear_probe")
    assert (c.model_a, c.model_b) == ("A [features=embed] (tag)", "B (tag)") and c.tasks[0].value_a > 85


def test_labels_are_the_shortest_distinct_path_suffixes():
    from clip_bench.results.rows import model_labels

    def row(model, pretrained, fp, **extra):
        return {"model": model, "pretrained": pretrained, "model_fingerprint": fp, "date": "2026", "extra": extra}

    labels = model_labels([
        row("/models/ckpt/run1/arch.json", "/models/ckpt/run1/epoch_32.pt", "a1"),
        row("/models/ckpt/run2/arch.json", "/models/ckpt/run2/epoch_32.pt", "b2"),
        row("/models/shared/arch.json", "/data/x/epoch_1.pt", "c3"),
        row("ViT-B/32", "openai", "d4"),
        row("/models/ckpt/run3/arch.json", "/models/ckpt/run3/epoch_32.pt", "e5", label="my run"),
    ])
    assert labels == {"a1": ("run1/arch.json", "run1/epoch_32.pt"), "b2": ("run2/arch.json", "run2/epoch_32.pt"),
                      "c3": ("arch.json", "epoch_1.pt"), "d4": ("ViT-B/32", "openai"), "e5": ("my run", "")}
    assert model_labels([row("/models/ckpt/run1/arch.json", "/models/ckpt/run1/epoch_32.pt", "a1")]) == {
        "a1": ("arch.json", "epoch_32.pt")}


def test_cli_table_names_a_local_checkpoint_briefly_and_name_changes_no_identity(tmp_path, capsys):
    folder = checkpoint_folder(tmp_path / "experiments" / "2026-01-run-with-a-long-name" / "checkpoints", False)
    common = ["zeroshot", "--model", str(folder / "tiny.json"), "--pretrained", str(folder / "epoch_32.safetensors"),
              "--task", "digits", "--limit", "40", "--workers", "0", "--quiet", "--cache-dir", str(tmp_path / "c"),
              "--output-dir", str(tmp_path / "out")]
    assert main(common) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].index("task") <= len("tiny.json (epoch_32.safetensors)") + 2
    assert lines[2].startswith("tiny.json (epoch_32.safetensors)  digits") and str(folder) not in "\n".join(lines)
    assert main([*common, "--name", "run-a"]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("run-a  digits")
    rows = read_rows(tmp_path / "out")
    assert [r["extra"].get("label") for r in rows if r["is_main"]] == [None, "run-a"]
    assert len({r["result_id"] for r in rows if r["is_main"]}) == 1  # a name changes no number
    assert rows[-1]["model"] == str(folder / "tiny.json")  # the row keeps the full reference
    assert main([*common, "--name", " "]) == 2 and "--name" in capsys.readouterr().err


LONG = tuple((f"/models/experiments/2026-01-{i:02d}-clip-finetune-with-a-long-descriptive-name/arch.json",
              f"/models/experiments/2026-01-{i:02d}-clip-finetune-with-a-long-descriptive-name/epoch_32.pt")
             for i in range(1, 5))


def test_legends_stay_inside_their_figures():
    """Long model names (local checkpoints that differ only in a long folder name): every legend fits its figure."""
    from clip_bench.report.plot_fewshot import (
        fewshot_average_figure,
        fewshot_tasks_figure,
        shots_to_match_figure,
    )
    from clip_bench.report.plot_robustness import effective_robustness_figure
    from clip_bench.report.robustness import effective_robustness
    from clip_bench.report.styles import model_styles
    from clip_bench.report.synthetic import synthetic_rows

    rows = synthetic_rows(models=LONG, fewshot_tasks=1, seeds=2)
    styles = model_styles(rows)
    assert all(len(s.label) < 140 for s in styles.values())
    curve = fs.curves(rows)
    zs, lp = fs.reference_lines(rows, "zeroshot"), fs.reference_lines(rows, "linear_probe")
    avg, refs = fs.average_curve(curve, zs, lp)
    er, _ = effective_robustness([r for r in rows if r["task"] in ("imagenet", "imagenetv2")])
    figures = {
        "tasks": fewshot_tasks_figure(curve, zs, lp, {}, list(curve["task"].unique()), styles),
        "average": fewshot_average_figure(avg, refs, styles),
        "match": shots_to_match_figure(fs.shots_to_match(curve, zs, lp, fs.full_data_shots(rows)), styles, (1, 16)),
        "robustness": effective_robustness_figure(er, styles)[0],
    }
    for name, fig in figures.items():
        fig.canvas.draw()
        box, page = fig.legends[0].get_window_extent(), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, name
        assert len(fig.legends[0].get_texts()) >= len(LONG), name


def test_headline_names_the_smallest_k_that_was_run(tmp_path):
    """Only k = 2 and 4 were run: the headline compares zero-shot with the 2-shot probe, never a 1-shot one."""
    rows = []
    for task in ("t1", "t2"):
        rows.append(make_row(model="m", pretrained="p", task=task, protocol="zeroshot", metric="top1", value=50.0,
                             is_main=True, date="2026-01-01"))
        for k, value in ((2, 60.0), (4, 70.0)):
            rows += [make_row(model="m", pretrained="p", task=task, protocol=f"fewshot_k{k}", metric="top1",
                              value=value + s, is_main=True, seed=s, k=k, date="2026-01-01") for s in (0, 1)]
    append_rows(tmp_path / "results", rows)
    summary = build_report(tmp_path / "results", tmp_path / "out", quiet=True)
    headline = [line for line in summary.lines if line.startswith("few-shot: m (p)")]
    assert len(headline) == 1 and "below the 2-shot linear probe (the smallest k run" in headline[0]
    assert "1-shot" not in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_a_name_that_reads_like_another_models_variant_never_joins_its_line():
    """``--name "ViT-B-32 [fp16]"`` on one model beside the fp16 rows of a model named ViT-B-32 (no tag): two lines,
    each with its own model's rows, and the average of neither mixes the two."""
    from clip_bench.results.tables import line_values

    def row(fingerprint, task, value, **kw):
        return make_row(model=kw.pop("model", "ViT-B-32"), pretrained=kw.pop("pretrained", None), task=task,
                        model_fingerprint=fingerprint, protocol="zeroshot", metric="top1", value=value, is_main=True,
                        standard=True, date=kw.pop("date", "2024-01-01"), **kw)

    fp16 = {"precision": "fp16", "device": "cuda"}
    rows = [row("a" * 64, "datacomp_cifar10", 10.0, **fp16), row("a" * 64, "datacomp_mnist", 20.0, **fp16),
            row("b" * 64, "datacomp_cifar10", 90.0, model="other", pretrained="x", label="ViT-B-32 [fp16]",
                date="2024-02-01")]
    values = line_values(rows)
    lines = {name: dict(zip(g["task"], g["value"])) for name, g in values.groupby(["model", "pretrained"])}
    assert sorted(lines.values(), key=len) == [{"datacomp_cifar10": 90.0},
                                               {"datacomp_cifar10": 10.0, "datacomp_mnist": 20.0}]
    board = _csv_text_rows(rows)
    assert len(board) == 2 and sorted(float(r["datacomp_cifar10"]) for r in board) == [10.0, 90.0]


def _csv_text_rows(rows):
    from clip_bench.results.leaderboard import leaderboard_csv

    return list(csv.DictReader(leaderboard_csv(rows).splitlines()))
