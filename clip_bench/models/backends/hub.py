"""Hugging Face hub references pinned to a commit: resolve a revision without downloading weights.

A hub repository can change under the same name, so a model from the hub is identified by the commit
its revision (default ``main``) points to. That commit goes into the model fingerprint (caches miss
when the repository moves) and into every result row, and the files are then fetched at exactly that
commit. Offline, the commit the local cache recorded for the revision is used, and the user is told.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from clip_bench.util.errors import ClipBenchError

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
REPO_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass(frozen=True)
class HubRef:
    """A hub model repository at one commit."""

    repo_id: str
    revision: str  # what the user asked for: a branch, a tag or a commit (default "main")
    commit: str  # the 40-hex commit hash it resolved to
    offline: bool = False  # resolved from the local cache because the hub was unreachable


def split_revision(ref: str) -> tuple[str, str | None]:
    """``org/repo@rev`` -> (``org/repo``, ``rev``); no ``@`` -> (ref, None)."""
    repo, sep, rev = ref.partition("@")
    if sep and not rev:
        raise ClipBenchError(f"model reference {ref!r} ends with '@' but names no revision; write "
                             "org/repo@<branch|tag|commit>.")
    return repo, (rev if sep else None)


def check_repo_id(repo_id: str, reference: str) -> None:
    """A hub repository id is ``name`` or ``org/name`` (letters, digits, '-', '_', '.')."""
    if not REPO_RE.fullmatch(repo_id):
        raise ClipBenchError(f"{reference!r} does not name a hub repository; expected org/name, e.g. "
                             "'hf-hub:timm/ViT-B-16-SigLIP'.")


def cache_root() -> Path:
    """The hub cache folder huggingface_hub uses (``$HF_HUB_CACHE``, by default ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_commit(repo_id: str, revision: str) -> str | None:
    """The commit the local hub cache recorded for `revision` of `repo_id` (None if it has none)."""
    if COMMIT_RE.fullmatch(revision):
        snap = cache_root() / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        return revision if snap.is_dir() else None
    ref = cache_root() / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if COMMIT_RE.fullmatch(commit) else None


@lru_cache(maxsize=256)
def remote_commit(repo_id: str, revision: str) -> str:
    """Ask the hub which commit `revision` points to (metadata only: no file is downloaded)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision)
    return str(info.sha)


def _not_found_errors() -> tuple[type[BaseException], ...]:
    try:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:  # older huggingface_hub
        from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError
    return RepositoryNotFoundError, RevisionNotFoundError


def resolve(repo_id: str, revision: str | None, reference: str) -> HubRef:
    """Pin `repo_id` at `revision` (default ``main``) to a commit hash.

    Online, the hub says which commit the revision points to. When the hub cannot be reached (or
    ``HF_HUB_OFFLINE=1``), the commit recorded in the local cache is used and a note says so; with
    nothing cached that is an error, since the weights could not be loaded anyway.
    """
    from huggingface_hub import constants

    check_repo_id(repo_id, reference)
    rev = revision or "main"
    reason = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        repo_missing, rev_missing = _not_found_errors()
        try:
            commit = remote_commit(repo_id, rev)
        except rev_missing:
            raise ClipBenchError(
                f"revision {rev!r} of {reference} does not exist on the hub; pass an existing branch, tag or commit."
            ) from None
        except repo_missing:
            raise ClipBenchError(
                f"{reference}: no model repository {repo_id!r} on the hub (or it is private/gated and you are not "
                "logged in: run `hf auth login`)."
            ) from None
        except Exception as exc:  # network down, proxy, DNS...: fall back to the local cache
            reason = f"the hub is unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        else:
            if not COMMIT_RE.fullmatch(commit):
                raise ClipBenchError(f"the hub returned {commit!r} as the commit of {reference}@{rev}; expected a "
                                     "commit hash.")
            return HubRef(repo_id, rev, commit)
    commit = cached_commit(repo_id, rev)
    if commit is None:
        raise ClipBenchError(
            f"cannot pin {reference} (revision {rev!r}) to a commit: {reason}, and the local hub cache "
            f"({cache_root()}) has no copy of it. Connect to the network once to download it."
        )
    print(f"clip-bench: note: {reason}; using the cached commit {commit[:12]} of {reference} (revision {rev!r}).",
          file=sys.stderr)
    return HubRef(repo_id, rev, commit, offline=True)


def download(ref: HubRef, filename: str) -> Path:
    """One file of `ref` at its pinned commit (from the cache when present)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ref.repo_id, filename, revision=ref.commit, local_files_only=ref.offline))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClipBenchError(
            f"could not get {filename} of {ref.repo_id} at commit {ref.commit[:12]} ({first}); check the network "
            "or that the repository holds this file."
        ) from None
