"""build_report end to end: files, one leaderboard schema, no duplicates, the page's order and text, safe names."""

from __future__ import annotations

import csv
import re

import pytest

from clip_bench.cli.app import main
from clip_bench.report import ReportSummary, build_report
from clip_bench.report.synthetic import synthetic_rows
from clip_bench.results.leaderboard import write_leaderboard
from clip_bench.results.rows import append_rows, make_row, read_rows
from clip_bench.util.errors import ClipBenchError

HEAD = ["model", "pretrained", "protocol", "mean_clip27", "n_clip27", "mean_shifts", "n_shifts"]
#: The published averages, after the columns older readers know.
AVERAGES = ["mean_openclip35", "n_openclip35", "mean_datacomp38", "n_datacomp38", "mean_datacomp_shifts",
            "n_datacomp_shifts", "mean_datacomp_vtab", "n_datacomp_vtab", "mean_datacomp_retrieval",
            "n_datacomp_retrieval"]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    rows = synthetic_rows(fewshot_tasks=3, seeds=2, intervals=True)
    append_rows(results, rows)
    append_rows(results, [r for r in rows if r["protocol"] == "zeroshot"])  # what `fewshot` does: the same rows again
    out = tmp_path_factory.mktemp("out")
    return build_report(results, out, quiet=True), out, results, rows


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_full_report_writes_every_part_into_out_only(full_report):
    summary, out, results, _ = full_report
    assert isinstance(summary, ReportSummary) and summary.skipped == []
    names = {p.name for p in summary.files}
    assert names == {
        "leaderboard.csv", "leaderboard.md", "all_metrics.csv", "report.html", "effective_robustness.csv",
        "fewshot_curves.csv", "shots_to_match.csv", "shots_to_match_summary.csv", "published_comparison.csv",
        "effective_robustness.png", "fewshot_average.png", "fewshot_tasks.png", "shots_to_match.png",
    }
    assert all(p.exists() and p.is_relative_to(out) for p in summary.files)
    assert sorted(p.name for p in results.iterdir()) == ["results.jsonl", "results.jsonl.lock"]
    assert not list(out.rglob("*.tmp")), "atomic writes left temporary files"


def test_leaderboard_csv_has_one_schema_whoever_writes_it(full_report, tmp_path):
    _, out, results, _ = full_report
    table = _read_csv(out / "leaderboard.csv")
    header = list(table[0])
    assert header[:7] == HEAD and header[7:17] == AVERAGES and header[17:20] == ["food101", "cifar10", "cifar100"]
    assert "flagged" not in header and not any(c.endswith("_vs_paper") for c in header)
    protocols = [r["protocol"] for r in table]
    assert protocols[:4] == ["zeroshot", "zeroshot", "linear_probe", "linear_probe"]
    assert protocols[4:] == [f"fewshot_k{k}" for k in (1, 2, 4, 8, 16) for _ in range(2)]
    openai = next(r for r in table if r["pretrained"] == "openai" and r["protocol"] == "zeroshot")
    assert int(openai["n_clip27"]) == 27 and int(openai["n_shifts"]) == 5
    # no DataComp-protocol task: every published average absent, none of its members counted
    assert all(openai[c] == ("0" if c.startswith("n_") else "") for c in AVERAGES)
    probe = next(r for r in table if r["pretrained"] == "openai" and r["protocol"] == "linear_probe")
    assert all(probe[c] == "" for c in AVERAGES)  # zero-shot averages: not computed on the other lines
    clip27 = header[17:44]
    assert float(openai["mean_clip27"]) == pytest.approx(sum(float(openai[c]) for c in clip27) / 27, abs=0.01)
    # a run rebuilding leaderboard.csv writes the very same table
    (tmp_path / "results.jsonl").write_bytes((results / "results.jsonl").read_bytes())
    assert write_leaderboard(tmp_path).read_text() == (out / "leaderboard.csv").read_text()


def test_all_metrics_keeps_each_result_once(full_report):
    _, out, _, rows = full_report
    table = _read_csv(out / "all_metrics.csv")
    assert len(table) == len(rows)  # the re-appended zero-shot rows are collapsed
    keys = [(r["model"], r["pretrained"], r["task"], r["subset"], r["protocol"], r["metric"], r["extra"])
            for r in table]
    assert len(keys) == len(set(keys))
    assert {"model_fingerprint", "templates_hash", "date", "extra", "results_file", "ci_low", "ci_high"} <= set(
        table[0])


def _page(out):
    return (out / "report.html").read_text()


