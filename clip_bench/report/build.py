"""``build_report``: every reporter from one results folder (CSV tables, figures, one self-contained HTML page).

The page reads top-down: a summary (models, means, effective robustness, the few-shot headline), then
the figures, then the tables, with a table of contents. Every figure and table takes each model's
colour and marker from one map computed once from all rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clip_bench.report import html
from clip_bench.report.html import Cell, Section
from clip_bench.report.markdown import to_markdown
from clip_bench.report.published import SOURCE_LABEL, compare_published, summary_lines
from clip_bench.report.reference import testbed_shifts
from clip_bench.report.retrieval import retrieval_section
from clip_bench.report.robustness import effective_robustness
from clip_bench.report.styles import ModelStyle, model_styles, swatch_svg
from clip_bench.results import fewshot as fs
from clip_bench.results.leaderboard import HEAD, MEANS, leaderboard_csv, protocol_table, protocols
from clip_bench.results.rows import (
    RESULTS_FILE,
    display_name,
    is_standard,
    model_key,
    model_label,
    shown_name,
    variant_name,
)
from clip_bench.results.tables import KEY, Rows, all_metrics_table, load_rows, main_values, task_order
from clip_bench.tasks.catalog import headline_collections
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import probe_writable_dir, write_text_atomic
from clip_bench.util.progress import progress_bar

PLOTS_DIR = "plots"
DEFAULT_OUT = Path("report")
#: Files only build_report writes; any not rewritten by this run describe older data and are removed.
OWNED = ("leaderboard.md", "published_comparison.csv", "effective_robustness.csv", "shots_to_match.csv",
         "shots_to_match_summary.csv", "fewshot_curves.csv", "retrieval.csv")
OWNED_PLOTS = ("effective_robustness.png", "fewshot_*.png", "shots_to_match*.png")


class ReportWriteError(ClipBenchError):
    """A report file that could not be written (a full disk, a read-only folder, a file where a folder belongs);
    ``lines`` are the summary lines the report had computed until then."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = list(lines or [])


@dataclass
class ReportSummary:
    """What ``build_report`` did: ``lines`` to print, the ``files`` it wrote, the tables and figures behind them."""

    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None

    def skip(self, part: str, why: str) -> None:
        line = f"skipped {part}: {why}"
        self.skipped.append(line)
        self.lines.append(line)

    def _inside(self, path: Path) -> Path:
        if self.out is not None and not path.resolve().is_relative_to(self.out.resolve()):
            raise ClipBenchError(f"refusing to write {path}: outside the report folder {self.out}")
        return path

    def cannot_write(self, path: Path, exc: OSError) -> ReportWriteError:
        """The one-line error for a report file that could not be written, with the lines computed so far."""
        return ReportWriteError(f"cannot write the report file {path} ({exc.strerror or type(exc).__name__}); free "
                                "some space or pass --out to a writable folder.", self.lines)

    def write(self, path: Path, text: str) -> Path:
        try:
            write_text_atomic(self._inside(path), text)
        except OSError as exc:
            raise self.cannot_write(path, exc) from None
        self.files.append(path)
        return path

    def save_figure(self, name: str, fig: Any, path: Path) -> Path:
        from clip_bench.report.plotting import save_png

        try:
            save_png(fig, self._inside(path))
        except OSError as exc:
            raise self.cannot_write(path, exc) from None
        self.files.append(path)
        self.figures[name] = fig
        return path

    def section(self, part: str, build: Callable[[], None]) -> None:
        """Build one part of the report; if it fails (other than by a file that cannot be written), the part is
        one skipped line and the other parts are kept."""
        try:
            build()
        except (ClipBenchError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the others
            self.skip(part,
                      f"it failed ({type(exc).__name__}: {str(exc) or 'no message'}); the other parts are complete")


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.2f")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def build_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    reference_only: bool = False,
    quiet: bool = False,
) -> ReportSummary:
    """Read every result row under `results_dir` and write the report to `out_dir` (default ``./report``).

    Writes ``report.html`` (summary, figures, tables), ``leaderboard.csv`` (the same schema a run
    writes) and ``leaderboard.md``, ``all_metrics.csv`` (every row once), ``published_comparison.csv``,
    ``effective_robustness.csv``, ``fewshot_curves.csv``, ``shots_to_match.csv`` (per task) and
    ``shots_to_match_summary.csv`` (per model), and PNGs under ``plots/``. A part whose inputs are
    missing is skipped with one line saying why. Rows marked not standard (subsets, overrides) are
    left out of every table and figure but kept in ``all_metrics.csv``. With `reference_only`,
    nothing is written: only the comparison against published numbers is returned (``lines``).

    Args:
        results_dir: A folder searched for ``results.jsonl`` files (with its subfolders), or one such file.
        out_dir: Where the report is written (default ``./report``).
        reference_only: Only compare with the published numbers; write nothing.
        quiet: No progress output.
    """
    root = Path(results_dir)
    if not root.exists():
        raise ClipBenchError(f"results folder {root} does not exist; "
                             "pass --results DIR (the --output-dir of your runs)")
    loaded = load_rows(root)
    if not loaded.rows:
        raise ClipBenchError(
            f"no result rows under {root} (looked for {RESULTS_FILE} there and in subfolders); run e.g. "
            f"`clip-bench zeroshot --model tiny-clip-digits --task digits --output-dir {root}` first, "
            "or pass --results DIR"
        )
    rows = loaded.standard
    summary = ReportSummary()
    comparison = compare_published(rows)
    summary.tables["published"] = comparison
    if reference_only:
        summary.lines.extend(summary_lines(comparison, detailed=True) or [
            "no evaluated model has published numbers (CLIP paper: OpenAI names such as ViT-B/32 with "
            "pretrained 'openai'; open_clip: architecture and pretrained tag as in its results table)"
        ])
        return summary

    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    summary.out = out
    _check_writable(out)
    styles = model_styles(loaded.rows)
    models = {model_key(r) for r in rows}  # a model is a fingerprint, whatever it was called
    summary.lines.append(_read_line(loaded, len(models)))
    steps = progress_bar(total=5, desc="report", unit="part", quiet=quiet)
    ctx = _Context(rows, out, out / PLOTS_DIR, styles, summary, comparison)
    summary.section("leaderboard", ctx.leaderboards)
    steps.update()
    summary.section("effective robustness", ctx.robustness)
    steps.update()
    summary.section("few-shot", ctx.fewshot)
    steps.update()
    summary.section("published comparison", ctx.published)
    summary.section("paired comparisons", lambda: ctx.comparisons(root))
    steps.update()
    metrics = all_metrics_table(loaded.rows)
    summary.tables["all_metrics"] = metrics
    summary.write(out / "all_metrics.csv", metrics.to_csv(index=False))
    page = ctx.page(loaded, metrics)
    summary.write(out / "report.html", page)
    steps.update()
    steps.close()
    summary.lines.append(f"wrote {len(summary.files)} files to {out} (open {out / 'report.html'})")
    try:
        stale = _remove_stale(out, summary.files)
    except OSError as exc:
        raise ReportWriteError(f"cannot remove a file left in {out} by an earlier report "
                               f"({exc.strerror or type(exc).__name__}: {exc.filename}); it would describe older data. "
                               "Remove it, or pass --out to an empty folder.", summary.lines) from None
    if stale:
        summary.lines.append(f"removed {len(stale)} file(s) left by an earlier report: "
                             f"{', '.join(p.name for p in stale)}")
    return summary


