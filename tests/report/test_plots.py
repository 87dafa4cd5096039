"""Every figure renders from generated rows to a real PNG of sensible size; logit ticks are round."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from clip_bench.report.plot_fewshot import fewshot_average_figure, fewshot_tasks_figure, shots_to_match_figure
from clip_bench.report.plot_robustness import plot_effective_robustness
from clip_bench.report.plotting import logit_ticks, save_png
from clip_bench.report.robustness import effective_robustness
from clip_bench.report.styles import MODEL_COLORS, model_styles
from clip_bench.report.synthetic import synthetic_rows
from clip_bench.results import fewshot


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


def test_effective_robustness_figure_with_one_shift(rows, tmp_path):
    keep = {"imagenet", "imagenet_sketch"}
    er, _ = effective_robustness([r for r in rows if r["task"] in keep])
    assert set(er["shift"]) == {"imagenet_sketch", "mean"}
    path, notes, fig = plot_effective_robustness(er, tmp_path / "er1.png", model_styles(rows))
    assert notes == [] and len([ax for ax in fig.axes if ax.get_visible()]) == 1
    assert_sensible_png(path, (400, 400))


def test_fewshot_figures_and_shots_to_match(rows, tmp_path):
    styles = model_styles(rows)
    curve = fewshot.curves(rows)
    zs, lp = fewshot.reference_lines(rows, "zeroshot"), fewshot.reference_lines(rows, "linear_probe")
    tasks = list(curve["task"].unique())
    assert_sensible_png(save_png(fewshot_tasks_figure(curve, zs, lp, {}, tasks, styles), tmp_path / "t.png"),
                        (900, 300))
    avg, refs = fewshot.average_curve(curve, zs, lp)
    assert_sensible_png(save_png(fewshot_average_figure(avg, refs, styles), tmp_path / "avg.png"))
    match = fewshot.shots_to_match(curve, zs, lp, fewshot.full_data_shots(rows))
    match.loc[0, ["shots", "status"]] = [float("nan"), fewshot.NOT_REACHED]  # the figure must cope with this
    fig = shots_to_match_figure(match, styles, (1, 16))
    assert "not\nreached" in [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert_sensible_png(save_png(fig, tmp_path / "m.png"), (500, 200))


def test_styles_are_fixed_by_first_appearance_and_unique():
    rows = [{"model": m, "pretrained": "", "date": d}
            for m, d in (("b", "2024-02"), ("a", "2024-03"), ("c", "2024-01"))]
    styles = model_styles(rows)
    assert [k[0] for k in styles] == ["c", "b", "a"]  # a model added later leaves the others' colours alone
    many = model_styles([{"model": f"m{i:03d}", "date": ""} for i in range(len(MODEL_COLORS) * 10)])
    assert len({(s.color, s.marker) for s in many.values()}) == len(many)


def test_logit_ticks_are_round_and_spread():
    ticks = logit_ticks(1.0, 99.0)
    assert ticks[0] == 1 and ticks[-1] <= 99 and len(ticks) <= 9
    assert logit_ticks(60, 80) == [60, 70, 80]
