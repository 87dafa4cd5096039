"""On-disk cache of text embeddings keyed by (model fingerprint, tokenizer, precision, exact prompt string).

Each write adds one shard: ``<n>.npy`` (float32 rows) then ``<n>.json`` (the prompt of each row, the
array's SHA-256, shape and dtype), written last as the commit marker. Reading checks all of them
and that every row is finite and unit-length: a damaged shard (a flipped byte, NaN rows, a wrong
width, a torn or malformed JSON) is deleted and its prompts are encoded again. Nothing is ever
unpickled. Reads, writes and merges hold the entry's lock, so no shard is deleted under a reader.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.cache.identity import numeric_identity
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import (
    discard_path,
    file_lock,
    remove_temp_files,
    save_npy_atomic,
    sha256_file,
    write_json_atomic,
)

MAX_SHARDS = 32  # merge shards into one beyond this many
SHARD_FORMAT = 2
_NORM_TOLERANCE = 1e-3


def _entry_tag(precision: str, device: Any) -> str:
    """The numeric part of an entry's folder name: the precision, and the device type where it matters."""
    num = numeric_identity(precision, device)
    return num["precision"] + (f"-{num['device_type']}" if num["device_type"] else "")


class TextEmbeddingCache:
    """Prompt -> L2-normalised embedding, for one model fingerprint, tokenizer and precision."""

    def __init__(
        self, root: str | Path, model_fingerprint: str, tokenizer_id: str, precision: str = "fp32", device: Any = None,
        dim: int | None = None,
    ) -> None:
        self.dir = Path(root) / "text" / f"{model_fingerprint}-{tokenizer_id}-{_entry_tag(precision, device)}"
        self.dim = dim  # the embedding width when the model config says it; shards of another width are damaged
        self._rows: dict[str, np.ndarray] | None = None
        self.discarded: list[str] = []  # names of damaged shards found (and removed) while loading

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """The entry's lock; temporary files found on taking it were left by a writer that died, and are removed."""
        with file_lock(self.dir / ".lock"):
            remove_temp_files(self.dir)
            yield

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            if self.dir.is_dir():
                try:
                    with self._lock():
                        self._rows = self._read_all(delete_damaged=True)
                except OSError:  # a read-only cache (permissions, a read-only mount): read it, repair nothing
                    self._rows = self._read_all(delete_damaged=False)
        return self._rows

    def _read_all(self, delete_damaged: bool) -> dict[str, np.ndarray]:
        shards: list[tuple[Path, list[str], np.ndarray]] = []
        for meta in sorted(self.dir.glob("*.json")):
            got = _read_shard(meta)
            if got is None:
                self._discard(meta, delete_damaged)
            else:
                shards.append((meta, *got))
        widths: Counter[int] = Counter()
        for _, prompts, arr in shards:
            widths[arr.shape[1]] += len(prompts)
        width = self.dim if self.dim else (widths.most_common(1)[0][0] if widths else None)
        rows: dict[str, np.ndarray] = {}
        for meta, prompts, arr in shards:
            if arr.shape[1] != width:
                self._discard(meta, delete_damaged)
                continue
            rows.update(zip(prompts, arr))
        if delete_damaged:  # an array without its JSON is a writer killed before committing (we hold the lock)
            for arr_path in self.dir.glob("*.npy"):
                if not arr_path.with_suffix(".json").exists():
                    discard_path(arr_path)
        return rows

    def _discard(self, meta: Path, delete: bool) -> None:
        self.discarded.append(meta.stem)
        print(f"clip-bench: warning: damaged text-cache shard {meta.with_suffix('.npy')} "
              f"{'removed' if delete else 'ignored'}; its prompts are encoded again.", file=sys.stderr)
        if delete:
            discard_path(meta)
            discard_path(meta.with_suffix(".npy"))

    def lookup(self, prompts: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Split prompts into (found embeddings, missing prompts)."""
        rows = self._load()
        found = {p: rows[p] for p in prompts if p in rows}
        return found, [p for p in prompts if p not in rows]

    def add(self, prompts: list[str], embeddings: np.ndarray) -> None:
        """Store new embeddings as one shard; merges shards when there are many."""
        if not prompts:
            return
        embeddings = np.asarray(embeddings, dtype=np.float32)
        rows = self._load()
        rows.update(zip(prompts, embeddings))
        try:
            with self._lock():
                self._write_shard(uuid.uuid4().hex, list(prompts), embeddings)
                shards = sorted(self.dir.glob("*.json"))
                if len(shards) > MAX_SHARDS:
                    self._merge(shards)
        except OSError as exc:
            raise ClipBenchError(
                f"cannot write the text-embedding cache at {self.dir} ({exc.strerror or type(exc).__name__}); "
                "free space or make it writable, or pass --cache-dir to a writable folder (or --no-cache)."
            ) from None

    def _write_shard(self, name: str, prompts: list[str], arr: np.ndarray) -> None:
        arr_path = self.dir / f"{name}.npy"
        save_npy_atomic(arr_path, arr)
        write_json_atomic(self.dir / f"{name}.json", {
            "format": SHARD_FORMAT, "prompts": prompts, "sha256": sha256_file(arr_path),
            "shape": list(arr.shape), "dtype": str(arr.dtype),
        })

    def _merge(self, shards: list[Path]) -> None:
        rows = self._read_all(delete_damaged=True)  # caller holds the lock
        self._rows = rows
        keys = list(rows)
        self._write_shard("merged-" + uuid.uuid4().hex, keys, np.stack([rows[k] for k in keys]).astype(np.float32))
        for meta in shards:
            meta.unlink(missing_ok=True)
            meta.with_suffix(".npy").unlink(missing_ok=True)


def _read_shard(meta: Path) -> tuple[list[str], np.ndarray] | None:
    """(prompts, rows) of one shard if every check passes, else None."""
    arr_path = meta.with_suffix(".npy")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or info.get("format") != SHARD_FORMAT:
            return None
        prompts, shape = info.get("prompts"), info.get("shape")
        if not (isinstance(prompts, list) and all(isinstance(p, str) for p in prompts) and isinstance(shape, list)):
            return None
        if info.get("dtype") != "float32" or shape[:1] != [len(prompts)] or len(shape) != 2:
            return None
        if sha256_file(arr_path) != info.get("sha256"):
            return None
        arr = np.load(arr_path, allow_pickle=False)
    except (OSError, ValueError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if arr.dtype != np.float32 or list(arr.shape) != shape or not np.isfinite(arr).all():
        return None
    if len(arr) and np.abs(np.linalg.norm(arr, axis=1) - 1).max() > _NORM_TOLERANCE:
        return None
    return prompts, arr


def find_cached_embeddings(
    root: str | Path, fingerprint: str, prompts: list[str], precision: str | None, device: Any,
) -> dict[str, np.ndarray] | None:
    """Cached embeddings of every prompt for the model `fingerprint` at `precision` on `device`, from any
    tokenizer's entry that has them all, or None (used to replay a row without its model).

    The fingerprint, read from a result row, names cache folders: letters, digits, ``-`` and ``_`` only.
    """
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9A-Za-z_-]+", fingerprint):
        raise ClipBenchError(f"model fingerprint {str(fingerprint)[:60]!r} of a result row is not a fingerprint (hex "
                             "digits), so it names no cache entry; the results file was edited or damaged.")
    precision = precision or "fp32"
    head, tail = f"{fingerprint}-", f"-{_entry_tag(precision, device)}"
    for folder in sorted((Path(root) / "text").glob(f"{head}*{tail}")):
        tokenizer = folder.name[len(head): len(folder.name) - len(tail)]
        cache = TextEmbeddingCache(root, fingerprint, tokenizer, precision, device)
        if cache.dir != folder:
            continue
        found, missing = cache.lookup(prompts)
        if not missing:
            return found
    return None
