"""build_report end to end: files written, self-contained HTML, skipped parts, reference-only mode."""

from __future__ import annotations

import csv
import re

import pytest

from clip_bench.errors import ClipBenchError
from clip_bench.report import ReportSummary, build_report
from clip_bench.report.synthetic import synthetic_rows
from clip_bench.results import append_rows


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    append_rows(results, synthetic_rows(fewshot_tasks=3, seeds=2))
    out = tmp_path_factory.mktemp("out")
    return build_report(results, out, quiet=True), out


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_full_report_writes_every_part(full_report):
    summary, out = full_report
    assert isinstance(summary, ReportSummary) and summary.skipped == []
    names = {p.name for p in summary.files}
    for expected in ("leaderboard.csv", "leaderboard.md", "all_metrics.csv", "report.html",
                     "effective_robustness.csv", "shots_to_match.csv", "published_comparison.csv",
                     "effective_robustness.png", "fewshot_average.png", "fewshot_food101.png"):
        assert expected in names
    assert all(p.exists() and p.is_relative_to(out) for p in summary.files)
    assert not list(out.rglob("*.tmp")), "atomic writes left temporary files"


def test_leaderboard_has_tasks_means_counts_and_deltas(full_report):
    _, out = full_report
    rows = {r["pretrained"]: r for r in _read_csv(out / "leaderboard.csv")}
    assert set(rows) == {"openai", "laion2b_s34b_b79k"}
    openai = rows["openai"]
    assert openai["model"] == "ViT-B/32"
    assert int(openai["n_clip27"]) == 27 and int(openai["n_shifts"]) == 5
    clip27_cols = [c for c in openai if c.endswith("_vs_paper")]
    assert len(clip27_cols) == 27
    # synthetic rows are the paper's ViT-B/32 numbers + noise, with kitti_distance 3 points off on purpose
    assert abs(float(openai["kitti_distance_vs_paper"])) > 1 and "kitti_distance" in openai["flagged"]
    assert abs(float(openai["cifar100_vs_paper"])) < 1.5
    assert float(openai["mean_clip27"]) == pytest.approx(
        sum(float(openai[c.removesuffix("_vs_paper")]) for c in clip27_cols) / 27, abs=0.01)
    md = (out / "leaderboard.md").read_text()
    assert md.count("\n| ViT-B") == 2 and "mean_clip27" in md


def test_all_metrics_keeps_every_row_with_provenance(full_report):
    _, out = full_report
    rows = _read_csv(out / "all_metrics.csv")
    assert len(rows) == len(synthetic_rows(fewshot_tasks=3, seeds=2))
    assert {"model_fingerprint", "templates_hash", "date", "extra", "results_file"} <= set(rows[0])
    assert any('"seed": 1' in r["extra"] for r in rows)


def test_html_is_self_contained(full_report):
    summary, out = full_report
    page = (out / "report.html").read_text()
    n_png = sum(1 for p in summary.files if p.suffix == ".png")
    assert page.count("data:image/png;base64,") == n_png
    assert not re.search(r'src="(?!data:)', page), "report.html references an external file"
    assert "<table" in page and "Effective robustness" in page


def test_effective_robustness_csv(full_report):
    _, out = full_report
    er = [r for r in _read_csv(out / "effective_robustness.csv") if r["pretrained"] == "openai"]
    by_shift = {r["shift"]: float(r["effective_robustness"]) for r in er}
    assert set(by_shift) == {"imagenetv2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet", "mean", "average"}
    assert 20 < by_shift["imagenet_r"] < 60 and by_shift["mean"] > 10


def test_missing_parts_are_skipped_with_a_reason(tmp_path):
    rows = [r for r in synthetic_rows(fewshot_tasks=0) if r["task"] in ("cifar10", "food101")]
    append_rows(tmp_path, rows)
    summary = build_report(tmp_path, quiet=True)
    skipped = " ".join(summary.skipped)
    assert "effective robustness" in skipped and "few-shot" in skipped
    assert all(line in summary.lines for line in summary.skipped)
    assert (tmp_path / "leaderboard.csv").exists() and (tmp_path / "report.html").exists()
    assert not (tmp_path / "effective_robustness.csv").exists()


def test_reference_only_prints_comparisons_and_writes_nothing(tmp_path):
    append_rows(tmp_path, [r for r in synthetic_rows(fewshot_tasks=0) if r["pretrained"] == "openai"])
    before = set(tmp_path.iterdir())
    summary = build_report(tmp_path, reference_only=True)
    assert set(tmp_path.iterdir()) == before and summary.files == []
    text = "\n".join(summary.lines)
    assert "vs CLIP paper" in text and "vs open_clip" in text and "kitti_distance" in text


def test_no_rows_is_a_user_error(tmp_path):
    with pytest.raises(ClipBenchError, match="no result rows"):
        build_report(tmp_path)


def test_outputs_of_an_earlier_report_do_not_survive_when_their_data_is_gone(tmp_path):
    rows = synthetic_rows(fewshot_tasks=1, seeds=2)
    append_rows(tmp_path / "a", rows)
    build_report(tmp_path / "a", tmp_path / "out", quiet=True)
    assert (tmp_path / "out" / "plots" / "fewshot_food101.png").exists()
    append_rows(tmp_path / "b", [r for r in rows if r["protocol"] == "zeroshot" and r["task"] == "cifar10"])
    summary = build_report(tmp_path / "b", tmp_path / "out", quiet=True)
    assert not (tmp_path / "out" / "plots" / "fewshot_food101.png").exists()
    assert not (tmp_path / "out" / "effective_robustness.csv").exists()
    assert any(line.startswith("removed ") for line in summary.lines)
