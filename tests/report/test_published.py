"""Comparison with published numbers: name matching, units, deltas, flags and the column map."""

from __future__ import annotations

import pytest

from clip_bench.report import reference
from clip_bench.report.published import arch_key, compare_published, summary_lines
from clip_bench.results.rows import make_row
from clip_bench.tasks.catalog import headline_collections


def _row(model, pretrained, task, value, protocol="zeroshot", **kw):
    return make_row(model=model, pretrained=pretrained, task=task, protocol=protocol, metric="top1",
                    value=value, is_main=True, **kw)


def test_arch_key_matches_openai_and_open_clip_spellings():
    assert arch_key("ViT-L/14@336") == arch_key("ViT-L-14-336")
    assert arch_key("ViT-B/32") == arch_key("ViT-B-32") != arch_key("ViT-B-16")


def test_column_map_covers_clip27_and_names_real_columns():
    cfg = reference.published_columns()
    paper = reference.paper_tables()
    openclip_cols = set(reference.openclip_results().columns)
    clip27 = headline_collections()["clip27"]
    assert len(clip27) == 27 == len(set(clip27))
    # the collection is in the paper's column order
    assert [cfg["tasks"][t]["paper"] for t in clip27] == paper["datasets"]
    for task, cols in cfg["tasks"].items():
        if "openclip" in cols:
            assert cols["openclip"] in openclip_cols, task


def test_paper_and_openclip_deltas_in_points_and_flags():
    rows = [
        _row("ViT-B/32", "openai", "cifar100", 65.1),  # paper 65.1, open_clip 0.6423
        _row("ViT-B/32", "openai", "kitti_distance", 27.4),  # paper 39.4, open_clip 0.2743
        _row("ViT-B/32", "openai", "imagenet", 76.1, protocol="linear_probe"),  # Table 10: 76.1
        _row("ViT-B/32", "openai", "imagenet", 90.0, subset="imagenet_r"),  # subset rows are not compared
        _row("my-net", "scratch", "cifar100", 50.0),  # no published row
    ]
    cmp = compare_published(rows).set_index(["protocol", "source", "task"])
    assert set(cmp["model"]) == {"ViT-B/32"}
    assert cmp.loc[("zeroshot", "paper", "cifar100"), "delta"] == pytest.approx(0.0)
    assert not cmp.loc[("zeroshot", "paper", "cifar100"), "flagged"]
    assert cmp.loc[("zeroshot", "openclip", "cifar100"), "published"] == pytest.approx(64.23)
    assert cmp.loc[("zeroshot", "openclip", "cifar100"), "delta"] == pytest.approx(65.1 - 64.23)
    assert cmp.loc[("zeroshot", "paper", "kitti_distance"), "delta"] == pytest.approx(-12.0)
    assert cmp.loc[("zeroshot", "paper", "kitti_distance"), "flagged"]
    assert not cmp.loc[("zeroshot", "openclip", "kitti_distance"), "flagged"]
    assert "KITTI" in cmp.loc[("zeroshot", "openclip", "kitti_distance"), "note"]
    assert cmp.loc[("linear_probe", "paper", "imagenet"), "published"] == pytest.approx(76.1)
    assert ("linear_probe", "openclip", "imagenet") not in cmp.index  # open_clip's table is zero-shot only


def test_open_clip_rows_match_by_architecture_and_tag_only():
    rows = [
        _row("ViT-B-32", "laion2b_s34b_b79k", "imagenet", 66.56),
        _row("ViT-B-32", "laion2b_e16", "imagenet", 60.0),
        _row("ViT-B-32", "no_such_tag", "imagenet", 60.0),
        _row("RN50-quickgelu", "openai", "imagenet", 59.8),  # OpenAI weights: quickgelu twin, and the paper
    ]
    cmp = compare_published(rows)
    got = {(r.model, r.pretrained, r.source) for r in cmp.itertuples()}
    assert got == {
        ("ViT-B-32", "laion2b_s34b_b79k", "openclip"), ("ViT-B-32", "laion2b_e16", "openclip"),
        ("RN50-quickgelu", "openai", "openclip"), ("RN50-quickgelu", "openai", "paper"),
    }
    laion = cmp[cmp["pretrained"] == "laion2b_s34b_b79k"].iloc[0]
    assert laion["delta"] == pytest.approx(0.0, abs=1e-6)


def test_summary_lines_flag_tasks_more_than_a_point_off():
    rows = [
        _row("ViT-B/32", "openai", "cifar100", 65.1),
        _row("ViT-B/32", "openai", "kitti_distance", 27.4),
        _row("my-net", "scratch", "cifar100", 50.0),
    ]
    lines = summary_lines(compare_published(rows), detailed=True)
    assert any("<-- |Δ| > 1" in line and "kitti_distance" in line for line in lines)
    assert not any("my-net" in line for line in lines)