def _check_writable(out: Path) -> None:
    """A clear error now (before any work) when the report could not be written to `out`."""
    try:
        probe_writable_dir(out)
    except OSError as exc:
        raise ReportWriteError(f"cannot write the report to {out} ({exc.strerror or type(exc).__name__}); make it a "
                               "writable folder or pass --out to another folder.") from None


def _read_line(loaded: Rows, n_models: int) -> str:
    line = (f"read {len(loaded.rows)} rows from {_plural(len(loaded.files), 'results file')}: "
            f"{_plural(n_models, 'model')}")
    extra = []
    if loaded.duplicates:
        extra.append(f"{loaded.duplicates} repeated rows collapsed to the latest")
    if loaded.malformed:
        lines = loaded.skipped_lines
        more = f"; +{len(lines) - 3} more" if len(lines) > 3 else ""
        extra.append(f"{loaded.malformed} malformed rows skipped"
                     + (f": {'; '.join(lines[:3])}{more}" if lines else ""))
    if loaded.nonstandard:
        extra.append(f"{len(loaded.nonstandard)} non-standard rows (subsets, overrides) left out of tables and figures")
    return line + (f" ({'; '.join(extra)})" if extra else "")


def _remove_stale(out: Path, written: list[Path]) -> list[Path]:
    keep = {p.resolve() for p in written}
    candidates = [out / n for n in OWNED] + [p for pat in OWNED_PLOTS for p in (out / PLOTS_DIR).glob(pat)]
    stale = [p for p in candidates if p.is_file() and p.resolve() not in keep]
    for p in stale:
        p.unlink()
    return stale


def _fmt_shots(v: float) -> str:
    return "" if v is None or not math.isfinite(v) else (f"{v:.1f}" if v < 100 else f"{v:.0f}")


