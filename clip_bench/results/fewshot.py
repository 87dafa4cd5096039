"""Few-shot linear-probe curves against zero-shot, and the shots a probe needs to match zero-shot.

Shots-to-match follows the CLIP paper's Figure 7: linear interpolation in log2(k) through the 1, 2,
4, 8, 16-shot points and the full-data linear probe (placed at its training examples per class).
Anything outside those points is labelled as such, never passed off as a measurement.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from clip_bench.results.rows import labelled, result_id, shown_name
from clip_bench.results.tables import KEY, field_of, is_standard, main_values, rows_frame, with_variant_labels

_K = re.compile(r"^fewshot_k(\d+)$")
CURVE_COLUMNS = [*KEY, "task", "k", "mean", "std", "n_seeds", "err_low", "err_high", "err_kind"]
MATCH_COLUMNS = [*KEY, "task", "zeroshot", "shots", "status", "full_k", "linear_probe"]
SUMMARY_COLUMNS = [*KEY, "median_shots", "mean_shots", "n_tasks", "n_extrapolated", "n_not_reached"]
STD_BARS = "±1 std over seeds"
CI_BARS = "95% interval"

INTERPOLATED = "interpolated"
TO_FULL = "interpolated to the full-data probe"
BELOW = "extrapolated below the smallest k"
AT_MIN = "matched at the smallest k"
NOT_REACHED = "not reached with all training data"
NO_FULL = "not reached by the largest k (no full-data probe)"


def shots_of(protocol: Any) -> int | None:
    """k of a ``fewshot_k{K}`` protocol, else None."""
    m = _K.match(str(protocol or ""))
    return int(m.group(1)) if m else None


def _extra(row: Any) -> dict[str, Any]:
    return row if isinstance(row, dict) else {}


#: Fields of a few-shot row that tell its seeds and aggregate apart, not its measurement (see _measurement).
_PER_SEED = ("seed", "aggregate", "seeds", "std")


def _measurement(row: dict[str, Any], also: tuple[str, ...] = ()) -> str:
    """The identity of a few-shot row without its seed (:func:`clip_bench.results.rows.result_id` with the fields of
    :data:`_PER_SEED` and `also` left out): seeds of one measurement share it, while seeds measured on other
    data, by another probe rule or solver, do not."""
    extra = {k: v for k, v in _extra(row.get("extra")).items() if k not in (*_PER_SEED, *also)}
    return result_id({**row, "extra": extra})


def _latest(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The latest row of each `key` (`df` is sorted by date), whole and indexed by `key`: never a row whose empty
    fields are filled in from an older one (``groupby().last()`` would take each column's last non-empty value)."""
    return df.drop_duplicates(key, keep="last").set_index(key)


