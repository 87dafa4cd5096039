"""Fetching dataset files from the Hugging Face hub into the data root, with one clear error on failure."""

from __future__ import annotations

from pathlib import Path

from clip_bench.loaders.base import LoadContext


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
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ctx.missing(
            f"downloading {repo} ({ctx.source_split}) from the Hugging Face hub failed: {type(exc).__name__}"
            f"{': ' + detail if detail else ''}"
        ) from None