class _Context:
    """The state one report is built from, and one method per part (each fills the summary and page sections)."""

    def __init__(self, rows: list[dict[str, Any]], out: Path, plots: Path, styles: dict[tuple[str, str], ModelStyle],
                 summary: ReportSummary, comparison: pd.DataFrame) -> None:
        self.rows, self.out, self.plots, self.styles = rows, out, plots, styles
        self.summary, self.comparison = summary, comparison
        self.figures: list[Section] = []
        self.tables: list[Section] = []
        self.headlines: list[str] = []
        self.model_columns: dict[str, dict[tuple[str, str], Any]] = {}
        self.er: pd.DataFrame = pd.DataFrame()
        self.curve: pd.DataFrame = pd.DataFrame(columns=fs.CURVE_COLUMNS)

    # --- shared cell formatting ------------------------------------------------------------------

    def model_cell(self, key: tuple[str, str]) -> Cell:
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

    # --- parts -----------------------------------------------------------------------------------

    def leaderboards(self) -> None:
        s = self.summary
        s.write(self.out / "leaderboard.csv", leaderboard_csv(self.rows))
        self.curve = fs.curves(self.rows)
        found = protocols(self.rows)
        groups = headline_collections()
        md: list[str] = []
        children: list[Section] = []
        for protocol, title in (("zeroshot", "zero-shot"), ("linear_probe", "linear probe (all training data)")):
            if protocol not in found:
                continue
            board = protocol_table(self.rows, protocol).drop(columns="protocol")
            board = _drop_empty_means(board)
            s.tables[f"leaderboard_{protocol}"] = board
            if protocol == "zeroshot":
                s.tables["leaderboard"] = board
            n_tasks = len([c for c in board.columns if c not in HEAD])
            s.lines.append(f"leaderboard {title}: {_plural(len(board), 'model')} x {_plural(n_tasks, 'task')}")
            for col in ("mean_clip27", "mean_shifts"):
                if col in board:
                    self.model_columns.setdefault(f"{protocol}:{col}", {}).update(
                        {(m, p): (v, n) for m, p, v, n in
                         board[[*KEY, col, col.replace("mean_", "n_")]].itertuples(index=False)})
            tasks_cols = [c for c in board.columns if c not in HEAD]
            self.model_columns.setdefault(f"{protocol}:tasks", {}).update(
                {(m, p): int(n) for m, p, n in zip(board["model"], board["pretrained"],
                                                   board[tasks_cols].notna().sum(axis=1))})
            header, cells = self.keyed(board)
            self.interval_cells(board, protocol, header, cells)
            caption = _means_caption(board, groups) + _interval_note(self.rows, protocol)
            if protocol == "linear_probe":
                caption += _grid_edge_note(self.rows)
            md += [f"## Leaderboard: {title}\n", caption.replace("`", "") + "\n", to_markdown(board, ".1f")]
            children.append(Section(f"Leaderboard: {title}", [html.paragraph(caption), html.table(header, cells)]))
        fewshot_protocols = [p for p in found if fs.shots_of(p)]
        if fewshot_protocols:
            parts = []
            for p in fewshot_protocols:
                t = protocol_table(self.rows, p, self.curve)
                t.insert(2, "k", fs.shots_of(p))
                parts.append(t.drop(columns="protocol"))
            board = _drop_empty_means(pd.concat(parts, ignore_index=True))
            tasks = task_order(c for c in board.columns if c not in [*HEAD, "k"])
            board = board[[c for c in [*KEY, "k", *MEANS] if c in board] + tasks]
            board = board.sort_values([*KEY, "k"], kind="stable").reset_index(drop=True)
            s.tables["leaderboard_fewshot"] = board
            header, cells = self.keyed(board)
            caption = ("k-shot linear probe, mean over seeds, one line per model and k. "
                       + _means_caption(board, groups))
            self.fewshot_interval_cells(board, header, cells)
            children.append(Section("Leaderboard: few-shot", [html.paragraph(caption), html.table(header, cells)]))
        for title, blocks in retrieval_section(self.rows, self.out, s):
            children.append(Section(title, blocks))
        if not children:
            s.skip("leaderboard", "no standard main-metric rows")
            return
        s.write(self.out / "leaderboard.md", "# Leaderboard\n\n" + "\n".join(md))
        self.tables.extend(children)

    def robustness(self) -> None:
        s = self.summary
        shifts = list(testbed_shifts()["shifts"])
        zs = main_values(self.rows, "zeroshot")
        if not zs["task"].isin(shifts).any():
            s.skip("effective robustness", f"no zero-shot results on an ImageNet shift ({', '.join(shifts)})")
            return
        er, notes = effective_robustness(self.rows)
        s.notes.extend(notes)
        if er.empty:
            s.skip("effective robustness", "shift results exist but no model also has an ImageNet result")
            return
        from clip_bench.report.plot_robustness import effective_robustness_figure

        self.er = er
        s.tables["effective_robustness"] = er
        s.write(self.out / "effective_robustness.csv", _csv(er))
        fig, plot_notes = effective_robustness_figure(er, self.styles)
        path = s.save_figure("effective_robustness", fig, self.plots / "effective_robustness.png")
        s.notes.extend(plot_notes)
        for r in er[er["shift"] == "mean"].itertuples():
            s.lines.append(f"effective robustness: {display_name(r.model, r.pretrained)} {r.protocol} "
                           f"{r.effective_robustness:+.2f} points (mean over {_plural(r.n_shifts, 'shift')})")
        has_ci = er["er_ci_low"].notna().any()
        has_bars = er["acc_ci_low"].notna().any() or er["x_ci_low"].notna().any()
        self.figures.append(Section("Effective robustness", [html.figure(
            path, "effective robustness panels",
            "Shift accuracy against ImageNet accuracy (logit axes) for the imagenet-testbed models and ours; the "
            "label and the vertical segment are each model's effective robustness, in points above the baseline fit"
            + ("; error bars: 95% intervals of the ImageNet and shift accuracies" if has_bars else "") + ".")]))
        labels = {s_: testbed_shifts()["shifts"][s_]["label"] for s_ in shifts}
        wide = er[~er["shift"].isin(["mean"])].copy()
        wide["column"] = wide["shift"].map(lambda x: labels.get(x, "average panel"))
        if has_ci:
            wide["cell"] = [html.with_interval(v, lo, hi) for v, lo, hi in
                            zip(wide["effective_robustness"], wide["er_ci_low"], wide["er_ci_high"])]
        else:
            wide["cell"] = [html.fmt_value(v) for v in wide["effective_robustness"]]
        table = wide.pivot_table(index=[*KEY, "protocol"], columns="column", values="cell", aggfunc="last")
        table.columns.name = None
        mean = er[er["shift"] == "mean"].set_index([*KEY, "protocol"])
        table[f"mean of the {len(shifts)} shifts"] = mean["effective_robustness"].map(html.fmt_value)
        table["shifts in mean"] = mean["n_shifts"]
        cols = [f"mean of the {len(shifts)} shifts", "shifts in mean",
                *[labels[x] for x in shifts if labels[x] in table]]
        if "average panel" in table:
            cols.append("average panel")
        table = table[cols].reset_index()
        header, cells = self.keyed(table)
        for row in cells:
            for c in row[3:]:
                c.numeric = True
        self.tables.append(Section("Effective robustness", [
            html.paragraph(
                "Effective robustness in points: shift accuracy minus the testbed baseline's prediction at the model's "
                f"ImageNet accuracy. `mean of the {len(shifts)} shifts` averages the per-shift values a model has; "
                "`average panel` is mean shift accuracy against the baseline fitted to the testbed's mean over all "
                "shifts (the last panel of the figure, only for models with every shift). ImageNet-R, -A and ObjectNet "
                "use ImageNet accuracy on their own classes as x"
                + ("; ± gives the 95% interval (a bootstrap over the model's test sets and the testbed models "
                   "behind the baseline fit)." if has_ci else ".")
            ),
            html.table(header, cells),
            html.details(f"Per-shift details ({len(er)} rows, also in effective_robustness.csv)",
                         [html.df_table(er.drop(columns=[c for c in er.columns if c.endswith(("ci_low", "ci_high"))
                                                         and not has_ci]), digits=2, sortable=True)]),
        ]))
        self.model_columns["er"] = {(r.model, r.pretrained): (r.effective_robustness, r.n_shifts)
                                    for r in er[(er["shift"] == "mean") & (er["protocol"] == "zeroshot")].itertuples()}

    def fewshot(self) -> None:
        s = self.summary
        curve = self.curve
        if curve.empty:
            s.skip("few-shot", "no fewshot_k* rows")
            return
        from clip_bench.report.plot_fewshot import fewshot_average_figure, fewshot_tasks_figure, shots_to_match_figure

        s.tables["fewshot"] = curve
        s.write(self.out / "fewshot_curves.csv", _csv(curve))
        zs, lp = fs.reference_lines(self.rows, "zeroshot"), fs.reference_lines(self.rows, "linear_probe")
        metric = {r["task"]: r["metric"] for r in self.rows if r.get("is_main") and not r.get("subset")}
        tasks = task_order(curve["task"].unique())
        ks = sorted(int(k) for k in curve["k"].unique())
        s.lines.append(f"few-shot: {_plural(len(tasks), 'task')}, k = {ks}")
        bars = set(curve["err_kind"])
        bar_text = (f"{fs.CI_BARS} where the rows carry one, else {fs.STD_BARS}" if len(bars) > 1
                    else next(iter(bars)))
        avg, refs = fs.average_curve(curve, zs, lp)
        shown_avg, shown_refs = self._average_group(avg, refs)
        if shown_refs and max(len(r["tasks"]) for r in shown_refs.values()) > 1:
            fig = fewshot_average_figure(shown_avg, shown_refs, self.styles)
            path = s.save_figure("fewshot_average", fig, self.plots / "fewshot_average.png")
            self.figures.append(Section("Few-shot: average over tasks", [html.figure(
                path, "few-shot average", "Task-averaged score of k-shot linear probes (mean over seeds, bars: "
                f"{bar_text}) per model; zero-shot at k = 0 and, when every task has one, the full-data probe at "
                "\"all\" (CLIP paper Fig. 6 style).")]))
        fig = fewshot_tasks_figure(curve, zs, lp, metric, tasks, self.styles)
        path = s.save_figure("fewshot_tasks", fig, self.plots / "fewshot_tasks.png")
        self.figures.append(Section("Few-shot: per task", [html.figure(
            path, "few-shot per task", f"Per task: k-shot linear probe (mean over seeds, bars: {bar_text}), zero-shot "
            "at k = 0 and the linear probe on all training data at \"all\", each model in its own colour and "
            "marker.")]))
        headline = fs.average_match(avg, refs)
        s.tables["fewshot_average_match"] = headline
        for r in headline.itertuples():
            text = _headline_text(r)
            s.lines.append(f"few-shot: {display_name(r.model, r.pretrained)}: {text}")
        self.model_columns["avg_match"] = {(r.model, r.pretrained): r for r in headline.itertuples()}
        full_k = fs.full_data_shots(self.rows)
        match = fs.shots_to_match(curve, zs, lp, full_k)
        if match.empty:
            s.skip("shots to match zero-shot", "no task has both few-shot and zero-shot results")
            return
        per_model = fs.match_summary(match)
        s.tables["shots_to_match"], s.tables["shots_to_match_summary"] = match, per_model
        s.write(self.out / "shots_to_match.csv", _csv(match))
        s.write(self.out / "shots_to_match_summary.csv", _csv(per_model))
        for r in per_model.itertuples():
            s.lines.append(f"shots to match zero-shot: {display_name(r.model, r.pretrained)} median "
                           f"{_fmt_shots(r.median_shots) or 'n/a'}, mean {_fmt_shots(r.mean_shots) or 'n/a'} over "
                           f"{_plural(r.n_tasks, 'task')} ({r.n_extrapolated} extrapolated, "
                           f"{r.n_not_reached} not reached)")
        self.model_columns["median_shots"] = {(r.model, r.pretrained): r for r in per_model.itertuples()}
        fig = shots_to_match_figure(match, self.styles, (ks[0], ks[-1]))
        path = s.save_figure("shots_to_match", fig, self.plots / "shots_to_match.png")
        n_full = int(match["status"].eq(fs.TO_FULL).sum())
        n_below = int(match["status"].eq(fs.BELOW).sum())
        self.figures.append(Section("Shots to match zero-shot", [html.figure(
            path, "shots to match zero-shot", "Examples per class a linear probe needs to equal zero-shot, "
            f"interpolated in log2(k) through the {', '.join(map(str, ks))}-shot points and the full-data probe "
            f"(CLIP paper Fig. 7); {n_full} via the full-data point, {n_below} extrapolated below k = {ks[0]}.")]))
        wide = match.pivot_table(index=KEY, columns="task", values="shots", aggfunc="last")
        status = match.pivot_table(index=KEY, columns="task", values="status", aggfunc="last")
        cols = task_order(wide.columns)
        table = per_model.merge(wide[cols].reset_index(), on=KEY, how="left")
        header, cells = self.keyed(table)
        marks = {fs.BELOW: " (e)", fs.TO_FULL: " (f)", fs.AT_MIN: " (≤)"}
        for n, (row, key) in enumerate(zip(cells, zip(table["model"], table["pretrained"]))):
            for i, col in enumerate(header):
                if col in cols and isinstance(status.loc[key, col], str):
                    v = float(wide.loc[key, col])
                    text = _fmt_shots(v) + marks.get(status.loc[key, col], "") if math.isfinite(v) else "not reached"
                    row[i] = Cell(html.esc(text), repr(v) if math.isfinite(v) else "1e9", True)
                elif col in ("median_shots", "mean_shots"):
                    v = float(table.loc[n, col])
                    row[i] = Cell(html.esc(_fmt_shots(v)), repr(v) if math.isfinite(v) else "", True)
        self.tables.append(Section("Shots to match zero-shot", [
            html.paragraph("Labelled examples per class a few-shot linear probe needs to equal zero-shot. "
                           "`median_shots` and `mean_shots` are over the tasks with a value (`n_tasks`). Marks: (f) "
                           "between the largest k and the full-data probe, (e) extrapolated below the smallest k, (≤) "
                           "already matched at the smallest k; \"not reached\": even the full-data probe (or, without "
                           "one, the largest k) stays below zero-shot. Per-task rows: shots_to_match.csv; per-model: "
                           "shots_to_match_summary.csv."),
            html.table(header, cells, sortable=True),
        ]))

    def _average_group(self, avg: pd.DataFrame, refs: dict[tuple[str, str], dict[str, Any]]
                       ) -> tuple[pd.DataFrame, dict[tuple[str, str], dict[str, Any]]]:
        """The models whose averages cover the same tasks (the largest such set): only those share a panel."""
        if not refs:
            return avg, refs
        sets: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for key, r in refs.items():
            sets.setdefault(tuple(sorted(r["tasks"])), []).append(key)
        best = max(sets, key=lambda t: (len(t), len(sets[t])))
        keep = set(sets[best])
        left = [display_name(*k) for k in refs if k not in keep]
        if left:
            self.summary.notes.append(
                f"few-shot average panel: {', '.join(left)} left out (their few-shot tasks differ from the "
                f"{_plural(len(best), 'task')} the others share; see the per-task panels)")
        mask = [k in keep for k in zip(avg["model"], avg["pretrained"])]
        return avg[mask], {k: v for k, v in refs.items() if k in keep}

    def published(self) -> None:
        s, comparison = self.summary, self.comparison
        if comparison.empty:
            s.skip("published comparison", "no evaluated model matches a CLIP-paper or open_clip row")
            return
        s.write(self.out / "published_comparison.csv", _csv(comparison))
        lines = summary_lines(comparison)
        s.lines.extend(lines)
        overview = []
        for (model, pretrained, protocol, source), g in comparison.groupby([*KEY, "protocol", "source"], sort=False):
            flagged = g[g["flagged"]]
            overview.append({
                "model": model, "pretrained": pretrained, "protocol": protocol,
                "against": f"{SOURCE_LABEL[source]} [{g['published_model'].iloc[0]}]", "tasks": len(g),
                "mean Δ": g["delta"].mean(), "mean |Δ|": g["delta"].abs().mean(), "|Δ| > 1": len(flagged),
                "tasks more than 1 point off": ", ".join(f"{r.task} {r.delta:+.1f}" for r in flagged.itertuples()),
            })
        over = pd.DataFrame(overview)
        o_header, o_cells = html.frame_cells(over, digits=2)
        for row, key in zip(o_cells, zip(over["model"], over["pretrained"])):
            row[0] = self.model_cell(key)
        n_flagged = int(comparison["flagged"].sum())
        shown = comparison.assign(flagged=comparison["flagged"].map({True: "|Δ| > 1", False: ""}))
        header, cells = self.keyed(shown)
        self.tables.append(Section("Against published numbers", [
            html.paragraph("CLIP paper: Tables 11 (zero-shot) and 10 (linear probe), secondary transcription "
                           "(assets/reference/README.md). open_clip: its published CLIP_benchmark results, which use "
                           "some different prompts and metrics (the note column of the full comparison below says "
                           "where). Δ = ours − published, in points."),
            html.table(o_header, o_cells, sortable=True, wrap=("tasks more than 1 point off",)),
            html.details(f"All {len(comparison)} comparisons ({n_flagged} with |Δ| > 1); click a column to sort",
                         [html.table(header, cells, sortable=True, wrap=("note",))]),
        ]))
        zs = comparison[comparison["protocol"] == "zeroshot"]
        for source in ("paper", "openclip"):
            part = zs[zs["source"] == source]
            self.model_columns[f"published:{source}"] = {
                key: (float(g["delta"].abs().mean()), int(g["flagged"].sum()), len(g))
                for key, g in part.groupby(KEY)}

    def comparisons(self, root: Path, max_models: int = 6) -> None:
        """Paired zero-shot comparisons (``clip-bench compare``) of every model against the first one, like with
        like: a variant (``[bf16]``) is compared with the same variant of the first model that has it."""
        from clip_bench.report.compare import compare

        order = list(self.styles)
        by_variant: dict[str, dict[tuple[str, str], str]] = {}  # variant -> {label as shown: model fingerprint}
        for r in self.rows:
            if r.get("protocol") == "zeroshot":
                by_variant.setdefault(variant_name(r), {})[shown_name(r)] = model_key(r)
        pairs = []
        for v, models in sorted(by_variant.items()):
            keys = sorted(models, key=lambda m: order.index(m) if m in order else len(order))
            pairs += [(v, models[keys[0]], models[other], display_name(*keys[0]), display_name(*other))
                      for other in keys[1:]]
        if not pairs:
            return
        if len(pairs) > max_models - 1:
            self.summary.notes.append(f"paired comparisons: only the first {max_models - 1} of {len(pairs)} pairs")
            pairs = pairs[:max_models - 1]
        records = []
        for v, name_a, name_b, label_a, label_b in pairs:
            try:
                c = compare(name_a, name_b, root, variant=v)
            except ClipBenchError as exc:
                self.summary.notes.append(f"paired comparison {label_a} vs {label_b} skipped: {exc}")
                continue
            if not c.tasks:
                continue
            records.append({
                "model A": label_a, "model B": label_b, "tasks": len(c.tasks),
                "A better": c.wins, "B better": c.losses, "ties": c.ties,
                "mean A - B": c.mean_diff, "95% CI low": c.mean_ci_low, "95% CI high": c.mean_ci_high,
                "refused": "; ".join(c.refused),
            })
        if not records:
            return
        table = pd.DataFrame(records)
        self.summary.tables["comparisons"] = table
        self.summary.write(self.out / "comparisons.csv", table.to_csv(index=False, float_format="%.2f"))
        self.summary.lines.append(f"paired comparisons: {len(table)} pair(s) -> comparisons.csv")
        self.tables.append(Section("Paired comparisons", [
            html.paragraph(
                "Each model against the first (within each variant: [bf16] with [bf16]), on the zero-shot tasks both "
                "evaluated on identical test samples "
                "(clip-bench compare): per task an exact McNemar test (accuracy) or a paired bootstrap (other "
                "metrics), wins and losses at 5% after a Holm correction across tasks, and the mean difference "
                "over tasks in points with its 95% interval. Run clip-bench compare A B for the per-task table."),
            html.table(table, wrap=("refused",)),
        ]))

    # --- the page --------------------------------------------------------------------------------

    def page(self, loaded: Rows, metrics: pd.DataFrame) -> str:
        s = self.summary
        summary_sec = Section("Summary", self._summary_blocks(loaded))
        sections = [summary_sec]
        if self.figures:
            sections.append(Section("Figures", [], self.figures))
        tables = [*self.tables, Section("All metrics", [html.paragraph(
            f"{len(metrics)} rows (each result once, the latest run of it) with their provenance are in "
            "all_metrics.csv beside this page.")])]
        sections.append(Section("Tables", [], tables))
        notes = [*s.skipped, *s.notes]
        if notes:
            sections.append(Section("Notes", [html.bullet_list(notes, "warn")]))
        files = sorted({str(p.relative_to(self.out)) for p in s.files if p.is_relative_to(self.out)} | {"report.html"})
        sections.append(Section("Files", [html.paragraph("Written beside this page: " + ", ".join(
            f"`{f}`" for f in files) + ".")]))
        sources = ", ".join(str(f) for f in loaded.files)
        intro = [f"{len(loaded.rows)} result rows from {sources}."]
        return html.page("clip-bench report", sections, intro)

    def _summary_blocks(self, loaded: Rows) -> list[str]:
        keys = [k for k in self.styles if k in {shown_name(r) for r in self.rows}]
        records = []
        for key in keys:
            rec: dict[str, Any] = {"model": key[0], "pretrained": key[1]}
            if key in self.model_columns.get("zeroshot:tasks", {}):
                n = self.model_columns["zeroshot:tasks"][key]
                rec["zero-shot tasks"] = (n, str(n))
            for col, title in (("zeroshot:mean_clip27", "zero-shot clip27 mean"),
                               ("zeroshot:mean_shifts", "zero-shot shifts mean"),
                               ("linear_probe:mean_clip27", "linear-probe clip27 mean")):
                if col in self.model_columns and key in self.model_columns[col]:
                    v, n = self.model_columns[col][key]
                    rec[title] = (v, f"{html.fmt_value(v)} ({n})" if n else "")
            if key in self.model_columns.get("er", {}):
                v, n = self.model_columns["er"][key]
                rec["effective robustness"] = (v, f"{v:+.1f} ({n})")
            if key in self.model_columns.get("avg_match", {}):
                r = self.model_columns["avg_match"][key]
                rec["zero-shot matches (average)"] = (r.shots, _short_match(r))
            if key in self.model_columns.get("median_shots", {}):
                r = self.model_columns["median_shots"][key]
                rec["median shots to match"] = (r.median_shots, f"{_fmt_shots(r.median_shots)} ({r.n_tasks})"
                                                if math.isfinite(r.median_shots) else "")
            for source, title in (("paper", "zero-shot |Δ| vs CLIP paper"), ("openclip", "zero-shot |Δ| vs open_clip")):
                if key in self.model_columns.get(f"published:{source}", {}):
                    d, flagged, n = self.model_columns[f"published:{source}"][key]
                    rec[title] = (d, f"{d:.2f} ({flagged} of {n} > 1)")
            records.append(rec)
        cols = ["model", "pretrained"] + [c for c in (
            "zero-shot tasks", "zero-shot clip27 mean", "zero-shot shifts mean", "linear-probe clip27 mean",
            "effective robustness",
            "zero-shot matches (average)", "median shots to match", "zero-shot |Δ| vs CLIP paper",
            "zero-shot |Δ| vs open_clip") if any(c in r for r in records)]
        header, cells = cols, []
        for rec in records:
            row = [self.model_cell((rec["model"], rec["pretrained"])), Cell(html.esc(rec["pretrained"]))]
            for c in cols[2:]:
                v, text = rec.get(c, (None, ""))
                ok = v is not None and isinstance(v, (int, float)) and math.isfinite(v)
                row.append(Cell(html.esc(text), repr(float(v)) if ok else "", True))
            cells.append(row)
        explain = {
            "zero-shot tasks": "how many tasks the model has zero-shot results for",
            "zero-shot clip27 mean": "the mean over the CLIP paper's 27 datasets a model has (how many in brackets)",
            "zero-shot shifts mean": "the mean over the ImageNet distribution shifts",
            "linear-probe clip27 mean": "the same for the linear probe on all training data",
            "effective robustness": "zero-shot accuracy above the imagenet-testbed baseline, in points, mean over "
                                    "the shifts (how many in brackets)",
            "zero-shot matches (average)": "the k at which the task-averaged k-shot linear probe equals "
                                           "task-averaged zero-shot (CLIP paper Fig. 6)",
            "median shots to match": "the median over tasks of the examples per class a probe needs to equal "
                                     "zero-shot, number of tasks in brackets (Fig. 7)",
            "zero-shot |Δ| vs CLIP paper": "mean absolute difference from the published number, in points, and how "
                                           "many of the tasks compared are more than 1 point off",
            "zero-shot |Δ| vs open_clip": "the same against open_clip's published results",
        }
        bullets = self._headline_bullets()
        blocks = ['<ul class="headline">' + "".join(f"<li>{b}</li>" for b in bullets) + "</ul>"] if bullets else []
        blocks.append(html.table(header, cells, sortable=True, compact=True))
        if len(cols) > 2:
            blocks.append(html.bullet_list([f"`{c}`: {explain[c]}." for c in cols[2:]], "note"))
        data = [f"{len(loaded.rows)} result rows ({_plural(len(keys), 'model')} drawn)."]
        if loaded.duplicates:
            data.append(f"{loaded.duplicates} repeated rows (the same result written again) "
                        "were collapsed to the latest.")
        if loaded.nonstandard:
            data.append(f"{len(loaded.nonstandard)} rows are not the standard evaluation (a subset or an override) and "
                        "are left out of every table and figure; they are in all_metrics.csv.")
        if loaded.malformed:
            data.append(f"{loaded.malformed} malformed rows were skipped"
                        + (f" ({'; '.join(loaded.skipped_lines)})." if loaded.skipped_lines else "."))
        blocks.append(html.paragraph(" ".join(data)))
        return blocks

    def _headline_bullets(self) -> list[str]:
        out = []
        zs = self.model_columns.get("zeroshot:mean_clip27", {})
        finite = {k: v for k, v in zs.items() if v[1]}
        if finite:
            best = max(finite, key=lambda k: (finite[k][1], finite[k][0]))
            v, n = finite[best]
            out.append(f"Highest zero-shot clip27 mean: {html.esc(display_name(*best))}, <strong>{v:.1f}</strong> "
                       f"over {n} of {len(headline_collections()['clip27'])} datasets.")
        er = self.model_columns.get("er", {})
        if er:
            parts = ", ".join(f"{html.esc(display_name(*k))} <strong>{v:+.1f}</strong>" for k, (v, _) in
                              sorted(er.items(), key=lambda kv: -kv[1][0]))
            out.append(f"Effective robustness (zero-shot, mean over shifts, points): {parts}.")
        matches = self.model_columns.get("avg_match", {})
        if matches:
            parts = "; ".join(f"{html.esc(display_name(*k))} <strong>{html.esc(_short_match(r))}</strong> "
                              f"({_plural(r.n_tasks, 'task')})" for k, r in matches.items())
            out.append("Zero-shot matches a k-shot linear probe (both averaged over the model's few-shot tasks, "
                       f"CLIP paper Fig. 6): {parts}.")
        out.extend(self.headlines)
        return out


