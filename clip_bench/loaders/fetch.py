"""Downloads for loaders that read a dataset's files themselves: torchvision fetches, errors made readable.

Several task loaders parse a dataset's own files (VOC XML, KITTI labels, CLEVR scenes...) but let
torchvision's dataset class do the downloading, so ``--download`` behaves the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clip_bench.loaders.base import LoadContext

#: What torchvision and its download helpers raise when a fetch fails (network, checksum, layout).
FETCH_ERRORS = (RuntimeError, OSError, ValueError, ImportError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def torchvision_fetch(ctx: LoadContext, dataset: str, root: Path, **kwargs: Any) -> None:
    """Let ``torchvision.datasets.<dataset>(root, download=True, **kwargs)`` fetch its files into `root`."""
    import torchvision.datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    try:
        getattr(tvd, dataset)(root=str(root), download=True, **kwargs)
    except FETCH_ERRORS as exc:
        raise ctx.missing(f"downloading it with torchvision's {dataset} failed ({_first_line(exc)})", root) from None


def fetch_archive(ctx: LoadContext, url: str, into: Path, md5: str | None = None) -> None:
    """Download and unpack one archive into `into` (for files torchvision's classes do not fetch)."""
    from torchvision.datasets.utils import download_and_extract_archive

    into.mkdir(parents=True, exist_ok=True)
    try:
        download_and_extract_archive(url, download_root=str(into), md5=md5, remove_finished=True)
    except FETCH_ERRORS as exc:
        raise ctx.missing(f"downloading {url} failed ({_first_line(exc)})", into) from None


def require(ctx: LoadContext, *paths: Path) -> None:
    """Raise the task's missing-data error naming the first of `paths` that does not exist."""
    for p in paths:
        if not p.exists():
            raise ctx.missing(f"{p.name} is missing", p)