def test_page_reads_summary_then_figures_then_tables(full_report):
    summary, out, _, _ = full_report
    page = _page(out)
    order = [page.index(f'<h2 id="{a}"') for a in ("summary", "figures", "tables")]
    assert order == sorted(order)
    assert order[0] < page.index("<img") < order[2]
    nav = page[page.index('<nav class="toc">'):page.index("</nav>")]
    for anchor in re.findall(r'<h[23] id="([^"]+)"', page):
        assert f'href="#{anchor}"' in nav, anchor
    head = page[order[0]:order[1]]
    assert "ViT-B/32" in head and "effective robustness" in head and "zero-shot matches" in head.lower()
    # the long comparison is collapsed and sortable; the page is self-contained
    details = page[page.index("<details><summary>All "):]
    assert 'class="sortable"' in details[:details.index("</details>")]
    assert "<script>" in page
    assert page.count("data:image/png;base64,") == sum(1 for p in summary.files if p.suffix == ".png")
    assert not re.search(r'src="(?!data:)', page), "report.html references an external file"


def test_page_has_no_markdown_and_captions_name_only_existing_columns(full_report):
    _, out, _, _ = full_report
    page = _page(out)
    text = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert "`" not in text
    pairs = re.findall(r'<p class="note">((?:(?!</p>).)*)</p>\s*<div class="scroll"><table[^>]*>(.*?)</thead>',
                       page, flags=re.S)
    assert len(pairs) >= 5
    for caption, table in pairs:
        headers = set(re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table))
        for name in re.findall(r"<code>(.*?)</code>", caption):
            if name.endswith("*"):
                assert any(h.startswith(name[:-1]) for h in headers), name
            else:
                assert name in headers, (name, sorted(headers))


def test_text_columns_are_left_aligned_and_leaderboards_split(full_report):
    _, out, _, _ = full_report
    page = _page(out)
    for header in ("task", "published_model", "note", "pretrained"):
        assert f'<th class="text">{header}</th>' in page, header
    assert '<td class="text wrap">' in page  # the note column wraps instead of running off
    for title in ("Leaderboard: zero-shot", "Leaderboard: linear probe", "Leaderboard: few-shot"):
        assert f">{title}" in page
    zs = page[page.index('id="leaderboard-zero-shot"'):page.index('id="leaderboard-linear-probe')]
    ths = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", zs)
    assert ths[:6] == ["model", "pretrained", "mean_clip27", "n_clip27", "mean_shifts", "n_shifts"]
    assert re.search(r"\d+\.\d ± \d+\.\d", zs), "95% intervals are shown in the table"


def test_effective_robustness_csv(full_report):
    _, out, _, _ = full_report
    er = [r for r in _read_csv(out / "effective_robustness.csv") if r["pretrained"] == "openai"]
    by_shift = {r["shift"]: float(r["effective_robustness"]) for r in er}
    assert set(by_shift) == {"imagenetv2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet", "mean",
                             "average"}
    assert 20 < by_shift["imagenet_r"] < 60 and by_shift["mean"] > 10
    r = next(r for r in er if r["shift"] == "imagenet_r")
    assert float(r["er_ci_low"]) < by_shift["imagenet_r"] < float(r["er_ci_high"])


def test_shots_to_match_csv_keeps_summaries_apart(full_report):
    _, out, _, _ = full_report
    per_task = _read_csv(out / "shots_to_match.csv")
    assert {r["task"] for r in per_task} == {"food101", "cifar10", "cifar100"}
    per_model = _read_csv(out / "shots_to_match_summary.csv")
    assert len(per_model) == 2 and {"median_shots", "mean_shots", "n_tasks"} <= set(per_model[0])


def test_missing_parts_are_skipped_with_a_reason(tmp_path):
    rows = [r for r in synthetic_rows(fewshot_tasks=0) if r["task"] in ("cifar10", "food101")]
    append_rows(tmp_path / "res", rows)
    summary = build_report(tmp_path / "res", tmp_path / "out", quiet=True)
    skipped = " ".join(summary.skipped)
    assert "effective robustness" in skipped and "few-shot" in skipped
    assert all(line in summary.lines for line in summary.skipped)
    assert (tmp_path / "out" / "leaderboard.csv").exists() and (tmp_path / "out" / "report.html").exists()
    assert not (tmp_path / "out" / "effective_robustness.csv").exists()


def test_default_out_is_report_in_the_working_folder(tmp_path, monkeypatch):
    append_rows(tmp_path / "results", [r for r in synthetic_rows(fewshot_tasks=0) if r["task"] == "cifar10"])
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--quiet"]) == 0
    assert (tmp_path / "report" / "report.html").exists()
    assert not (tmp_path / "results" / "report.html").exists()


