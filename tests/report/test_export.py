"""Export to DataComp's eval_results.jsonl: the line format of its evaluate.py, fractions, only standard
DataComp-protocol rows, and the averages its aggregate_scores.py computes from the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clip_bench.report.export import datacomp_export, export_results, jsonl_text
from clip_bench.results.averages import average_specs
from clip_bench.results.leaderboard import protocol_table
from clip_bench.results.rows import append_rows, make_row
from clip_bench.util.errors import ClipBenchError

#: Written by hand from mlfoundations/datacomp evaluate.py: ``results[task_name] = {"key": task_key, "dataset":
#: task_name, "metrics": metrics}`` written as ``json.dumps(results[task_name]) + "\n"``, where ``metrics`` holds
#: the task's metrics and ``metrics["main_metric"] = metrics.get(tasklist main_metric, "acc1")``; tasklist.yml:
#: ``vtab/caltech101: {name: Caltech-101, main_metric: mean_per_class_recall}``, ``wilds/fmow: {name: FMoW,
#: main_metric: acc_worst_region}``.
CALTECH = ('{"key": "vtab/caltech101", "dataset": "Caltech-101", "metrics": {"mean_per_class_recall": 0.8125, '
           '"main_metric": 0.8125}}\n')
FMOW = '{"key": "wilds/fmow", "dataset": "FMoW", "metrics": {"acc_worst_region": 0.25, "main_metric": 0.25}}\n'


def _row(task, value, metric="top1", model="my-clip", **kw):
    return make_row(model=model, pretrained="run1", task=task, protocol="zeroshot", metric=metric, value=value,
                    is_main=True, date="2024-01-01", **kw)


def _aggregate_scores(path):
    """mlfoundations/datacomp aggregate_scores.py, get_aggregate_scores, as it reads the file."""
    df = pd.read_json(path, lines=True)
    df = pd.concat([df.drop(["metrics"], axis=1), df["metrics"].apply(pd.Series)], axis=1)
    df = df.dropna(subset=["main_metric"])
    assert len(df) == 38, f"Results file has unexpected size, {len(df)}"
    results = dict(zip(df.dataset, df.main_metric))
    groups = {
        "ImageNet dist. shifts": {"ImageNet Sketch", "ImageNet v2", "ImageNet-A", "ImageNet-O", "ImageNet-R",
                                  "ObjectNet"},
        "VTAB": {"Caltech-101", "CIFAR-100", "CLEVR Counts", "CLEVR Distance", "Describable Textures", "EuroSAT",
                 "KITTI Vehicle Distance", "Oxford Flowers-102", "Oxford-IIIT Pet", "PatchCamelyon", "RESISC45",
                 "SVHN", "SUN397"},
        "Retrieval": {"Flickr", "MSCOCO", "WinoGAViL"},
    }
    out = {"ImageNet": results["ImageNet 1k"]}
    for group, datasets in groups.items():
        out[group] = np.mean([results[d] for d in datasets])
    out["Average"] = np.mean(list(results.values()))
    return out


def test_lines_are_evaluate_py_lines():
    rows = [_row("datacomp_caltech101", 81.25, metric="mean_per_class_recall"),
            _row("datacomp_fmow", 25.0, metric="worst_group_top1")]
    export = datacomp_export(rows)
    assert jsonl_text(export.lines) == CALTECH + FMOW
    assert [json.loads(line) for line in (CALTECH + FMOW).splitlines()] == export.lines
    assert export.model == ("my-clip", "run1") and len(export.missing) == 36


def test_only_standard_rows_of_the_datacomp_tasks_and_metrics_are_exported():
    rows = [
        _row("datacomp_voc2007", 76.4),
        _row("voc2007", 83.1, metric="map_11point"),  # the paper protocol: another measurement
        _row("datacomp_cifar10", 90.0, standard=False),  # --limit or an override: not the published protocol
        _row("datacomp_caltech101", 80.0),  # its main metric must be mean per-class recall
        _row("datacomp_imagenet1k", 70.0, subset="imagenet_r"),  # a class subset
    ]
    export = datacomp_export(rows)
    assert [(line["dataset"], line["metrics"]) for line in export.lines] == [
        ("Pascal VOC 2007", {"acc1": pytest.approx(0.764), "main_metric": pytest.approx(0.764)})]
    assert {"datacomp_cifar10", "datacomp_caltech101", "datacomp_imagenet1k"} <= set(export.missing)
    with pytest.raises(ClipBenchError, match="no standard zero-shot rows of DataComp-protocol tasks"):
        datacomp_export(rows[1:3])


def test_exported_file_gives_datacomps_aggregate_scores(tmp_path):
    """All 38 tasks: DataComp's own aggregation of the file equals our averages (as fractions)."""
    members = average_specs()["datacomp38"].members
    rng = np.random.default_rng(1)
    rows = [_row(t, float(rng.uniform(5, 95)), metric=m) for t, m in members.items()]
    rows.append(_row("datacomp_imagenet1k", 50.0, model="other-model"))
    append_rows(tmp_path / "results", rows)
    with pytest.raises(ClipBenchError, match="name one with --model"):
        export_results(tmp_path / "results", tmp_path / "x.jsonl")
    export = export_results(tmp_path / "results", tmp_path, model="my-clip (run1)")
    assert export.path == tmp_path / "eval_results.jsonl" and not export.missing
    scores = _aggregate_scores(export.path)
    board = protocol_table(rows).set_index("model").loc["my-clip"]
    assert scores["Average"] == pytest.approx(board["mean_datacomp38"] / 100, abs=1e-12)
    assert scores["VTAB"] == pytest.approx(board["mean_datacomp_vtab"] / 100, abs=1e-12)
    assert scores["Retrieval"] == pytest.approx(board["mean_datacomp_retrieval"] / 100, abs=1e-12)
    assert scores["ImageNet dist. shifts"] == pytest.approx(board["mean_datacomp_shifts"] / 100, abs=1e-12)
    assert scores["ImageNet"] == pytest.approx(board["datacomp_imagenet1k"] / 100, abs=1e-12)


def test_export_never_overwrites_a_results_file(tmp_path):
    rows = [_row("datacomp_cifar10", 90.0)]
    results = append_rows(tmp_path / "results", rows)
    single = tmp_path / "run.jsonl"
    single.write_text(results.read_text(encoding="utf-8"), encoding="utf-8")
    before = results.read_bytes()
    for source, out in ((tmp_path / "results", results), (single, single), (tmp_path / "results",
                                                                              tmp_path / "other" / "results.jsonl")):
        kept = Path(out).read_bytes() if Path(out).exists() else None
        with pytest.raises(ClipBenchError, match="is a results file of clip-bench"):
            export_results(source, out)
        assert (Path(out).read_bytes() if Path(out).exists() else None) == kept
    assert results.read_bytes() == before
    written = export_results(tmp_path / "results", tmp_path / "results").path  # a folder: eval_results.jsonl in it
    assert written == tmp_path / "results" / "eval_results.jsonl"
