"""Where the shipped data files (tasks/, prompts/, assets/) live, in a checkout or an installed wheel,
and the settings read from environment variables."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """Directory of shipped data `name` ("tasks" or "prompts").

    In a wheel they are installed as ``clip_bench/data/<name>``; in a source checkout (or an
    editable install) they are the top-level ``<name>/`` folders beside the package.
    """
    for candidate in (_PKG / "data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"clip-bench's {name}/ folder is missing from the installation (looked in {_PKG})")


def assets_dir() -> Path:
    """Directory of binary assets shipped inside the package (tiny CLIP, testbed tables)."""
    return _PKG / "assets"


def env_setting(name: str, default: str | None = None) -> str | None:
    """Environment variable `name`, or `default` when it is unset or empty (an empty value means the default)."""
    value = os.environ.get(name, "")
    return value if value.strip() else default
