"""Few-shot linear-probe curves against zero-shot, and the shots a probe needs to match zero-shot."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from .tables import KEY, main_values, rows_frame

_K = re.compile(r"^fewshot_k(\d+)$")
CURVE_COLUMNS = [*KEY, "task", "k", "mean", "std", "n_seeds"]
MATCH_COLUMNS = [*KEY, "task", "zeroshot", "shots", "status"]


def shots_of(protocol: Any) -> int | None:
    """k of a ``fewshot_k{K}`` protocol, else None."""
    m = _K.match(str(protocol or ""))
    return int(m.group(1)) if m else None


def curves(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds of each task's main metric per k.

    Per-seed rows (``extra.seed``) are averaged here (std with ddof=1); when a (model, task, k) has
    only aggregated rows (``extra.aggregate == "mean"``) their value and ``extra.std`` are used.
    The latest row wins for each seed.
    """
    few = [r for r in rows if r.get("is_main") and not r.get("subset") and shots_of(r.get("protocol"))]
    if not few:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    df = rows_frame(few)
    extra = [e if isinstance(e, dict) else {} for e in df["extra"]]
    df["k"] = [shots_of(p) for p in df["protocol"]]
    df["seed"] = [e.get("seed") for e in extra]
    df["aggregate"] = [e.get("aggregate") for e in extra]
    df["agg_std"] = pd.to_numeric(pd.Series([e.get("std") for e in extra], index=df.index), errors="coerce")
    df = df.sort_values("date", kind="stable")
    out = []
    for (model, pretrained, task, k), g in df.groupby([*KEY, "task", "k"], sort=True):
        seeds = g[g["aggregate"].isna() & g["seed"].notna()]
        if len(seeds):
            vals = seeds.groupby(seeds["seed"].astype(str))["value"].last().to_numpy(dtype=float)
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            out.append((model, pretrained, task, int(k), float(vals.mean()), std, len(vals)))
            continue
        agg = g[g["aggregate"].notna()] if g["aggregate"].notna().any() else g
        last = agg.iloc[-1]
        n = (last["extra"] or {}).get("n_seeds", np.nan) if isinstance(last["extra"], dict) else np.nan
        std = last["agg_std"] if pd.notna(last["agg_std"]) else 0.0
        out.append((model, pretrained, task, int(k), float(last["value"]), float(std), n))
    return pd.DataFrame(out, columns=CURVE_COLUMNS)


def reference_lines(rows: list[dict[str, Any]], protocol: str) -> pd.DataFrame:
    """Latest zero-shot (or full linear-probe) main value per (model, pretrained, task)."""
    v = main_values(rows, protocol)
    return v[v["subset"] == ""][[*KEY, "task", "value"]]


def average_curve(curve: pd.DataFrame, zeroshot: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str], Any]]:
    """Per model, the curve averaged over tasks that have every k and a zero-shot value.

    The error bar is the std of a mean of independent tasks, sqrt(Σ std²)/n. Returns the curve
    (columns as :func:`curves` plus ``n_tasks``) and per model (zero-shot mean, tasks used).
    """
    out, zs_avg = [], {}
    zs = {(m, p, t): v for m, p, t, v in zeroshot.itertuples(index=False)}
    for (model, pretrained), g in curve.groupby(KEY, sort=True):
        ks = sorted(g["k"].unique())
        tasks = [
            t for t, gt in g.groupby("task")
            if set(gt["k"]) == set(ks) and (model, pretrained, t) in zs
        ]
        if not tasks:
            continue
        sel = g[g["task"].isin(tasks)]
        for k, gk in sel.groupby("k"):
            err = math.sqrt(float((gk["std"] ** 2).sum())) / len(gk)
            out.append((model, pretrained, "average", int(k), float(gk["mean"].mean()), err, np.nan, len(tasks)))
        zs_avg[(model, pretrained)] = (float(np.mean([zs[(model, pretrained, t)] for t in tasks])), tasks)
    return pd.DataFrame(out, columns=[*CURVE_COLUMNS, "n_tasks"]), zs_avg


def match_shots(ks: list[float], acc: list[float], target: float) -> tuple[float, str]:
    """Shots a probe needs to reach `target`, linear in log2(k) between measured points (paper style).

    Outside the measured range the nearest segment is extended (status ``extrapolated``); a curve
    that never rises to `target` gives NaN (``not reached``).
    """
    lk = np.log2(np.asarray(ks, dtype=float))
    a = np.asarray(acc, dtype=float)
    if len(a) == 0:
        return math.nan, "no data"
    for i in range(len(a) - 1):
        if a[i] < target <= a[i + 1]:
            return float(2 ** (lk[i] + (target - a[i]) / (a[i + 1] - a[i]) * (lk[i + 1] - lk[i]))), "interpolated"
    if len(a) < 2:
        return (float(ks[0]), "matched at min k") if a[0] >= target else (math.nan, "not reached")
    if a[0] >= target:
        slope = (a[1] - a[0]) / (lk[1] - lk[0])
        if slope <= 0:
            return float(ks[0]), "matched at min k"
        return float(2 ** (lk[0] - (a[0] - target) / slope)), "extrapolated"
    slope = (a[-1] - a[-2]) / (lk[-1] - lk[-2])
    if slope <= 0:
        return math.nan, "not reached"
    return float(2 ** (lk[-1] + (target - a[-1]) / slope)), "extrapolated"


def shots_to_match(curve: pd.DataFrame, zeroshot: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task): shots a few-shot probe needs to equal zero-shot (see :func:`match_shots`)."""
    zs = {(m, p, t): v for m, p, t, v in zeroshot.itertuples(index=False)}
    out = []
    for (model, pretrained, task), g in curve.groupby([*KEY, "task"], sort=True):
        target = zs.get((model, pretrained, task))
        if target is None:
            continue
        g = g.sort_values("k")
        shots, status = match_shots(g["k"].tolist(), g["mean"].tolist(), target)
        out.append((model, pretrained, task, target, shots, status))
    return pd.DataFrame(out, columns=MATCH_COLUMNS)


def with_summary(match: pd.DataFrame) -> pd.DataFrame:
    """`match` plus a ``median`` and a ``mean`` line per model over the tasks with a finite value."""
    extra = []
    for (model, pretrained), g in match.groupby(KEY, sort=True):
        finite = g["shots"].dropna()
        if finite.empty:
            continue
        for name, value in (("median", finite.median()), ("mean", finite.mean())):
            extra.append((model, pretrained, name, np.nan, float(value), f"over {len(finite)} tasks"))
    return pd.concat([match, pd.DataFrame(extra, columns=MATCH_COLUMNS)], ignore_index=True) if extra else match
