"""Effective robustness (Taori et al. 2020): shift accuracy above the testbed's baseline trend.

The baseline trend is :mod:`clip_bench.report.baseline` (fitted as imagenet-testbed does); the 95 % intervals
are :mod:`clip_bench.report.robustness_ci`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clip_bench.report.baseline import average_fit, shift_fits
from clip_bench.report.reference import testbed_shifts
from clip_bench.report.robustness_ci import add_er_intervals
from clip_bench.results.rows import display_name, labelled
from clip_bench.results.tables import KEY, main_values

#: Protocols whose ImageNet + shift rows get an effective robustness.
PROTOCOLS = ("zeroshot", "linear_probe")
ER_COLUMNS = [
    *KEY, "protocol", "shift", "label", "x_axis", "x", "accuracy", "baseline", "effective_robustness",
    "in_fit_range", "n_shifts", "x_ci_low", "x_ci_high", "acc_ci_low", "acc_ci_high",
]


def _mean_error(values: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Lower and upper 95 % errors of a mean of independent values (value, low, high): sqrt(Σ e²)/n; NaN if any
    lacks one."""
    lo = np.sqrt(sum((v - a) ** 2 for v, a, _ in values)) / len(values)
    hi = np.sqrt(sum((b - v) ** 2 for v, _, b in values)) / len(values)
    return float(lo), float(hi)


def effective_robustness(rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """Per (model, protocol) and shift: x, shift accuracy, baseline prediction and their difference.

    Adds a ``mean`` line (mean of the per-shift values, ``n_shifts`` of them) and, when a model has
    every shift, an ``average`` line (mean shift accuracy against the average baseline, as in the
    CLIP paper's averaged panel). Returns the table and notes on what was skipped or substituted.
    """
    cfg = testbed_shifts()
    shift_names = list(cfg["shifts"])
    fits, fallbacks = shift_fits(), shift_fits(fallback=True)
    avg_fit, _ = average_fit(shift_names)
    rows = labelled(rows)
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for protocol in PROTOCOLS:
        values = main_values(rows, protocol)
        if values.empty:
            continue
        lookup = {(r["model"], r["pretrained"], r["task"], r["subset"]): r["value"] for r in values.to_dict("records")}
        cis = {(r["model"], r["pretrained"], r["task"], r["subset"]): (r["ci_low"], r["ci_high"])
               for r in values.to_dict("records")}
        for model, pretrained in values[KEY].drop_duplicates().itertuples(index=False):
            name = display_name(model, pretrained)
            imagenet = lookup.get((model, pretrained, "imagenet", ""))
            found = [s for s in shift_names if (model, pretrained, s, "") in lookup]
            if not found:
                continue
            if imagenet is None:
                notes.append(f"effective robustness: {name} {protocol} has shift results but no ImageNet result")
                continue
            model_rows = []
            for shift in found:
                spec, fit = cfg["shifts"][shift], fits[shift]
                x, x_key = imagenet, (model, pretrained, "imagenet", "")
                if spec.get("subset"):
                    x_key = (model, pretrained, "imagenet", spec["subset"])
                    x = lookup.get(x_key)
                    if x is None:
                        fit, x, x_key = fallbacks[shift], imagenet, (model, pretrained, "imagenet", "")
                        notes.append(
                            f"effective robustness: {name} {protocol} has no ImageNet accuracy on the "
                            f"{spec['label']} classes (task imagenet, subset {spec['subset']}); used the "
                            f"full-ImageNet baseline for {spec['label']} instead"
                        )
                acc = lookup[(model, pretrained, shift, "")]
                pred = float(fit.predict(x))
                (x_lo, x_hi), (a_lo, a_hi) = cis[x_key], cis[(model, pretrained, shift, "")]
                model_rows.append({
                    "model": model, "pretrained": pretrained, "protocol": protocol, "shift": shift,
                    "label": spec["label"], "x_axis": fit.x_col, "x": x, "accuracy": acc, "baseline": pred,
                    "effective_robustness": acc - pred, "in_fit_range": bool(x >= fit.x_min), "n_shifts": 1,
                    "x_ci_low": x_lo, "x_ci_high": x_hi, "acc_ci_low": a_lo, "acc_ci_high": a_hi,
                })
            ers = [r["effective_robustness"] for r in model_rows]
            model_rows.append({
                "model": model, "pretrained": pretrained, "protocol": protocol, "shift": "mean",
                "label": "Mean over shifts", "x_axis": "", "x": np.nan, "accuracy": np.nan, "baseline": np.nan,
                "effective_robustness": float(np.mean(ers)), "in_fit_range": all(r["in_fit_range"] for r in model_rows),
                "n_shifts": len(ers),
            })
            if len(found) == len(shift_names):
                acc = float(np.mean([lookup[(model, pretrained, s, "")] for s in shift_names]))
                pred = float(avg_fit.predict(imagenet))
                lo_err, hi_err = _mean_error([(lookup[(model, pretrained, s, "")], *cis[(model, pretrained, s, "")])
                                              for s in shift_names])
                x_lo, x_hi = cis[(model, pretrained, "imagenet", "")]
                model_rows.append({
                    "model": model, "pretrained": pretrained, "protocol": protocol, "shift": "average",
                    "label": cfg["average"]["label"], "x_axis": avg_fit.x_col, "x": imagenet, "accuracy": acc,
                    "baseline": pred, "effective_robustness": acc - pred,
                    "in_fit_range": bool(imagenet >= avg_fit.x_min), "n_shifts": len(shift_names),
                    "x_ci_low": x_lo, "x_ci_high": x_hi, "acc_ci_low": acc - lo_err, "acc_ci_high": acc + hi_err,
                })
            else:
                missing = ", ".join(s for s in shift_names if s not in found)
                notes.append(f"effective robustness: {name} {protocol} lacks {missing}; left out of the average panel")
            out.extend(model_rows)
    # er_ci_low / er_ci_high: the model's test-set noise and the baseline fit's uncertainty (robustness_ci)
    return add_er_intervals(pd.DataFrame(out, columns=ER_COLUMNS), rows), notes
