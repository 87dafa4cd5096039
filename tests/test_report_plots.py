"""Every plot renders from generated rows to a real PNG of sensible size."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from clip_bench.report import fewshot
from clip_bench.report.plot_fewshot import plot_curves, plot_shots_to_match, references
from clip_bench.report.plot_robustness import plot_effective_robustness
from clip_bench.report.plotting import logit_ticks
from clip_bench.report.robustness import effective_robustness
from clip_bench.report.synthetic import synthetic_rows


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path, min_px: tuple[int, int] = (500, 300)) -> None:
    width, height = png_size(path)
    assert min_px[0] <= width <= 3000 and min_px[1] <= height <= 3000, (path.name, width, height)
    assert path.stat().st_size > 15_000, f"{path.name} looks empty ({path.stat().st_size} bytes)"


@pytest.fixture(scope="module")
def rows():
    return synthetic_rows(fewshot_tasks=3, seeds=2)


def test_effective_robustness_figure(rows, tmp_path):
    er, _ = effective_robustness(rows)
    path, notes = plot_effective_robustness(er, tmp_path / "er.png")
    assert notes == []
    assert_sensible_png(path, (1000, 700))  # 5 shift panels + the average panel


def test_effective_robustness_figure_with_one_shift(rows, tmp_path):
    keep = {"imagenet", "imagenet_sketch"}
    er, _ = effective_robustness([r for r in rows if r["task"] in keep])
    assert set(er["shift"]) == {"imagenet_sketch", "mean"}
    path, _ = plot_effective_robustness(er, tmp_path / "er1.png")
    assert_sensible_png(path, (400, 400))


def test_fewshot_curves_and_shots_to_match(rows, tmp_path):
    curve = fewshot.curves(rows)
    zs = fewshot.reference_lines(rows, "zeroshot")
    lp = fewshot.reference_lines(rows, "linear_probe")
    task = curve["task"].iloc[0]
    one = plot_curves(curve[curve["task"] == task], references(zs, task), references(lp, task), task,
                      "Top-1 accuracy (%)", tmp_path / "task.png")
    assert_sensible_png(one)
    avg, avg_zs = fewshot.average_curve(curve, zs)
    both = plot_curves(avg, {k: v[0] for k, v in avg_zs.items()}, {}, "average", "Mean (%)", tmp_path / "avg.png")
    assert_sensible_png(both)
    match = fewshot.shots_to_match(curve, zs)
    match.loc[0, ["shots", "status"]] = [float("nan"), "not reached"]  # the bar chart must cope with this
    bars = plot_shots_to_match(match, "ViT-B/32", "openai", (1, 16), tmp_path / "bars.png")
    assert_sensible_png(bars, (500, 200))


def test_logit_ticks_are_round_and_spread():
    ticks = logit_ticks(1.0, 99.0)
    assert ticks[0] == 1 and ticks[-1] <= 99 and len(ticks) <= 9
    assert logit_ticks(60, 80) == [60, 70, 80]
