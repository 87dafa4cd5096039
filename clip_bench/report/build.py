"""``build_report``: every reporter from one results folder (CSV tables, figures, one self-contained HTML page).

The page reads top-down: a summary (models, means, effective robustness, the few-shot headline), then
the figures, then the tables, with a table of contents. Every figure and table takes each model's
colour and marker from one map computed once from all rows.

Each part is a module of :mod:`clip_bench.report.sections`; this module runs them in order (a part that fails
is one skipped line, the others are kept), writes ``all_metrics.csv`` and the page, and removes files an earlier
report left that this one did not rewrite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clip_bench.report.published import compare_published, summary_lines
from clip_bench.report.sections.comparisons import comparisons_section
from clip_bench.report.sections.context import ReportContext, plural
from clip_bench.report.sections.fewshot import fewshot_section
from clip_bench.report.sections.leaderboard import leaderboard_section
from clip_bench.report.sections.page import report_page
from clip_bench.report.sections.published import published_section
from clip_bench.report.sections.robustness import robustness_section
from clip_bench.report.styles import model_styles
from clip_bench.report.summary import ReportSummary, ReportWriteError
from clip_bench.results.rows import RESULTS_FILE, model_key
from clip_bench.results.tables import Rows, all_metrics_table, load_rows
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import probe_writable_dir
from clip_bench.util.progress import progress_bar

PLOTS_DIR = "plots"
DEFAULT_OUT = Path("report")
#: Files only build_report writes; any not rewritten by this run describe older data and are removed.
OWNED = ("leaderboard.md", "published_comparison.csv", "effective_robustness.csv", "shots_to_match.csv",
         "shots_to_match_summary.csv", "fewshot_curves.csv", "retrieval.csv")
OWNED_PLOTS = ("effective_robustness.png", "fewshot_*.png", "shots_to_match*.png")


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
    ctx = ReportContext(rows, out, out / PLOTS_DIR, styles, summary, comparison)
    _build_part(summary, "leaderboard", lambda: leaderboard_section(ctx))
    steps.update()
    _build_part(summary, "effective robustness", lambda: robustness_section(ctx))
    steps.update()
    _build_part(summary, "few-shot", lambda: fewshot_section(ctx))
    steps.update()
    _build_part(summary, "published comparison", lambda: published_section(ctx))
    _build_part(summary, "paired comparisons", lambda: comparisons_section(ctx, root))
    steps.update()
    metrics = all_metrics_table(loaded.rows)
    summary.tables["all_metrics"] = metrics
    summary.write(out / "all_metrics.csv", metrics.to_csv(index=False))
    page = report_page(ctx, loaded, metrics)
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


def _build_part(summary: ReportSummary, part: str, build: Callable[[], None]) -> None:
    """Build one part of the report; if it fails (other than by a file that cannot be written), the part is
    one skipped line and the other parts are kept."""
    try:
        build()
    except (ClipBenchError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the others
        summary.skip(part,
                     f"it failed ({type(exc).__name__}: {str(exc) or 'no message'}); the other parts are complete")


def _check_writable(out: Path) -> None:
    """A clear error now (before any work) when the report could not be written to `out`."""
    try:
        probe_writable_dir(out)
    except OSError as exc:
        raise ReportWriteError(f"cannot write the report to {out} ({exc.strerror or type(exc).__name__}); make it a "
                               "writable folder or pass --out to another folder.") from None


def _read_line(loaded: Rows, n_models: int) -> str:
    line = (f"read {len(loaded.rows)} rows from {plural(len(loaded.files), 'results file')}: "
            f"{plural(n_models, 'model')}")
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
