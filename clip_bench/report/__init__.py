"""Reporters: leaderboards, comparisons with published numbers, robustness and few-shot plots, HTML."""

from __future__ import annotations

from .api import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
