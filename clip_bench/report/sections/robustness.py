"""The effective-robustness part: ``effective_robustness.csv``, its figure (one panel per ImageNet shift) and
its table (per shift, with 95 % intervals where the rows allow them)."""

from __future__ import annotations

import clip_bench.report.html as html
from clip_bench.report.html import Section
from clip_bench.report.reference import testbed_shifts
from clip_bench.report.robustness import effective_robustness
from clip_bench.report.sections.context import ReportContext, csv_text, plural
from clip_bench.results.rows import display_name
from clip_bench.results.tables import KEY, main_values


def robustness_section(ctx: ReportContext) -> None:
    """Effective robustness of every model with ImageNet and shift results: the CSV, the figure, the table and
    the per-model mean for the page's summary; skipped without zero-shot shift results."""
    s = ctx.summary
    shifts = list(testbed_shifts()["shifts"])
    zs = main_values(ctx.rows, "zeroshot")
    if not zs["task"].isin(shifts).any():
        s.skip("effective robustness", f"no zero-shot results on an ImageNet shift ({', '.join(shifts)})")
        return
    er, notes = effective_robustness(ctx.rows)
    s.notes.extend(notes)
    if er.empty:
        s.skip("effective robustness", "shift results exist but no model also has an ImageNet result")
        return
    from clip_bench.report.plot_robustness import effective_robustness_figure

    ctx.er = er
    s.tables["effective_robustness"] = er
    s.write(ctx.out / "effective_robustness.csv", csv_text(er))
    fig, plot_notes = effective_robustness_figure(er, ctx.styles)
    path = s.save_figure("effective_robustness", fig, ctx.plots / "effective_robustness.png")
    s.notes.extend(plot_notes)
    for r in er[er["shift"] == "mean"].itertuples():
        s.lines.append(f"effective robustness: {display_name(r.model, r.pretrained)} {r.protocol} "
                       f"{r.effective_robustness:+.2f} points (mean over {plural(r.n_shifts, 'shift')})")
    has_ci = er["er_ci_low"].notna().any()
    has_bars = er["acc_ci_low"].notna().any() or er["x_ci_low"].notna().any()
    ctx.figures.append(Section("Effective robustness", [html.figure(
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
    header, cells = ctx.keyed(table)
    for row in cells:
        for c in row[3:]:
            c.numeric = True
    ctx.tables.append(Section("Effective robustness", [
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
    ctx.model_columns["er"] = {(r.model, r.pretrained): (r.effective_robustness, r.n_shifts)
                               for r in er[(er["shift"] == "mean") & (er["protocol"] == "zeroshot")].itertuples()}
