"""The report's figures, inspected as Figure objects: one colour and marker per model in every figure,
legends that show only what is drawn, labels off the markers, error bars from 95 % intervals, local style."""

from __future__ import annotations

import matplotlib
import pytest
from figure_checks import label_marker_overlaps, legend_entries, model_colors, unmatched_legend_entries

from clip_bench.report import build_report
from clip_bench.report.synthetic import synthetic_rows
from clip_bench.results.rows import append_rows

MODELS = (("ViT-B/32", "openai"), ("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-B/16", "openai"),
          ("ViT-L-14", "laion2b_s32b_b82k"))
SHIFTS = {"imagenetv2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet"}
LABELS = {f"{m} ({p})" for m, p in MODELS}
pytestmark = pytest.mark.slow  # two full reports (about 5 s each)


def _rows(intervals: bool) -> list[dict]:
    rows = synthetic_rows(models=MODELS, fewshot_tasks=3, seeds=2, intervals=intervals)
    # the first model has no shift results (so it is absent from the robustness figure) and the
    # third lacks one few-shot task: colours must still not move between figures
    rows = [r for r in rows if not (r["model"] == "ViT-B/32" and r["task"] in SHIFTS)]
    return [r for r in rows
            if not (r["model"] == "ViT-B/16" and r["task"] == "cifar100" and "fewshot" in r["protocol"])]


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "intervals"])
def report(request, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    append_rows(results, _rows(request.param))
    before = dict(matplotlib.rcParams)
    summary = build_report(results, tmp_path_factory.mktemp("out"), quiet=True)
    return summary, before, request.param


def test_every_figure_is_built(report):
    summary, _, _ = report
    assert set(summary.figures) == {"effective_robustness", "fewshot_average", "fewshot_tasks", "shots_to_match"}


def test_a_model_keeps_its_colour_in_every_figure(report):
    summary, _, _ = report
    seen: dict[str, set[str]] = {}
    for name, fig in summary.figures.items():
        colors = model_colors(fig, LABELS)
        assert colors, f"{name} names no model in its legend"
        for label, color in colors.items():
            seen.setdefault(label, set()).add(color)
    assert "ViT-B/32 (openai)" not in model_colors(summary.figures["effective_robustness"], LABELS)
    assert all(len(c) == 1 for c in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == len(seen), "two models share a colour"


def test_legends_show_only_what_is_drawn(report):
    summary, _, _ = report
    for name, fig in summary.figures.items():
        assert unmatched_legend_entries(fig) == [], name
        texts = [t for t, _ in legend_entries(fig)]
        assert len(texts) == len(set(texts)), f"{name}: repeated legend entries {texts}"


def test_no_label_overlaps_a_marker(report):
    summary, _, _ = report
    er = summary.figures["effective_robustness"]
    assert sum(len(ax.texts) for ax in er.axes) == 3 * 6  # one label per drawn model and panel
    for name, fig in summary.figures.items():
        assert label_marker_overlaps(fig) == [], name


def test_error_bars_come_from_intervals(report):
    summary, _, intervals = report
    er = summary.figures["effective_robustness"]
    n_bars = sum(1 for ax in er.axes for c in ax.containers if c.__class__.__name__ == "ErrorbarContainer")
    assert n_bars == (3 * 6 if intervals else 0)


def test_matplotlib_global_state_is_untouched(report):
    _, before, _ = report
    assert dict(matplotlib.rcParams) == before
