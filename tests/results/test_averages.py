"""The published averages: open_clip's 35- and 38-dataset averages and DataComp's sub-averages, reproduced from the
published per-dataset numbers, and absent unless every member is measured with its metric."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from clip_bench.results.averages import average, average_lines, average_specs, model_averages, published_columns
from clip_bench.results.leaderboard import HEAD, leaderboard_csv, protocol_table
from clip_bench.results.rows import make_row
from clip_bench.results.tables import line_values
from clip_bench.util.resources import assets_dir

OLD_HEAD = ["model", "pretrained", "protocol", "mean_clip27", "n_clip27", "mean_shifts", "n_shifts"]
#: DataComp's aggregate_scores.py, DATASET_GROUPS (mlfoundations/datacomp), by DataComp's dataset names.
AGGREGATE_GROUPS = {
    "datacomp_shifts": {"ImageNet Sketch", "ImageNet v2", "ImageNet-A", "ImageNet-O", "ImageNet-R", "ObjectNet"},
    "datacomp_vtab": {"Caltech-101", "CIFAR-100", "CLEVR Counts", "CLEVR Distance", "Describable Textures", "EuroSAT",
                      "KITTI Vehicle Distance", "Oxford Flowers-102", "Oxford-IIIT Pet", "PatchCamelyon", "RESISC45",
                      "SVHN", "SUN397"},
    "datacomp_retrieval": {"Flickr", "MSCOCO", "WinoGAViL"},
}


def _csv(name):
    with open(assets_dir() / "reference" / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _task_of_column():
    return {col: c["task"] for col, c in published_columns()["openclip"].items() if "task" in c}


@pytest.mark.parametrize("file, name, column", [
    ("openclip_classification_results.csv", "openclip35", "Average perf. on 35 datasets"),
    ("openclip_results.csv", "datacomp38", "Average perf. on 38 datasets"),
])
def test_average_reproduces_open_clips_published_averages_for_every_model(file, name, column):
    table, task_of = _csv(file), _task_of_column()
    assert len(table) == 121
    spec = average_specs()[name]
    datasets = [c for c in table[0] if c in task_of]
    assert sorted(task_of[c] for c in datasets) == sorted(spec.members)  # the CSV's columns are the members
    worst = 0.0
    for rec in table:
        values = {task_of[c]: float(rec[c]) for c in datasets}  # fractions, as published
        got = average(values, name)
        assert got is not None
        worst = max(worst, abs(got - float(rec[column])))
        assert got == pytest.approx(float(np.mean([float(rec[c]) for c in datasets])), abs=1e-12)
    assert worst <= 1e-4, worst  # the published averages are rounded to 4 decimals


def test_members_are_datacomps_groups():
    specs, columns = average_specs(), published_columns()["openclip"]
    task_of = _task_of_column()
    for name, names in AGGREGATE_GROUPS.items():
        assert set(specs[name].members) == {task_of[n] for n in names}, name
    tagged = {c["task"] for c in columns.values() if any(t.startswith("vtab") for t in c.get("tags", []))}
    assert tagged == set(specs["datacomp_vtab"].members) and len(tagged) == 13
    retrieval = {c["task"] for c in columns.values() if "retrieval" in c.get("tags", [])}
    assert retrieval == set(specs["datacomp_retrieval"].members)
    assert set(specs["datacomp38"].members) == set(task_of.values()) and len(specs["datacomp38"].members) == 38
    assert set(specs["openclip35"].members) == set(task_of.values()) - retrieval
    for spec in specs.values():  # each member's metric is its open_clip column's
        assert spec.members == {t: next(c["metric"] for c in columns.values() if c.get("task") == t)
                                for t in spec.members}


def _rows(model, values, **kw):
    """Zero-shot main rows of `values` (task -> value), each with its member metric unless `metric` overrides."""
    metric = average_specs()["datacomp38"].members
    return [make_row(model=model, pretrained="tag", task=t, protocol="zeroshot", metric=kw.get("metric", {}).get(
        t, metric.get(t, "top1")), value=v, is_main=True, date="2024-01-01", standard=kw.get("standard", True))
        for t, v in values.items()]


def test_average_absent_unless_every_member_is_standard_and_of_its_metric():
    members = list(average_specs()["openclip35"].members)
    rng = np.random.default_rng(0)
    full = {t: float(rng.uniform(10, 90)) for t in members}
    rows = _rows("complete", full)
    rows += _rows("one-short", {t: v for t, v in full.items() if t != "datacomp_fmow"})
    rows += _rows("one-not-standard", {t: v for t, v in full.items() if t != "datacomp_fmow"})
    rows += _rows("one-not-standard", {"datacomp_fmow": 50.0}, standard=False)
    rows += _rows("other-metric", full, metric={"datacomp_caltech101": "top1"})
    found = model_averages(line_values(rows))
    complete = found[("complete", "tag")]["openclip35"]
    assert complete.value == pytest.approx(sum(full.values()) / 35) and complete.present == 35
    assert found[("complete", "tag")]["datacomp38"].value is None  # no retrieval rows
    assert found[("complete", "tag")]["datacomp38"].missing == ("datacomp_flickr1k", "datacomp_mscoco5k",
                                                                "datacomp_winogavil")
    for model in ("one-short", "one-not-standard"):
        res = found[(model, "tag")]["openclip35"]
        assert res.value is None and res.present == 34 and res.missing == ("datacomp_fmow",)
    res = found[("other-metric", "tag")]["openclip35"]
    assert res.value is None and res.missing == ("datacomp_caltech101 (its main metric is top1, not "
                                                 "mean_per_class_recall)",)
    vtab = found[("complete", "tag")]["datacomp_vtab"]
    assert vtab.value == pytest.approx(np.mean([full[t] for t in average_specs()["datacomp_vtab"].members]))
    lines = average_lines(line_values(rows), incomplete_only=True)
    assert any(line.startswith("one-short (tag): no openclip35 average, 1 of 35 members missing: datacomp_fmow")
               for line in lines)
    assert not any("complete (tag): openclip35" in line for line in lines)


def test_leaderboard_has_the_averages_after_the_old_columns():
    members = average_specs()["datacomp38"].members
    full = {t: 40.0 + i for i, t in enumerate(members)}
    rows = _rows("all38", full) + _rows("half", dict(list(full.items())[:19]))
    rows.append(make_row(model="all38", pretrained="tag", task="datacomp_cifar10", protocol="linear_probe",
                         metric="top1", value=90.0, is_main=True))
    assert HEAD[:7] == OLD_HEAD
    text = leaderboard_csv(rows)
    table = list(csv.DictReader(text.splitlines()))
    assert list(table[0])[:17] == [*OLD_HEAD, "mean_openclip35", "n_openclip35", "mean_datacomp38", "n_datacomp38",
                                   "mean_datacomp_shifts", "n_datacomp_shifts", "mean_datacomp_vtab",
                                   "n_datacomp_vtab", "mean_datacomp_retrieval", "n_datacomp_retrieval"]
    by = {(r["model"], r["protocol"]): r for r in table}
    zs = by[("all38", "zeroshot")]
    assert float(zs["mean_datacomp38"]) == pytest.approx(np.mean(list(full.values())), abs=0.005)
    assert int(zs["n_datacomp38"]) == 38 and int(zs["n_openclip35"]) == 35
    assert float(zs["mean_datacomp_retrieval"]) == pytest.approx(
        np.mean([full[t] for t in ("datacomp_flickr1k", "datacomp_mscoco5k", "datacomp_winogavil")]), abs=0.005)
    half = by[("half", "zeroshot")]
    assert half["mean_openclip35"] == "" and int(half["n_openclip35"]) == 19  # absent, with how many it has
    probe = by[("all38", "linear_probe")]
    assert probe["mean_openclip35"] == "" and probe["n_openclip35"] == ""  # zero-shot averages only
    board = protocol_table(rows)
    assert math.isnan(board.set_index("model").loc["half", "mean_datacomp38"])


def test_averages_agree_with_the_task_catalogue():
    """Where the catalogue has the DataComp tasks and collections, they are the averages' members and metrics."""
    from clip_bench.metrics.classification import main_metric_key
    from clip_bench.tasks.catalog import get_task, list_collections, list_tasks

    collections, known = list_collections(), set(list_tasks())
    members = average_specs()["datacomp38"].members
    shipped = [t for t in members if t in known]
    if not shipped and not {"openclip35", "datacomp38"} & set(collections):
        pytest.skip("the catalogue has no DataComp-protocol task yet")
    for task in shipped:
        assert main_metric_key(get_task(task).metric) == members[task], task
    for name in ("openclip35", "datacomp38"):
        if name in collections:
            assert sorted(collections[name]) == sorted(average_specs()[name].members), name


