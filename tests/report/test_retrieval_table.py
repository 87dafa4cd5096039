"""The report's retrieval table: deltas against CLIP paper Table 13 for the paper's model only."""

from __future__ import annotations

import json

import pytest

from clip_bench.report import build_report
from clip_bench.report.retrieval import paper_table13
from clip_bench.results.rows import append_rows, make_row

TABLE13 = {  # the paper's numbers, typed in again here as an independent check of the data file
    "flickr30k": [88.0, 98.7, 99.4, 68.7, 90.6, 95.2],
    "mscoco": [58.4, 81.5, 88.1, 37.8, 62.4, 72.2],
}
NAMES = [f"{d}_retrieval_recall@{k}" for d in ("text", "image") for k in (1, 5, 10)]


def rows_for(model, pretrained, task, values, template=None):
    values = dict(zip(NAMES, values))
    values["mean_recall"] = sum(values.values()) / 6
    return [make_row(model=model, pretrained=pretrained, task=task, protocol="retrieval", metric=m, value=v,
                     is_main=m == "mean_recall", n=1000, source="wds", date="2025-01-01T00:00:00+00:00",
                     caption_template=template) for m, v in values.items()]


def test_table13_reference_data():
    data = paper_table13()
    for task, values in TABLE13.items():
        assert [data["tasks"][task][m] for m in NAMES] == values
        assert data["tasks"][task]["mean_recall"] == pytest.approx(sum(values) / 6)
    assert data["paper_model"] == "ViT-L/14@336px" and "CONFIRMED" in data["_provenance"]["status"]


def test_report_has_retrieval_table_deltas_and_leaderboard_column(tmp_path):
    ours = [v - 1.0 for v in TABLE13["flickr30k"]]
    rows = rows_for("ViT-L/14@336px", "openai", "flickr30k", ours)
    rows += rows_for("ViT-L-14-336-quickgelu", "openai", "mscoco", TABLE13["mscoco"], template="a photo of {}")
    rows += rows_for("ViT-B/32", "openai", "flickr30k", ours)
    append_rows(tmp_path, rows)
    summary = build_report(tmp_path, tmp_path, quiet=True)
    table = summary.tables["retrieval"].set_index(["model", "task"])
    assert table.loc[("ViT-L/14@336px", "flickr30k"), "i2t_R@1"] == pytest.approx(87.0)
    assert table.loc[("ViT-L/14@336px", "flickr30k"), "t2i_R@10_vs_paper"] == pytest.approx(-1.0)
    assert table.loc[("ViT-L/14@336px", "flickr30k"), "mean_vs_paper"] == pytest.approx(-1.0)
    assert table.loc[("ViT-L-14-336-quickgelu", "mscoco"), "i2t_R@5_vs_paper"] == pytest.approx(0.0)
    assert table.loc[("ViT-L-14-336-quickgelu", "mscoco"), "caption_template"] == "a photo of {}"
    assert table.loc[("ViT-B/32", "flickr30k")].filter(like="_vs_paper").isna().all()  # another model: no delta
    assert (tmp_path / "retrieval.csv").exists() and "Zero-shot retrieval" in (tmp_path / "report.html").read_text()
    board = summary.tables["leaderboard"].set_index("model")
    assert board.loc["ViT-B/32", "flickr30k"] == pytest.approx(sum(ours) / 6)
    assert json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])["protocol"] == "retrieval"
