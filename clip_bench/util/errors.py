"""User-facing errors: the CLI prints their message, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ClipBenchError(Exception):
    """An error the user can fix; its message says what was expected and how to fix it."""


class UnknownNameError(ClipBenchError, KeyError):
    """A name (task, model, loader, metric...) that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        self.kind, self.name = kind, name
        known = sorted(set(known))
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        if not close:
            lowered = name.lower()
            close = [k for k in known if lowered in k.lower() or k.lower() in lowered][:5]
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += " Did you mean: " + ", ".join(close) + "?"
        if hint:
            msg += " " + hint
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataNotFoundError(ClipBenchError):
    """A dataset (or part of one) is not where the task expects it."""
