"""The leaderboard part: one table per protocol (zero-shot, linear probe), the few-shot table (one line per model
and k) and the retrieval table, written as ``leaderboard.csv`` and ``leaderboard.md`` too."""

from __future__ import annotations

from typing import Any

import pandas as pd

import clip_bench.report.html as html
from clip_bench.report.html import Section
from clip_bench.report.markdown import to_markdown
from clip_bench.report.sections.context import ReportContext, plural
from clip_bench.report.sections.retrieval import retrieval_section
from clip_bench.results import fewshot as fs
from clip_bench.results.averages import AVERAGE_LINE, average_lines, average_specs
from clip_bench.results.leaderboard import HEAD, MEANS, leaderboard_csv, protocol_table, protocols
from clip_bench.results.rows import display_name, is_standard, model_label
from clip_bench.results.tables import KEY, line_values, main_values, task_order
from clip_bench.tasks.catalog import headline_collections


def leaderboard_section(ctx: ReportContext) -> None:
    """Write ``leaderboard.csv`` and ``leaderboard.md``, add the leaderboard tables (zero-shot, linear probe,
    few-shot, retrieval) and the per-model means and task counts the page's summary shows; compute the few-shot
    curves (``ctx.curve``) the other parts use."""
    s = ctx.summary
    s.write(ctx.out / "leaderboard.csv", leaderboard_csv(ctx.rows))
    ctx.curve = fs.curves(ctx.rows)
    found = protocols(ctx.rows)
    groups = headline_collections()
    md: list[str] = []
    children: list[Section] = []
    for protocol, title in (("zeroshot", "zero-shot"), ("linear_probe", "linear probe (all training data)")):
        if protocol not in found:
            continue
        board = protocol_table(ctx.rows, protocol).drop(columns="protocol")
        board = _drop_empty_means(board)
        s.tables[f"leaderboard_{protocol}"] = board
        if protocol == "zeroshot":
            s.tables["leaderboard"] = board
        n_tasks = len([c for c in board.columns if c not in HEAD])
        s.lines.append(f"leaderboard {title}: {plural(len(board), 'model')} x {plural(n_tasks, 'task')}")
        for col in ("mean_clip27", "mean_shifts", *(a.column for a in average_specs().values())):
            if col in board:
                ctx.model_columns.setdefault(f"{protocol}:{col}", {}).update(
                    {(m, p): (v, n) for m, p, v, n in
                     board[[*KEY, col, col.replace("mean_", "n_")]].itertuples(index=False)})
        tasks_cols = [c for c in board.columns if c not in HEAD]
        ctx.model_columns.setdefault(f"{protocol}:tasks", {}).update(
            {(m, p): int(n) for m, p, n in zip(board["model"], board["pretrained"],
                                               board[tasks_cols].notna().sum(axis=1))})
        header, cells = ctx.keyed(board)
        ctx.interval_cells(board, protocol, header, cells)
        caption = _means_caption(board, groups) + _interval_note(ctx.rows, protocol)
        if protocol == "linear_probe":
            caption += _grid_edge_note(ctx.rows)
        if protocol == AVERAGE_LINE:
            values, label = line_values(ctx.rows, protocol), (lambda key: display_name(*key))
            s.lines.extend(f"published average: {line}" for line in average_lines(values, label))
            missing = average_lines(values, label, incomplete_only=True)
            caption += (" Incomplete published averages: " + "; ".join(missing) + ".") if missing else ""
        md += [f"## Leaderboard: {title}\n", caption.replace("`", "") + "\n", to_markdown(board, ".1f")]
        children.append(Section(f"Leaderboard: {title}", [html.paragraph(caption), html.table(header, cells)]))
    fewshot_protocols = [p for p in found if fs.shots_of(p)]
    if fewshot_protocols:
        parts = []
        for p in fewshot_protocols:
            t = protocol_table(ctx.rows, p, ctx.curve)
            t.insert(2, "k", fs.shots_of(p))
            parts.append(t.drop(columns="protocol"))
        board = _drop_empty_means(pd.concat(parts, ignore_index=True))
        tasks = task_order(c for c in board.columns if c not in [*HEAD, "k"])
        board = board[[c for c in [*KEY, "k", *MEANS] if c in board] + tasks]
        board = board.sort_values([*KEY, "k"], kind="stable").reset_index(drop=True)
        s.tables["leaderboard_fewshot"] = board
        header, cells = ctx.keyed(board)
        caption = ("k-shot linear probe, mean over seeds, one line per model and k. "
                   + _means_caption(board, groups))
        ctx.fewshot_interval_cells(board, header, cells)
        children.append(Section("Leaderboard: few-shot", [html.paragraph(caption), html.table(header, cells)]))
    children.extend(retrieval_section(ctx))
    if not children:
        s.skip("leaderboard", "no standard main-metric rows")
        return
    s.write(ctx.out / "leaderboard.md", "# Leaderboard\n\n" + "\n".join(md))
    ctx.tables.extend(children)


def _drop_empty_means(board: pd.DataFrame) -> pd.DataFrame:
    """Leave out a mean and its count when no model has any task of that group (no empty columns)."""
    for name in ("clip27", "shifts", *average_specs()):
        if f"n_{name}" in board and not board[f"n_{name}"].fillna(0).astype(int).any():
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
    published = [a for a in average_specs().values() if a.column in board]
    if published:
        text += (" " + "; ".join(f"`{a.column}` is {a.title} ({len(a.members)} DataComp-protocol tasks)"
                                 for a in published)
                 + ": the plain mean of the members' main metrics, shown only when a model has every member "
                 "(`n_*` counts the members it has).")
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
