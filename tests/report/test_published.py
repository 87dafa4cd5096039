"""Comparison with published numbers, like with like: the column map, name matching, units, deltas, flags, and no
number between two protocols."""

from __future__ import annotations

import math

import pytest

from clip_bench.metrics.classification import main_metric_key
from clip_bench.report import reference
from clip_bench.report.published import arch_key, compare_published, published_map, summary_lines
from clip_bench.results.averages import average_specs
from clip_bench.results.rows import make_row
from clip_bench.tasks.catalog import get_task, headline_collections

#: Table 9's metric names (paper_tables.json "metric") as the row metric of a task's main metric.
PAPER_METRIC = {"accuracy": "top1", "mean per class": "mean_per_class_recall", "11-point mAP": "map_11point",
                "mean(top1, top5)": "mean_top1_top5", "ROC AUC": "roc_auc"}


def _row(model, pretrained, task, value, protocol="zeroshot", metric="top1", **kw):
    return make_row(model=model, pretrained=pretrained, task=task, protocol=protocol, metric=metric,
                    value=value, is_main=True, **kw)


def test_arch_key_matches_openai_and_open_clip_spellings():
    assert arch_key("ViT-L/14@336") == arch_key("ViT-L-14-336") == arch_key("ViT-L/14@336px")
    assert arch_key("ViT-B/32") == arch_key("ViT-B-32") != arch_key("ViT-B-16")


def test_openais_name_with_px_is_compared_with_both_tables():
    """``ViT-L/14@336px``, the name clip-bench lists for OpenAI's 336-pixel model, is the paper's ViT-L/14@336 and
    open_clip's ViT-L-14-336 (openai)."""
    rows = [_row("ViT-L/14@336px", "openai", "imagenet", 76.0), _row("ViT-L/14@336px", "openai",
                                                                     "datacomp_imagenet1k", 76.0)]
    got = compare_published(rows)
    got = got[got["kind"] == "task"].set_index("source")
    assert got.loc["paper", "published_model"] == "ViT-L/14@336" and got.loc["paper", "task"] == "imagenet"
    assert got.loc["openclip", "published_model"] == "ViT-L-14-336 (openai)"
    assert got.loc["openclip", "task"] == "datacomp_imagenet1k"
    assert got.loc["paper", "published"] == pytest.approx(76.2)


def test_every_published_column_maps_to_exactly_one_task_and_metric():
    paper_tables, cfg = reference.paper_tables(), reference.published_columns()
    columns = published_map()
    # the paper's columns, in its order, each a paper-protocol task with its Table 9 metric
    paper = columns["paper"]
    assert [c.name for c in paper] == paper_tables["datasets"]
    assert [c.task for c in paper] == headline_collections()["clip27"]
    for c in paper:
        assert c.metric == PAPER_METRIC[paper_tables["metric"][c.name]] == main_metric_key(get_task(c.task).metric)
        assert not c.task.startswith("datacomp_") and c.average is None
    # open_clip's columns: every column of its table, each one DataComp-protocol task or one complete average
    openclip = columns["openclip"]
    published = [c for c in reference.openclip_results().columns if c not in ("name", "pretrained", "params (M)",
                                                                              "FLOPs (B)")]
    assert sorted(c.name for c in openclip) == sorted(published) and len(openclip) == 40
    for c in openclip:
        if c.average:
            assert c.task == average_specs()[c.average].column and c.metric == "mean"
        else:
            assert c.task.startswith("datacomp_") and c.metric and c.other != c.task
            entry = cfg["openclip"][c.name]
            assert set(entry) <= {"task", "metric", "key", "datacomp_metric", "tags", "paper_protocol", "note"}
    tasks = [c.task for c in (*paper, *openclip)]
    assert len(tasks) == len(set(tasks)), "a task is the measure of one published column only"
    assert {c.average for c in openclip if c.average} == {"openclip35", "datacomp38"}
    # each open_clip column's paper-protocol twin is a task of the catalogue, measuring the dataset otherwise
    for c in openclip:
        if c.other:
            assert get_task(c.other).name == c.other and not c.other.startswith("datacomp_")
    assert {c.task: c.other for c in paper}["voc2007"] == "datacomp_voc2007"


