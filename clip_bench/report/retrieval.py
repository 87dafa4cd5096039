"""Every retrieval row as one table, with deltas against the CLIP paper's Table 13."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import pandas as pd

from clip_bench.metrics.retrieval import I2T, KS, MAIN, MEAN_R1, T2I
from clip_bench.protocols.retrieval import PROTOCOL
from clip_bench.results.rows import labelled, shown_name, variant_name
from clip_bench.util.resources import assets_dir

PAPER_TABLE13 = "paper_retrieval_table13.json"
METRICS = [*(I2T.format(k=k) for k in KS), *(T2I.format(k=k) for k in KS), MAIN, MEAN_R1]
SHORT = {**{I2T.format(k=k): f"i2t_R@{k}" for k in KS}, **{T2I.format(k=k): f"t2i_R@{k}" for k in KS}, MAIN: "mean",
         MEAN_R1: "mean_R@1"}


@lru_cache(maxsize=1)
def paper_table13() -> dict[str, Any]:
    """CLIP paper Table 13 (zero-shot CLIP), with ``mean_recall`` added as the mean of its six recalls."""
    data = json.loads((assets_dir() / "reference" / PAPER_TABLE13).read_text(encoding="utf-8"))
    for values in data["tasks"].values():
        values[MAIN] = sum(values.values()) / len(values)
    return data


def _is_paper_model(model: str, pretrained: str) -> bool:
    key = str(model).replace("/", "-").replace("@", "-").lower().removesuffix("-quickgelu").removesuffix("px")
    return pretrained == paper_table13()["pretrained"] and key == "vit-l-14-336"


def retrieval_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One line per (model, task, source, caption template): the six recalls and the task's summary (``mean``,
    or DataComp's ``mean_R@1``; latest run), plus
    ``<metric>_vs_paper`` deltas for the model of the paper's Table 13 (ViT-L/14@336px, OpenAI weights).
    Models are named as every table names them (:func:`clip_bench.results.rows.shown_name`)."""
    keep = [r for r in labelled(rows)
            if r.get("protocol") == PROTOCOL and not r.get("subset") and r.get("metric") in SHORT]
    if not keep:
        return pd.DataFrame()
    paper_model = {shown_name(r) for r in keep
                   if not variant_name(r) and _is_paper_model(r["model"], r.get("pretrained") or "")}
    df = pd.DataFrame([{
        "model": shown_name(r)[0], "pretrained": shown_name(r)[1], "task": r["task"], "source": r.get("source"),
        "caption_template": (r.get("extra") or {}).get("caption_template") or "", "metric": r["metric"],
        "value": r["value"], "date": r.get("date") or "",
    } for r in keep]).sort_values("date", kind="stable")
    index = ["model", "pretrained", "task", "source", "caption_template"]
    wide = df.pivot_table(index=index, columns="metric", values="value", aggfunc="last")
    wide = wide[[m for m in METRICS if m in wide]].reset_index()
    paper = paper_table13()["tasks"]
    for m in METRICS:
        if m in wide:
            wide[f"{SHORT[m]}_vs_paper"] = [
                row[m] - paper[row["task"]][m]
                if (row["model"], row["pretrained"]) in paper_model and m in paper.get(row["task"], {})
                else float("nan") for _, row in wide.iterrows()
            ]
    return wide.rename(columns=SHORT).dropna(axis=1, how="all")
