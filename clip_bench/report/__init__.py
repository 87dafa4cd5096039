"""Reporters: leaderboards, comparisons with published numbers, robustness and few-shot plots, HTML.

``build_report`` is imported lazily, so that writing ``leaderboard.csv`` after a run
(:mod:`.leaderboard`) does not import matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportSummary", "build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from clip_bench.report import build as api

        return getattr(api, name)
    raise AttributeError(name)
