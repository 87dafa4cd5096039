"""``build_report``: every reporter from one results folder (tables, plots, one self-contained HTML page)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ClipBenchError
from ..io_utils import write_text_atomic
from ..progress import progress_bar
from ..retrieval_report import retrieval_section
from . import fewshot, html
from .markdown import to_markdown
from .plot_fewshot import METRIC_LABEL, plot_curves, plot_shots_to_match, references
from .plot_robustness import plot_effective_robustness
from .published import add_delta_columns, compare_published, summary_lines
from .reference import collections, testbed_shifts
from .robustness import effective_robustness
from .tables import KEY, all_metrics_table, find_rows, leaderboard_table, main_values, task_order

PLOTS_DIR = "plots"


@dataclass
class ReportSummary:
    """What ``build_report`` did: ``lines`` to print, the ``files`` it wrote, and the tables behind them."""

    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def skip(self, part: str, why: str) -> None:
        line = f"skipped {part}: {why}"
        self.skipped.append(line)
        self.lines.append(line)

    def write(self, path: Path, text: str) -> Path:
        write_text_atomic(path, text)
        self.files.append(path)
        return path


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", "_".join(p for p in parts if p)).strip("-")


def _name(model: str, pretrained: str) -> str:
    return f"{model} ({pretrained})" if pretrained else model


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.2f")


def build_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    reference_only: bool = False,
    quiet: bool = False,
) -> ReportSummary:
    """Read every result row under `results_dir` and write the report to `out_dir` (default: the same folder).

    Writes ``leaderboard.csv``/``.md``, ``all_metrics.csv``, ``published_comparison.csv``,
    ``effective_robustness.csv``, ``shots_to_match.csv``, PNG plots under ``plots/`` and one
    self-contained ``report.html``. A part whose inputs are missing is skipped with one line saying
    why. With `reference_only`, nothing is written: only the comparison against published numbers
    is returned (``summary.lines``). `quiet` hides the progress bar.
    """
    rows, sources = find_rows(results_dir)
    if not rows:
        raise ClipBenchError(
            f"no result rows under {results_dir} (looked for {'results.jsonl'} there and in subfolders); "
            "run `clip-bench eval` first or pass --results DIR."
        )
    summary = ReportSummary()
    comparison = compare_published(rows)
    summary.tables["published"] = comparison
    if reference_only:
        summary.lines.extend(summary_lines(comparison, detailed=True) or [
            "no evaluated model has published numbers (CLIP paper: OpenAI names such as ViT-B/32 with "
            "pretrained 'openai'; open_clip: architecture and pretrained tag as in its results table)"
        ])
        return summary

    root = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else (root.parent if root.is_file() else root)
    plots = out / PLOTS_DIR
    models = {(r.get("model"), r.get("pretrained") or "") for r in rows}
    summary.lines.append(f"read {len(rows)} rows from {len(sources)} results file(s): {len(models)} model(s)")

    steps = progress_bar(total=5, desc="report", unit="part", quiet=quiet)
    sections: list[tuple[str, list[str]]] = []
    sections += _leaderboards(rows, comparison, out, summary)
    sections += retrieval_section(rows, out, summary)
    steps.update()
    sections += _published(comparison, out, summary)
    steps.update()
    sections += _robustness(rows, out, plots, summary)
    steps.update()
    sections += _fewshot(rows, out, plots, summary)
    steps.update()
    metrics = all_metrics_table(rows)
    summary.tables["all_metrics"] = metrics
    summary.write(out / "all_metrics.csv", metrics.to_csv(index=False))
    sections.append(("All metrics", [html.paragraph(
        f"{len(metrics)} rows with their provenance are in all_metrics.csv beside this page."
    )]))
    if summary.skipped:
        sections.append(("Skipped parts", [html.bullet_list(summary.skipped, "skipped")]))
    intro = [f"{len(rows)} result rows from {', '.join(str(s) for s in sources)}; {len(models)} model(s)."]
    page = html.page("clip-bench report", sections, intro)
    summary.write(out / "report.html", page)
    steps.update()
    steps.close()
    summary.lines.append(f"wrote {len(summary.files)} files to {out} (open report.html)")
    stale = _remove_stale(out, summary.files)
    if stale:
        summary.lines.append(f"removed {len(stale)} file(s) left by an earlier report: {', '.join(p.name for p in stale)}")
    return summary


#: Files only build_report writes; any not rewritten by this run describe older data and are removed.
OWNED = ("leaderboard.md", "published_comparison.csv", "effective_robustness.csv", "shots_to_match.csv", "retrieval.csv")
OWNED_PLOTS = ("effective_robustness.png", "fewshot_*.png", "shots_to_match_*.png")


def _remove_stale(out: Path, written: list[Path]) -> list[Path]:
    keep = {p.resolve() for p in written}
    candidates = [out / n for n in OWNED] + [p for pat in OWNED_PLOTS for p in (out / PLOTS_DIR).glob(pat)]
    stale = [p for p in candidates if p.is_file() and p.resolve() not in keep]
    for p in stale:
        p.unlink()
    return stale


def _leaderboards(
    rows: list[dict[str, Any]], comparison: pd.DataFrame, out: Path, summary: ReportSummary
) -> list[tuple[str, list[str]]]:
    board = leaderboard_table(rows, "zeroshot")
    if board.empty:
        summary.skip("leaderboard", "no zero-shot main-metric rows")
        return []
    full = add_delta_columns(board, comparison)
    summary.tables["leaderboard"] = full
    summary.write(out / "leaderboard.csv", _csv(full))
    compact = full[[c for c in full.columns if not re.search(r"_vs_(paper|openclip)$", c)]]
    groups = collections()
    md = [
        "# Zero-shot leaderboard\n",
        f"Main metric per task, in percent. `mean_clip27` averages the {len(groups['clip27'])} CLIP-paper datasets "
        f"and `mean_shifts` the ImageNet shifts ({', '.join(groups['imagenet_shifts'])}); `n_*` says how many "
        "each model has. `flagged` lists tasks more than 1 point from a published number "
        "(per-task deltas are in leaderboard.csv).\n",
        to_markdown(compact, ".1f"),
    ]
    summary.write(out / "leaderboard.md", "\n".join(md))
    n_tasks = len([c for c in board.columns if c not in KEY and not c.startswith(("mean_", "n_"))])
    summary.lines.append(f"leaderboard: {len(board)} model(s) x {n_tasks} task(s) -> leaderboard.csv, leaderboard.md")
    blocks = [html.paragraph(md[1].strip()), html.table(compact, "{:.1f}")]
    lp = leaderboard_table(rows, "linear_probe")
    if not lp.empty:
        summary.tables["leaderboard_linear_probe"] = lp
        blocks += [html.paragraph("Linear probe (all training data), main metric per task:"), html.table(lp, "{:.1f}")]
    return [("Leaderboard", blocks)]


def _published(comparison: pd.DataFrame, out: Path, summary: ReportSummary) -> list[tuple[str, list[str]]]:
    if comparison.empty:
        summary.skip("published comparison", "no evaluated model matches a CLIP-paper or open_clip row")
        return []
    summary.write(out / "published_comparison.csv", _csv(comparison))
    lines = summary_lines(comparison)
    summary.lines.extend(lines)
    shown = comparison.assign(flagged=comparison["flagged"].map({True: "|Δ| > 1", False: ""}))
    return [("Against published numbers", [
        html.paragraph("CLIP paper: Tables 11 (zero-shot) and 10 (linear probe), secondary transcription "
                       "(assets/reference/README.md). open_clip: its published CLIP_benchmark results, "
                       "which use some different prompts and metrics (see the note column)."),
        html.bullet_list(lines), html.table(shown),
    ])]


def _robustness(rows: list[dict[str, Any]], out: Path, plots: Path, summary: ReportSummary) -> list[tuple[str, list[str]]]:
    shifts = list(testbed_shifts()["shifts"])
    zs = main_values(rows, "zeroshot")
    if not zs["task"].isin(shifts).any():
        summary.skip("effective robustness", f"no zero-shot results on an ImageNet shift ({', '.join(shifts)})")
        return []
    er, notes = effective_robustness(rows)
    summary.lines.extend(notes)
    if er.empty:
        summary.skip("effective robustness", "shift results exist but no model also has an ImageNet result")
        return []
    summary.tables["effective_robustness"] = er
    summary.write(out / "effective_robustness.csv", _csv(er))
    path, plot_notes = plot_effective_robustness(er, plots / "effective_robustness.png")
    summary.files.append(path)
    summary.lines.extend(plot_notes)
    means = er[er["shift"] == "mean"]
    for r in means.itertuples():
        summary.lines.append(
            f"effective robustness: {_name(r.model, r.pretrained)} {r.protocol} mean {r.effective_robustness:+.2f} "
            f"points over {r.n_shifts} shift(s)"
        )
    wide = er[er["shift"] != "mean"].pivot_table(
        index=[*KEY, "protocol"], columns="shift", values="effective_robustness", aggfunc="last"
    )
    wide = wide[[c for c in [*shifts, "average"] if c in wide]]
    wide["mean"] = er[er["shift"] == "mean"].set_index([*KEY, "protocol"])["effective_robustness"]
    return [("Effective robustness", [
        html.paragraph("Shift accuracy minus the imagenet-testbed baseline's prediction at the model's ImageNet "
                       "accuracy (logit-space OLS over standard ImageNet models, Taori et al. 2020). ImageNet-R, "
                       "-A and ObjectNet use ImageNet accuracy on the shift's classes as x. Points:"),
        html.table(wide.reset_index()), html.image(path, "effective robustness"), html.table(er),
    ])]


def _fewshot(rows: list[dict[str, Any]], out: Path, plots: Path, summary: ReportSummary) -> list[tuple[str, list[str]]]:
    curve = fewshot.curves(rows)
    if curve.empty:
        summary.skip("few-shot", "no fewshot_k* rows")
        return []
    summary.tables["fewshot"] = curve
    zs, lp = fewshot.reference_lines(rows, "zeroshot"), fewshot.reference_lines(rows, "linear_probe")
    metric = {r["task"]: r["metric"] for r in rows if r.get("is_main") and not r.get("subset")}
    paths = []
    avg, avg_zs = fewshot.average_curve(curve, zs)
    if not avg.empty:
        n_tasks = int(avg["n_tasks"].max())
        paths.append(plot_curves(avg, {k: v[0] for k, v in avg_zs.items()}, {},
                                 f"Average over {n_tasks} task(s) with every k and a zero-shot result",
                                 "Mean score over tasks (%)", plots / "fewshot_average.png"))
    for task in task_order(curve["task"].unique()):
        label = METRIC_LABEL.get(metric.get(task, ""), f"{metric.get(task, 'score')} (%)")
        paths.append(plot_curves(curve[curve["task"] == task], references(zs, task), references(lp, task),
                                 f"{task}: few-shot linear probe vs zero-shot", label, plots / f"fewshot_{task}.png"))
    summary.files.extend(paths)
    summary.lines.append(f"few-shot: {curve['task'].nunique()} task(s), k = {sorted(int(k) for k in curve['k'].unique())}")
    blocks = [html.paragraph("Mean over seeds with ±1 std error bars; dashed: zero-shot; dotted: linear probe "
                             "on all training data."), html.images(paths)]
    match = fewshot.shots_to_match(curve, zs)
    if match.empty:
        summary.skip("shots to match zero-shot", "no task has both few-shot and zero-shot results")
        return [("Few-shot", blocks)]
    table = fewshot.with_summary(match)
    summary.tables["shots_to_match"] = table
    summary.write(out / "shots_to_match.csv", _csv(table))
    bars = []
    k_range = (int(curve["k"].min()), int(curve["k"].max()))
    for model, pretrained in match[KEY].drop_duplicates().itertuples(index=False):
        g = table[(table["model"] == model) & (table["pretrained"] == pretrained)].set_index("task")
        if "median" in g.index:
            summary.lines.append(
                f"shots to match zero-shot: {_name(model, pretrained)} median {g.loc['median', 'shots']:.1f}, "
                f"mean {g.loc['mean', 'shots']:.1f} ({g.loc['median', 'status']})"
            )
        bars.append(plot_shots_to_match(match, model, pretrained, k_range,
                                        plots / f"shots_to_match_{_slug(model, pretrained)}.png"))
    summary.files.extend(bars)
    blocks += [html.paragraph("Labelled examples per class a few-shot linear probe needs to equal zero-shot, "
                              "interpolated linearly in log2(k) (CLIP paper Fig. 7 style)."),
               html.images(bars), html.table(table)]
    return [("Few-shot", blocks)]
