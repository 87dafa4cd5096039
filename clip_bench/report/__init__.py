"""Reporters: leaderboards, comparisons with published numbers, robustness and few-shot plots, HTML.

``build_report`` is imported lazily, so that writing ``leaderboard.csv`` after a run
(:mod:`.leaderboard`) does not import matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportSummary", "build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from clip_bench.report.build import build_report

        return build_report
    if name == "ReportSummary":
        from clip_bench.report.summary import ReportSummary

        return ReportSummary
    raise AttributeError(name)