def test_each_protocol_compared_only_with_its_own_publication():
    """voc2007 (paper protocol, 11-point mAP) against the paper only; datacomp_voc2007 (single-label crops,
    top-1) against open_clip only."""
    both = [_row("ViT-B/32", "openai", "voc2007", 82.6, metric="map_11point"),  # paper: 83.1
            _row("ViT-B/32", "openai", "datacomp_voc2007", 76.9)]  # open_clip ViT-B-32 openai: 0.7640
    cmp = compare_published(both).set_index(["source", "column"])
    assert len(cmp[cmp["kind"] == "task"]) == 2
    assert set(cmp.loc[cmp["kind"] == "average", "note"]) == {  # one member of each open_clip average
        "no complete openclip35 average: 34 of 35 members missing (" + ", ".join(
            t for t in average_specs()["openclip35"].members if t != "datacomp_voc2007") + ")",
        "no complete datacomp38 average: 37 of 38 members missing (" + ", ".join(
            t for t in average_specs()["datacomp38"].members if t != "datacomp_voc2007") + ")",
    }
    paper, openclip = cmp.loc[("paper", "VOC2007")], cmp.loc[("openclip", "Pascal VOC 2007")]
    assert paper["task"] == "voc2007" and paper["ours"] == 82.6 and paper["delta"] == pytest.approx(82.6 - 83.1)
    assert openclip["task"] == "datacomp_voc2007" and openclip["ours"] == 76.9
    assert openclip["published"] == pytest.approx(76.40) and openclip["delta"] == pytest.approx(0.5)
    assert openclip["published_model"] == "ViT-B-32 (openai)"

    only_paper = compare_published(both[:1]).set_index(["source", "column"])
    note = only_paper.loc[("openclip", "Pascal VOC 2007")]
    assert math.isnan(note["ours"]) and math.isnan(note["delta"]) and not note["flagged"]
    assert note["note"] == ("measured with the paper protocol (voc2007); open_clip's column uses the DataComp "
                            "protocol (run datacomp_voc2007)")
    assert only_paper.loc[("paper", "VOC2007"), "delta"] == pytest.approx(82.6 - 83.1)

    only_datacomp = compare_published(both[1:]).set_index(["source", "column"])
    note = only_datacomp.loc[("paper", "VOC2007")]
    assert math.isnan(note["delta"])
    assert note["note"] == ("measured with the DataComp protocol (datacomp_voc2007); CLIP paper's column uses the "
                            "paper protocol (run voc2007)")
    assert only_datacomp.loc[("openclip", "Pascal VOC 2007"), "delta"] == pytest.approx(0.5)
    # only numbers of one task and metric: every delta pairs a column with its own task
    for df in (cmp, only_paper, only_datacomp):
        numbers = df[df["delta"].notna()].reset_index()
        for r in numbers.itertuples():
            col = next(c for c in published_map()[r.source] if c.name == r.column)
            assert (r.task, r.metric) == (col.task, col.metric)


def test_a_row_of_another_metric_is_not_compared():
    rows = [_row("ViT-B/32", "openai", "voc2007", 76.4, metric="top1")]  # not the paper's mAP
    cmp = compare_published(rows).set_index("source")
    assert len(cmp) == 2 and cmp["delta"].isna().all()
    assert cmp.loc["paper", "note"] == "voc2007's main metric is top1; the column is map_11point"
    assert cmp.loc["openclip", "note"].endswith("(run datacomp_voc2007)")


def test_paper_and_openclip_deltas_in_points_and_flags():
    rows = [
        _row("ViT-B/32", "openai", "cifar100", 65.1),  # paper 65.1
        _row("ViT-B/32", "openai", "datacomp_cifar100", 65.1),  # open_clip 0.6423
        _row("ViT-B/32", "openai", "kitti_distance", 27.4),  # paper 39.4
        _row("ViT-B/32", "openai", "imagenet", 76.1, protocol="linear_probe"),  # Table 10: 76.1
        _row("ViT-B/32", "openai", "imagenet", 90.0, subset="imagenet_r"),  # subset rows are not compared
        _row("my-net", "scratch", "cifar100", 50.0),  # no published row
    ]
    cmp = compare_published(rows).set_index(["protocol", "source", "task"])
    assert set(cmp["model"]) == {"ViT-B/32"}
    assert cmp.loc[("zeroshot", "paper", "cifar100"), "delta"] == pytest.approx(0.0)
    assert not cmp.loc[("zeroshot", "paper", "cifar100"), "flagged"]
    assert cmp.loc[("zeroshot", "openclip", "datacomp_cifar100"), "published"] == pytest.approx(64.23)
    assert cmp.loc[("zeroshot", "openclip", "datacomp_cifar100"), "delta"] == pytest.approx(65.1 - 64.23)
    assert cmp.loc[("zeroshot", "paper", "kitti_distance"), "delta"] == pytest.approx(-12.0)
    assert cmp.loc[("zeroshot", "paper", "kitti_distance"), "flagged"]
    # kitti_distance is the paper protocol: open_clip's KITTI column only gets a note
    kitti = cmp.loc[("zeroshot", "openclip", "datacomp_kitti_distance")]
    assert math.isnan(kitti["delta"]) and "run datacomp_kitti_distance" in kitti["note"]
    assert cmp.loc[("linear_probe", "paper", "imagenet"), "published"] == pytest.approx(76.1)
    assert not any(p == "linear_probe" and s == "openclip" for p, s, _ in cmp.index)  # open_clip: zero-shot only