def curves(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean over seeds of each task's main metric per k, with its error bar.

    Per-seed rows (``extra.seed``) are averaged here (std with ddof=1); when a (model, task, k) has
    only aggregated rows (``extra.aggregate == "mean"``) their value and ``extra.std`` are used. The
    error bar is the aggregate row's 95 % interval when it has one (``ci_low``/``ci_high``) and it
    aggregates exactly the seeds averaged, else ±1 std over seeds. The latest row wins for each seed,
    and only the seeds of the latest row's measurement are averaged: seeds measured on other data (or
    by another probe rule or solver) are another measurement, never mixed into the mean.
    """
    few = [r for r in labelled(rows) if r.get("is_main") and not r.get("subset") and shots_of(r.get("protocol"))
           and is_standard(r)]
    if not few:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    df = with_variant_labels(rows_frame(few), few)
    df["measure"] = [_measurement(r) for r in few]
    df["agg_measure"] = [_measurement(r, ("solver",)) for r in few]  # aggregate rows record no solver
    extra = [_extra(e) for e in df["extra"]]
    df["k"] = [shots_of(p) for p in df["protocol"]]
    df["seed"] = [e.get("seed") for e in extra]
    df["aggregate"] = [e.get("aggregate") for e in extra]
    df["agg_std"] = pd.to_numeric(pd.Series([e.get("std") for e in extra], index=df.index), errors="coerce")
    df["n_agg"] = [e.get("n_seeds", e.get("seeds")) for e in extra]
    df = df.sort_values("date", kind="stable")
    key = [*KEY, "task", "k"]
    is_seed = df["aggregate"].isna() & df["seed"].notna()
    per_seed = df[is_seed]
    per_seed = per_seed[per_seed["measure"] == per_seed.groupby(key, sort=False)["measure"].transform("last")]
    seeds = _latest(per_seed.assign(seed=lambda d: d["seed"].astype(str)), [*key, "seed"])
    stats = seeds.groupby(level=key)["value"].agg(["mean", "std", "count"])
    measured = seeds.groupby(level=key)["agg_measure"].last()
    stats["std"] = stats["std"].fillna(0.0)
    aggs = _latest(df[df["aggregate"].notna()], key)
    other = _latest(df[~is_seed & df["aggregate"].isna()], key)
    out = []
    for idx in sorted(set(stats.index) | set(aggs.index) | set(other.index)):
        agg = aggs.loc[idx] if idx in aggs.index else None
        if idx in stats.index:
            st = stats.loc[idx]
            mean, std, n = float(st["mean"]), float(st["std"]), int(st["count"])
            same = (agg is not None and agg["agg_measure"] == measured.loc[idx]
                    and (pd.isna(agg["n_agg"]) or agg["n_agg"] == n))
            src = agg if same else None  # another run's interval (other seeds or data) is not this mean's
        else:
            last = agg if agg is not None else other.loc[idx]
            mean = float(last["value"])
            std = float(last["agg_std"]) if pd.notna(last["agg_std"]) else 0.0
            n = last["n_agg"] if last["n_agg"] is not None else (np.nan if agg is not None else 1)
            src = last
        if src is not None and pd.notna(src["ci_low"]):
            lo, hi, kind = float(src["value"] - src["ci_low"]), float(src["ci_high"] - src["value"]), CI_BARS
        else:
            lo, hi, kind = std, std, STD_BARS
        out.append((*idx[:3], int(idx[3]), mean, std, n, lo, hi, kind))
    return pd.DataFrame(out, columns=CURVE_COLUMNS)


def reference_lines(rows: list[dict[str, Any]], protocol: str) -> pd.DataFrame:
    """Latest zero-shot (or full linear-probe) main value per (model, pretrained, task), with its interval."""
    v = main_values(rows, protocol)
    return v[v["subset"] == ""][[*KEY, "task", "value", "ci_low", "ci_high"]].reset_index(drop=True)


def _n_classes_catalogue(task: str) -> int | None:
    """Classes of a built-in task (only names in the catalogue: a results file never names a path to read)."""
    from clip_bench.tasks.catalog import get_task, list_tasks
    from clip_bench.util.errors import ClipBenchError

    try:
        if task not in list_tasks():
            return None
        return len(get_task(task).prompt_set().classnames)
    except (ClipBenchError, OSError, ValueError, KeyError):
        return None


def full_data_shots(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """Training examples per class of each full-data linear probe: its x in the shots-to-match interpolation.

    From the linear-probe row's ``n_refit`` (train+val it was refitted on; else ``n_train``), divided by the
    task's number of classes (the catalogue's, else ``n_train / k`` of the task's k-shot rows).
    """
    from_fewshot: dict[str, int] = {}
    for r in rows:
        e, k = _extra(r.get("extra")), shots_of(r.get("protocol"))
        if k and e.get("seed") is not None and isinstance(e.get("n_train"), int) and e["n_train"] % k == 0:
            from_fewshot.setdefault(str(r["task"]), e["n_train"] // k)
    out: dict[tuple[str, str, str], float] = {}
    classes: dict[str, int | None] = {}
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in sorted((r for r in labelled(rows) if r.get("protocol") == "linear_probe" and r.get("is_main")
                     and not r.get("subset") and is_standard(r)), key=lambda r: str(r.get("date") or "")):
        latest[(*shown_name(r), r["task"])] = r
    for key, r in latest.items():
        e = _extra(r.get("extra"))
        n = field_of(r, "n_classes") or None
        task = key[2]
        if n is None:
            if task not in classes:
                classes[task] = _n_classes_catalogue(task) or from_fewshot.get(task)
            n = classes[task]
        size = e.get("n_refit") or e.get("n_train")
        if isinstance(size, (int, float)) and isinstance(n, (int, float)) and n > 0 and size > 0:
            out[key] = float(size) / float(n)
    return out


def _combine(errors: pd.Series) -> float:
    """Error of a mean of independent tasks: sqrt(Σ e²)/n."""
    return math.sqrt(float((errors.astype(float) ** 2).sum())) / len(errors)


def average_curve(
    curve: pd.DataFrame, zeroshot: pd.DataFrame, linear: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[tuple[str, str], dict[str, Any]]]:
    """Per model, the curve averaged over tasks that have every k and a zero-shot value.

    Error bars combine as for a mean of independent tasks, sqrt(Σ e²)/n. Returns the curve (columns
    as :func:`curves` plus ``n_tasks``) and per model a dict with the averaged ``zeroshot`` value and
    its ``zeroshot_err`` (or None), the ``tasks`` used, and ``linear_probe`` (the mean full-data probe
    when every one of those tasks has one, else None).
    """
    out, refs = [], {}
    zs = {(m, p, t): (v, lo, hi) for m, p, t, v, lo, hi in zeroshot[[*KEY, "task", "value", "ci_low", "ci_high"]]
          .itertuples(index=False)}
    lp = {} if linear is None else {(m, p, t): v for m, p, t, v in linear[[*KEY, "task", "value"]]
                                    .itertuples(index=False)}
    for (model, pretrained), g in curve.groupby(KEY, sort=True):
        ks = sorted(g["k"].unique())
        tasks = [t for t, gt in g.groupby("task") if set(gt["k"]) == set(ks) and (model, pretrained, t) in zs]
        if not tasks:
            continue
        sel = g[g["task"].isin(tasks)]
        kinds = set(sel["err_kind"])
        kind = kinds.pop() if len(kinds) == 1 else "combined error bars"
        for k, gk in sel.groupby("k"):
            out.append((model, pretrained, "average", int(k), float(gk["mean"].mean()), _combine(gk["std"]), np.nan,
                        _combine(gk["err_low"]), _combine(gk["err_high"]), kind, len(tasks)))
        z = [zs[(model, pretrained, t)] for t in tasks]
        has_ci = all(not math.isnan(lo) for _, lo, _ in z)
        err = (_combine(pd.Series([v - lo for v, lo, _ in z])), _combine(pd.Series([hi - v for v, _, hi in z])))
        lps = [lp.get((model, pretrained, t)) for t in tasks]
        refs[(model, pretrained)] = {
            "zeroshot": float(np.mean([v for v, _, _ in z])), "zeroshot_err": err if has_ci else None,
            "tasks": tasks, "linear_probe": float(np.mean(lps)) if all(v is not None for v in lps) else None,
        }
    return pd.DataFrame(out, columns=[*CURVE_COLUMNS, "n_tasks"]), refs


def match_shots(
    ks: list[float], acc: list[float], target: float, full_k: float | None = None, full_acc: float | None = None,
) -> tuple[float, str]:
    """Shots a probe needs to reach `target`, linear in log2(k) between points (CLIP paper Fig. 7).

    The points are the measured k and, when given and beyond the largest k, the full-data probe at
    `full_k` examples per class. The first crossing wins. A 1-shot probe already above `target` is
    extrapolated below the smallest k along the first segment; a curve that never reaches `target`
    gives NaN with a status saying whether a full-data probe was there to reach.
    """
    points = sorted(zip((float(k) for k in ks), (float(a) for a in acc)))
    has_full = full_k is not None and full_acc is not None and points and full_k > points[-1][0]
    if has_full:
        points.append((float(full_k), float(full_acc)))
    if not points:
        return math.nan, "no data"
    lk = np.log2([p[0] for p in points])
    a = np.asarray([p[1] for p in points])
    n_measured = len(points) - int(bool(has_full))
    if a[0] >= target:
        slope = (a[1] - a[0]) / (lk[1] - lk[0]) if len(a) > 1 else 0.0
        if slope <= 0 or a[0] == target:
            return float(points[0][0]), AT_MIN
        return float(2 ** (lk[0] - (a[0] - target) / slope)), BELOW
    for i in range(len(a) - 1):
        if a[i] < target <= a[i + 1]:
            shots = float(2 ** (lk[i] + (target - a[i]) / (a[i + 1] - a[i]) * (lk[i + 1] - lk[i])))
            return shots, TO_FULL if i + 1 >= n_measured else INTERPOLATED
    return math.nan, NOT_REACHED if has_full else NO_FULL


def shots_to_match(
    curve: pd.DataFrame, zeroshot: pd.DataFrame, linear: pd.DataFrame | None = None,
    full_k: dict[tuple[str, str, str], float] | None = None,
) -> pd.DataFrame:
    """Per (model, task): shots a few-shot probe needs to equal zero-shot (see :func:`match_shots`)."""
    zs = {(m, p, t): v for m, p, t, v in zeroshot[[*KEY, "task", "value"]].itertuples(index=False)}
    lp = {} if linear is None else {(m, p, t): v for m, p, t, v in linear[[*KEY, "task", "value"]]
                                    .itertuples(index=False)}
    full_k = full_k or {}
    out = []
    for (model, pretrained, task), g in curve.groupby([*KEY, "task"], sort=True):
        key = (model, pretrained, task)
        if key not in zs:
            continue
        g = g.sort_values("k")
        fk, fa = full_k.get(key), lp.get(key)
        if fk is None or fa is None:
            fk = fa = None
        shots, status = match_shots(g["k"].tolist(), g["mean"].tolist(), zs[key], fk, fa)
        out.append((model, pretrained, task, zs[key], shots, status, fk if fk is not None else np.nan,
                    fa if fa is not None else np.nan))
    return pd.DataFrame(out, columns=MATCH_COLUMNS)


def match_summary(match: pd.DataFrame) -> pd.DataFrame:
    """Per model: median and mean shots over tasks with a finite value, and how many were extrapolated or not
    reached."""
    out = []
    for (model, pretrained), g in match.groupby(KEY, sort=True):
        finite = g["shots"].dropna()
        out.append((model, pretrained, float(finite.median()) if len(finite) else np.nan,
                    float(finite.mean()) if len(finite) else np.nan, len(finite),
                    int((g["status"] == BELOW).sum()), int(g["shots"].isna().sum())))
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def average_match(avg: pd.DataFrame, refs: dict[tuple[str, str], dict[str, Any]]) -> pd.DataFrame:
    """Per model: the k at which the task-averaged probe curve equals averaged zero-shot (the paper's Fig. 6 headline),
    with the smallest and largest k that were run (``min_k``, ``max_k``): what a headline may compare against."""
    out = []
    for (model, pretrained), g in avg.groupby(KEY, sort=True):
        ref = refs.get((model, pretrained))
        if not ref:
            continue
        g = g.sort_values("k")
        shots, status = match_shots(g["k"].tolist(), g["mean"].tolist(), ref["zeroshot"])
        out.append((model, pretrained, ref["zeroshot"], shots, status, len(ref["tasks"]), int(g["k"].min()),
                    int(g["k"].max())))
    return pd.DataFrame(out, columns=[*KEY, "zeroshot", "shots", "status", "n_tasks", "min_k", "max_k"])