def test_reference_only_prints_comparisons_and_writes_nothing(tmp_path):
    append_rows(tmp_path, [r for r in synthetic_rows(fewshot_tasks=0) if r["pretrained"] == "openai"])
    before = set(tmp_path.iterdir())
    summary = build_report(tmp_path, reference_only=True)
    assert set(tmp_path.iterdir()) == before and summary.files == []
    text = "\n".join(summary.lines)
    assert "vs CLIP paper" in text and "vs open_clip" in text and "kitti_distance" in text


def test_no_rows_is_a_user_error_naming_a_real_command(tmp_path, capsys):
    with pytest.raises(ClipBenchError, match="no result rows") as err:
        build_report(tmp_path)
    assert "clip-bench zeroshot" in str(err.value) and "clip-bench eval" not in str(err.value)
    assert "\n" not in str(err.value)
    assert main(["report", "--results", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_outputs_of_an_earlier_report_do_not_survive_when_their_data_is_gone(tmp_path):
    rows = synthetic_rows(fewshot_tasks=1, seeds=2)
    append_rows(tmp_path / "a", rows)
    build_report(tmp_path / "a", tmp_path / "out", quiet=True)
    assert (tmp_path / "out" / "plots" / "fewshot_tasks.png").exists()
    (tmp_path / "out" / "plots" / "fewshot_food101.png").write_bytes(b"from an older version")
    append_rows(tmp_path / "b", [r for r in rows if r["protocol"] == "zeroshot" and r["task"] == "cifar10"])
    summary = build_report(tmp_path / "b", tmp_path / "out", quiet=True)
    assert not list((tmp_path / "out" / "plots").glob("fewshot_*.png"))
    assert not (tmp_path / "out" / "effective_robustness.csv").exists()
    assert any(line.startswith("removed ") for line in summary.lines)


def _row(model, task, protocol, value, **kw):
    return make_row(model=model, pretrained="p", task=task, protocol=protocol, metric="top1", value=value,
                    is_main=True, date="2024-01-01", **kw)


def test_names_from_a_results_file_never_become_paths(tmp_path):
    evil = ["../../escaped", "/tmp/abs", "a$b$c", "<script>x</script>"]
    rows = []
    for i, name in enumerate(evil):
        rows.append(_row(f"../m{i}", name, "zeroshot", 50.0))
        rows += [_row(f"../m{i}", name, f"fewshot_k{k}", 30.0 + k, seed=0) for k in (1, 2, 4)]
    append_rows(tmp_path / "res" / "deep", rows)
    before = {p for p in tmp_path.parent.iterdir()}
    summary = build_report(tmp_path / "res", tmp_path / "res" / "deep" / "out", quiet=True)
    assert {p for p in tmp_path.parent.iterdir()} == before
    assert all(p.resolve().is_relative_to((tmp_path / "res" / "deep" / "out").resolve()) for p in summary.files)
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith(("res/deep/out/", "res/deep/results.jsonl")) for p in written), written
    page = (tmp_path / "res" / "deep" / "out" / "report.html").read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_non_standard_rows_stay_out_of_tables_and_figures(tmp_path):
    rows = [_row("m", "cifar10", "zeroshot", 91.0), _row("m", "cifar10", "zeroshot", 100.0, limit=5)]
    rows[1]["standard"] = False
    rows[1]["date"] = "2024-02-01"  # newer, and still not the result
    append_rows(tmp_path, rows)
    summary = build_report(tmp_path, tmp_path / "out", quiet=True)
    board = _read_csv(tmp_path / "out" / "leaderboard.csv")
    assert [r["cifar10"] for r in board] == ["91.00"]
    assert len(_read_csv(tmp_path / "out" / "all_metrics.csv")) == 2
    assert "non-standard" in summary.lines[0]
    assert len(read_rows(tmp_path)) == 2


def test_a_probe_C_at_the_grid_edge_is_flagged(tmp_path):
    """A linear-probe row whose C was picked at an end of the grid is named in the report."""
    results = tmp_path / "results"
    rows = synthetic_rows(fewshot_tasks=1, seeds=2)
    lp = next(r for r in rows if r["protocol"] == "linear_probe" and r["is_main"])
    lp["extra"] = {**(lp.get("extra") or {}), "C": 1e-6, "C_at_grid_edge": "low"}
    append_rows(results, rows)
    build_report(results, tmp_path / "out", quiet=True)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert ("Flagged: C was picked at an end" in page
            and f"{lp['model']} ({lp['pretrained']}) on {lp['task']} (low, C = 1e-06)" in page)