def test_open_clip_rows_match_by_architecture_and_tag_only():
    rows = [
        _row("ViT-B-32", "laion2b_s34b_b79k", "datacomp_imagenet1k", 66.56),
        _row("ViT-B-32", "laion2b_e16", "datacomp_imagenet1k", 60.0),
        _row("ViT-B-32", "no_such_tag", "datacomp_imagenet1k", 60.0),
        _row("RN50-quickgelu", "openai", "imagenet", 59.8),  # OpenAI weights: quickgelu twin, and the paper
    ]
    cmp = compare_published(rows)
    cmp = cmp[cmp["kind"] == "task"]  # (the laion rows also get notes: their averages are incomplete)
    got = {(r.model, r.pretrained, r.source, math.isnan(r.delta)) for r in cmp.itertuples()}
    assert got == {
        ("ViT-B-32", "laion2b_s34b_b79k", "openclip", False), ("ViT-B-32", "laion2b_e16", "openclip", False),
        ("RN50-quickgelu", "openai", "openclip", True), ("RN50-quickgelu", "openai", "paper", False),
    }
    laion = cmp[cmp["pretrained"] == "laion2b_s34b_b79k"].iloc[0]
    assert laion["delta"] == pytest.approx(0.0, abs=1e-6)


def test_published_averages_compared_only_when_complete():
    """A model with open_clip's own 38 numbers: both averages match to rounding; one task fewer, no average."""
    table = reference.openclip_results()
    rec = table[(table["name"] == "ViT-B-32") & (table["pretrained"] == "laion2b_s34b_b79k")].iloc[0]
    columns = [c for c in published_map()["openclip"] if not c.average]
    rows = [_row("ViT-B-32", "laion2b_s34b_b79k", c.task, 100 * float(rec[c.name]), metric=c.metric)
            for c in columns]
    cmp = compare_published(rows).set_index("column")
    assert (cmp["kind"] == "task").sum() == 38 and cmp.loc[cmp["kind"] == "task", "delta"].abs().max() < 1e-9
    for name, n in (("datacomp38", 38), ("openclip35", 35)):
        column = f"Average perf. on {n} datasets"
        line = cmp.loc[column]
        assert line["kind"] == "average" and line["task"] == f"mean_{name}"
        assert abs(line["delta"]) < 0.01  # published averages are rounded to 4 decimals of a fraction
    fewer = compare_published([r for r in rows if r["task"] != "datacomp_winogavil"]).set_index("column")
    assert math.isnan(fewer.loc["Average perf. on 38 datasets", "delta"])
    assert fewer.loc["Average perf. on 38 datasets", "note"] == (
        "no complete datacomp38 average: 1 of 38 members missing (datacomp_winogavil)")
    assert abs(fewer.loc["Average perf. on 35 datasets", "delta"]) < 0.01  # WinoGAViL is not one of the 35


def test_summary_lines_flag_tasks_more_than_a_point_off_and_count_what_is_not_compared():
    rows = [
        _row("ViT-B/32", "openai", "cifar100", 65.1),
        _row("ViT-B/32", "openai", "kitti_distance", 27.4),
        _row("my-net", "scratch", "cifar100", 50.0),
    ]
    lines = summary_lines(compare_published(rows), detailed=True)
    assert any("<-- |Δ| > 1" in line and "KITTI" in line for line in lines)
    assert not any("my-net" in line for line in lines)
    head = next(line for line in lines if "vs open_clip" in line)
    assert "no task compared" in head and "2 columns not compared" in head
    assert any("run datacomp_cifar100" in line for line in lines)