def test_each_task_is_its_latest_row_whole():
    """A re-run replaces the older row entirely: its interval and metric are never filled in from the older row
    (an interval of another value, a metric the latest row does not name counted as the member's)."""
    members = average_specs()["openclip35"].members
    rows = _rows("m", {t: 50.0 for t in members})
    iwildcam = next(r for r in rows if r["task"] == "datacomp_iwildcam")
    iwildcam.update(ci_low=18.0, ci_high=22.0, value=20.0)
    rerun = {**iwildcam, "value": 30.0, "ci_low": None, "ci_high": None, "date": "2024-02-01"}  # no interval
    values = line_values([*rows, rerun]).set_index("task")
    assert values.loc["datacomp_iwildcam", "value"] == 30.0
    assert math.isnan(values.loc["datacomp_iwildcam", "ci_low"]) and math.isnan(values.loc["datacomp_iwildcam",
                                                                                            "ci_high"])
    cifar = next(r for r in rows if r["task"] == "datacomp_cifar10")
    unnamed = {**cifar, "metric": None, "value": 99.0, "date": "2024-02-01"}  # a row that names no metric
    found = model_averages(line_values([*rows, unnamed]))[("m", "tag")]["openclip35"]
    assert found.value is None and found.present == 34 and found.missing[0].startswith("datacomp_cifar10")


def test_a_row_recording_a_limit_is_never_averaged_or_exported():
    """A results file from elsewhere may mark a --limit row standard: it is a subset all the same."""
    from clip_bench.report.export import datacomp_export

    members = average_specs()["datacomp38"].members
    rows = _rows("m", {t: 50.0 for t in members})
    cifar = next(r for r in rows if r["task"] == "datacomp_cifar10")
    limited = make_row(**{**{k: v for k, v in cifar.items() if k not in ("extra", "result_id")}, "value": 99.0,
                          "date": "2024-02-01", "standard": True, "limit": 10})
    assert limited["extra"]["limit"] == 10 and limited["standard"] is True
    values = line_values([*rows, limited]).set_index("task")
    assert values.loc["datacomp_cifar10", "value"] == 50.0
    assert model_averages(line_values([*rows, limited]))[("m", "tag")]["datacomp38"].value == pytest.approx(50.0)
    exported = {line["dataset"]: line["metrics"]["main_metric"] for line in datacomp_export([*rows, limited]).lines}
    assert exported["CIFAR-10"] == pytest.approx(0.5)
