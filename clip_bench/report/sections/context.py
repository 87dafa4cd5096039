"""The state one report is built from, shared by its sections, and the formatting they share (model cells with
their swatch, cells with intervals, CSV text, counted nouns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import clip_bench.report.html as html
from clip_bench.report.html import Cell, Section
from clip_bench.report.styles import ModelStyle, swatch_svg
from clip_bench.report.summary import ReportSummary
from clip_bench.results import fewshot as fs
from clip_bench.results.tables import KEY, main_values


def _empty_curve() -> pd.DataFrame:
    return pd.DataFrame(columns=fs.CURVE_COLUMNS)


@dataclass
class ReportContext:
    """The state one report is built from: the standard rows, where files go, each model's style, the summary
    being filled and the comparison with published numbers; what the sections add to the page (``figures``,
    ``tables``, ``headlines``) and what later sections or the page's summary read (``model_columns``: per summary
    column, a value per model; ``er``; ``curve``, the few-shot curves)."""

    rows: list[dict[str, Any]]
    out: Path
    plots: Path
    styles: dict[tuple[str, str], ModelStyle]
    summary: ReportSummary
    comparison: pd.DataFrame
    figures: list[Section] = field(default_factory=list)
    tables: list[Section] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)
    model_columns: dict[str, dict[tuple[str, str], Any]] = field(default_factory=dict)
    er: pd.DataFrame = field(default_factory=pd.DataFrame)
    curve: pd.DataFrame = field(default_factory=_empty_curve)

    def model_cell(self, key: tuple[str, str]) -> Cell:
        """The model's name with its colour and marker swatch."""
        st = self.styles.get(key)
        sw = swatch_svg(st) if st else ""
        return Cell(sw + html.esc(key[0]), key[0])

    def keyed(self, df: pd.DataFrame) -> tuple[list[str], list[list[Cell]]]:
        """Cells of a frame whose first columns are model, pretrained: the model cell gets its swatch."""
        header, cells = html.frame_cells(df)
        for row, key in zip(cells, zip(df["model"], df["pretrained"])):
            row[0] = self.model_cell(key)
        return header, cells

    def interval_cells(self, df: pd.DataFrame, protocol: str, header: list[str], cells: list[list[Cell]]) -> None:
        """Replace task cells by ``value ± half-width`` where the row carries a 95 % interval."""
        values = main_values(self.rows, protocol)
        values = values[(values["subset"] == "") & values["ci_low"].notna()]
        ci = {(m, p, t): (v, lo, hi) for m, p, t, v, lo, hi in
              values[[*KEY, "task", "value", "ci_low", "ci_high"]].itertuples(index=False)}
        if not ci:
            return
        for row, key in zip(cells, zip(df["model"], df["pretrained"])):
            for i, col in enumerate(header):
                if (*key, col) in ci:
                    v, lo, hi = ci[(*key, col)]
                    row[i] = Cell(html.esc(html.with_interval(v, lo, hi)), repr(float(v)), True)

    def fewshot_interval_cells(self, board: pd.DataFrame, header: list[str], cells: list[list[Cell]]) -> None:
        """Few-shot task cells with the aggregate row's 95 % interval, where it has one."""
        curve = self.curve[self.curve["err_kind"] == fs.CI_BARS]
        ci = {(m, p, t, int(k)): (v, v - lo, v + hi) for m, p, t, k, v, lo, hi in
              curve[[*KEY, "task", "k", "mean", "err_low", "err_high"]].itertuples(index=False)}
        if not ci:
            return
        for row, (m, p, k) in zip(cells, zip(board["model"], board["pretrained"], board["k"])):
            for i, col in enumerate(header):
                if (m, p, col, int(k)) in ci:
                    v, lo, hi = ci[(m, p, col, int(k))]
                    row[i] = Cell(html.esc(html.with_interval(v, lo, hi)), repr(float(v)), True)


def csv_text(df: pd.DataFrame) -> str:
    """A table as the report writes its CSV files (no index, two decimals)."""
    return df.to_csv(index=False, float_format="%.2f")


def plural(n: int, word: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