def _drop_empty_means(board: pd.DataFrame) -> pd.DataFrame:
    """Leave out a mean and its count when no model has any task of that group (no empty columns)."""
    for name in ("clip27", "shifts"):
        if f"n_{name}" in board and not board[f"n_{name}"].astype(int).any():
            board = board.drop(columns=[f"mean_{name}", f"n_{name}"])
    return board


def _means_caption(board: pd.DataFrame, groups: dict[str, list[str]]) -> str:
    parts = []
    if "mean_clip27" in board:
        parts.append(f"`mean_clip27` averages the {len(groups['clip27'])} CLIP-paper datasets")
    if "mean_shifts" in board:
        parts.append(f"`mean_shifts` the ImageNet shifts ({', '.join(groups['imagenet_shifts'])})")
    text = "Main metric per task, in percent."
    if parts:
        text += (" " + " and ".join(parts)
                 + "; `n_*` says how many of them each model has, so partial means show as such.")
    return text


def _grid_edge_note(rows: list[dict[str, Any]]) -> str:
    """A warning naming the linear-probe results whose C was picked at an end of the search grid."""
    flagged = sorted({
        f"{model_label(r)} on {r['task']} ({r['extra']['C_at_grid_edge']}, C = {r['extra'].get('C', float('nan')):.3g})"
        for r in rows
        if r.get("protocol") == "linear_probe" and is_standard(r) and isinstance(r.get("extra"), dict)
        and r["extra"].get("C_at_grid_edge")
    })
    if not flagged:
        return ""
    return (" Flagged: C was picked at an end of the 1e-6 to 1e6 grid (the optimum may lie outside it) for "
            + "; ".join(flagged) + ".")


