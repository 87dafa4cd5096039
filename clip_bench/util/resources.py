"""Where the shipped data files (tasks/, prompts/, assets/) live, in a checkout or an installed wheel,
the settings read from environment variables, and the default data and cache folders."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent


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


def default_cache_dir() -> Path:
    """``$CLIP_BENCH_CACHE`` or ``~/.cache/clip_bench``: where features and text embeddings are cached."""
    return Path(env_setting("CLIP_BENCH_CACHE") or Path.home() / ".cache" / "clip_bench").expanduser()


def default_data_root() -> Path:
    """``$CLIP_BENCH_DATA`` or ``~/.cache/clip_bench/data``: where datasets are looked for."""
    return Path(env_setting("CLIP_BENCH_DATA") or Path.home() / ".cache" / "clip_bench" / "data").expanduser()
