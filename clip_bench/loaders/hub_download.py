"""Fetching dataset files from the Hugging Face hub into the data root, with one clear error on failure."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from clip_bench.loaders.base import LoadContext
from clip_bench.util.errors import DataNotFoundError


def _failed(ctx: LoadContext, repo: str, exc: Exception) -> DataNotFoundError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ctx.missing(
        f"downloading {repo} ({ctx.source_split}) from the Hugging Face hub failed: {type(exc).__name__}"
        f"{': ' + detail if detail else ''}"
    )


def hub_snapshot(ctx: LoadContext, root: Path, repo: str, patterns: list[str], revision: str | None = None) -> None:
    """Download the files of dataset repo `repo` matching `patterns` into `root`, keeping the repo's layout."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of datasets
        raise ctx.missing("downloading needs huggingface_hub (pip install huggingface_hub)") from None
    root.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(repo_id=repo, repo_type="dataset", revision=revision, local_dir=str(root),
                          allow_patterns=patterns)
    except Exception as exc:  # network, auth and hub errors come in many types; all mean "not downloaded"
        raise _failed(ctx, repo, exc) from None


def hub_save_to_disk(ctx: LoadContext, root: Path, repo: str, revision: str | None = None) -> Path:
    """Fetch split ``ctx.source_split`` of dataset repo `repo` with ``datasets.load_dataset`` (as DataComp reads
    its evaluation sets) and write it with ``save_to_disk`` to ``<root>/<split>``; returns that folder.

    A repo that holds a loading script is read from the hub's parquet export (`revision`
    ``refs/convert/parquet``). The download cache goes to a temporary folder beside the split, removed after;
    the split's folder appears only once it is complete.
    """
    import datasets

    root.mkdir(parents=True, exist_ok=True)
    target = root / ctx.source_split
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ctx.missing(f"{target} exists but holds no save_to_disk dataset; move it away so that --download can "
                          "write the split there", target)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        try:
            ds = datasets.load_dataset(repo, split=ctx.source_split, revision=revision,
                                       cache_dir=str(Path(tmp) / "cache"))
            ds.save_to_disk(str(Path(tmp) / "split"))
        except Exception as exc:  # network, auth, hub and format errors come in many types
            raise _failed(ctx, repo, exc) from None
        del ds
        if target.is_dir():
            target.rmdir()  # empty (checked above)
        os.replace(Path(tmp) / "split", target)
        shutil.rmtree(Path(tmp) / "cache", ignore_errors=True)
    return target