def _interval_note(rows: list[dict[str, Any]], protocol: str) -> str:
    v = main_values(rows, protocol)
    return " Cells with ± show the 95% interval of the value." if v["ci_low"].notna().any() else ""


def _headline_text(r: Any) -> str:
    """The few-shot headline, naming only k that were run (the smallest is not always 1)."""
    tasks = _plural(r.n_tasks, "task")
    if r.status == fs.INTERPOLATED:
        return f"zero-shot matches a {r.shots:.1f}-shot linear probe, averaged over {tasks}"
    if r.status == fs.AT_MIN:
        return f"zero-shot is matched already by the {r.min_k}-shot probe (the smallest k run), averaged over {tasks}"
    if r.status == fs.BELOW:
        return (f"zero-shot is below the {r.min_k}-shot linear probe (the smallest k run; ≈ {r.shots:.2f}-shot by "
                f"extrapolation), averaged over {tasks}")
    return f"zero-shot beats the {r.max_k}-shot linear probe (the largest k run), averaged over {tasks}"


def _short_match(r: Any) -> str:
    if r.status == fs.INTERPOLATED:
        return f"{r.shots:.1f}-shot"
    if r.status == fs.BELOW:
        return f"< {r.min_k}-shot"
    if r.status == fs.AT_MIN:
        return f"{r.min_k}-shot"
    return f"> {r.max_k}-shot"
