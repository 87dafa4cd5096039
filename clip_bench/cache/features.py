"""The on-disk image-feature cache: its key, its entries, their shards and sidecar checks, and the merge of shards.

Extraction into it is ``clip_bench.cache.extract``.

Layout of one cache entry ``<cache>/features/<key>/``:
  part-00000.npy / part-00000.labels.npy / part-00000.json  while extracting (one per shard)
  features.npy (float16) / labels.npy / meta.json            once complete (meta.json written last)
Sidecars record sizes and SHA-256 checksums; a truncated or corrupt file is detected and recomputed.
A task with ``group_by`` also keeps each image's group code in meta.json (``group_codes``, with its checksum
``group_codes_sha256``: :func:`group_codes_meta`, :func:`cached_group_codes`); other entries are unchanged.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clip_bench.cache.identity import numeric_identity, task_hash
from clip_bench.loaders.base import LabeledImages
from clip_bench.loaders.subset import SUBSET_RULE, indices_hash
from clip_bench.tasks.spec import SourceSpec, TaskSpec
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import (
    array_digest,
    discard_path,
    file_lock,
    remove_temp_files,
    save_npy_atomic,
    save_npy_streamed,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

FEATURE_KINDS = ("embed", "pre-proj")
CACHE_FORMAT = 3  # 3: keyed by the data's content fingerprint, not the data root's path


@dataclass
class Features:
    """Cached features (float16, memory-mapped) and their targets, with the cache metadata."""

    features: np.ndarray
    labels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.labels)


def feature_key(
    model_fingerprint: str, task: TaskSpec, source: SourceSpec, split: str, kind: str, limit: int | None,
    data_fingerprint: str | None,
    precision: str = "fp32", device: str | torch.device | None = None, skip_bad_images: bool = False,
) -> dict[str, Any]:
    """Everything that determines a feature file's content; its hash names the cache entry.

    The model fingerprint (architecture, weights, preprocessing), the task (name, version, definition
    hash), the source and its config hash, the split, the feature kind, ``--limit`` and its sampling
    rule, the data's content fingerprint (``clip_bench.cache.data_fingerprint``: other images under the same
    root are another entry, the same images under another root the same entry), the precision (with
    the device type below fp32, whose autocast kernels differ by device), and ``--skip-bad-images`` (an
    entry that skipped images is never served to a run that did not ask to skip them).
    """
    return {
        "format": CACHE_FORMAT,
        "model": model_fingerprint,
        "task": task.name,
        "task_version": task.version,
        "task_hash": task_hash(task),
        "source": source.name,
        "source_config": source.config_hash,
        "split": split,
        "kind": kind,
        "limit": limit,
        "subset_rule": SUBSET_RULE if limit is not None else None,
        "data": data_fingerprint,
        **numeric_identity(precision, device),
        "skip_bad_images": bool(skip_bad_images),
    }


def group_codes_meta(task: TaskSpec, data: LabeledImages, indices: np.ndarray) -> dict[str, Any]:
    """What a cache entry keeps beside the features of `data[indices]` for a task with ``group_by``: each image's
    code in the named metadata column (nothing for other tasks). Data without that column is an error."""
    group_by = task.extra.get("group_by")
    if not group_by:
        return {}
    column, what = int(group_by["column"]), group_by["name"]
    metadata = data.metadata
    if metadata is None:
        raise ClipBenchError(f"task {task.name!r} groups its images by {what} (metadata column {column}), but its data "
                             "carries no per-sample metadata; use a source whose loader reads it (the WebDataset "
                             "shards' .npy files), or a task without group_by.")
    if not 0 <= column < metadata.shape[1]:
        raise ClipBenchError(f"task {task.name!r} groups its images by metadata column {column} ({what}), but its "
                             f"data has {metadata.shape[1]} metadata columns (0..{metadata.shape[1] - 1}); fix "
                             "group_by.column in the task file.")
    codes = np.asarray(metadata, dtype=np.int64)[np.asarray(indices, dtype=np.int64), column]
    if codes.size and codes.min() < 0:
        raise ClipBenchError(f"task {task.name!r}: metadata column {column} ({what}) holds the negative code "
                             f"{int(codes.min())}; group codes are integers >= 0.")
    return {"group_codes": codes.tolist(), "group_codes_sha256": array_digest(codes)}


def cached_group_codes(task: TaskSpec, feats: Features) -> np.ndarray | None:
    """Each feature row's group code for a task with ``group_by`` (None for other tasks), checked against its
    checksum and the rows; a missing, damaged or misaligned list is an error, never other groups."""
    if not task.extra.get("group_by"):
        return None
    stored = feats.meta.get("group_codes")
    redo = "delete that cache entry (or pass --no-cache) and run again"
    if stored is None:
        raise ClipBenchError(f"task {task.name!r}: the cached features carry no group codes; {redo}.")
    try:
        codes = np.asarray(stored, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        codes = None
    if codes is None or codes.ndim != 1 or array_digest(codes) != feats.meta.get("group_codes_sha256"):
        raise ClipBenchError(f"task {task.name!r}: the group codes in the feature cache are damaged; {redo}.")
    if len(codes) != len(feats):
        skipped = int(feats.meta.get("skipped_images", 0) or 0)
        why = (f"--skip-bad-images left {skipped} unreadable images out, so which group each remaining image is in "
               "is not known; fix or remove those images" if skipped else redo)
        raise ClipBenchError(f"task {task.name!r}: {len(codes)} group codes for {len(feats)} images: {why}.")
    return codes


def _file_record(path: Path) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _valid(record: Any, folder: Path) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return False
    path = folder / record["file"]
    return path.exists() and path.stat().st_size == record.get("bytes") and sha256_file(path) == record.get("sha256")


def cache_write_error(path: Path, exc: OSError) -> ClipBenchError:
    """A one-line error for a cache folder that cannot be written (read-only, full, ...)."""
    reason = exc.strerror or type(exc).__name__
    return ClipBenchError(
        f"cannot write the feature cache at {path} ({reason}). Finished shards are kept; free space or make it "
        "writable and run again to resume, or pass --cache-dir to a writable folder (or --no-cache)."
    )


class FeatureCache:
    """One cache entry: complete features, or the shards of an interrupted extraction.

    Writers hold the entry's lock (:meth:`lock`) from the check for a complete entry to the merge,
    so two runs never write or delete the same shards; readers of a complete entry need no lock
    (files are replaced atomically, never modified in place).
    """

    def __init__(self, cache_dir: str | Path, key: dict[str, Any]) -> None:
        self.key = key
        self.dir = Path(cache_dir) / "features" / sha256_json(key)[:24]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The entry's exclusive lock; says so on stderr when another process holds it.

        Every write to the entry happens under it, so temporary files found on taking it were left by a
        process that died mid-write (killed, or out of disk): they are removed.
        """
        if self.dir.exists() and not self.dir.is_dir():  # a stray file named like the entry: damage, not an entry
            print(f"clip-bench: warning: damaged feature-cache entry {self.dir} (a file, not a folder); it is "
                  "removed and computed again.", file=sys.stderr)
            discard_path(self.dir)
        with file_lock(self.dir / ".lock", wait_message=(
                f"clip-bench: waiting for another process that is extracting the same features ({self.dir})")):
            remove_temp_files(self.dir)
            yield

    def load(self, discard: bool = False) -> Features | None:
        """The complete entry, or None if absent or damaged (a damaged entry is discarded when `discard`).

        Only a caller holding :meth:`lock` should discard, so a concurrent writer's fresh entry is never removed.
        """
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            return None
        if not meta_path.is_file():
            if discard:  # said once, by the run that repairs it
                print(f"clip-bench: warning: damaged feature-cache entry {self.dir} ({meta_path.name} is not a "
                      "file); it is computed again.", file=sys.stderr)
                discard_path(meta_path)
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or meta.get("key") != self.key:
                raise ValueError("not this entry")
            if not all(_valid(meta.get(f), self.dir) for f in ("features", "labels")):
                raise ValueError("checksum mismatch")
            feats = np.load(self.dir / "features.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(self.dir / "labels.npy", allow_pickle=False)
            rows = meta.get("rows")
            if feats.ndim != 2 or len(feats) != rows or len(labels) != rows or feats.dtype != np.float16:
                raise ValueError("shape mismatch")
        except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if discard:  # said once, by the run that repairs it
                print(f"clip-bench: warning: damaged feature-cache entry {self.dir} ({exc}); it is computed "
                      "again.", file=sys.stderr)
                meta_path.unlink(missing_ok=True)
            return None
        return Features(feats, labels, meta, from_cache=True)

    def part_paths(self, i: int) -> tuple[Path, Path, Path]:
        stem = self.dir / f"part-{i:05d}"
        return stem.with_suffix(".npy"), Path(f"{stem}.labels.npy"), stem.with_suffix(".json")

    def part_meta(self, i: int, indices: np.ndarray) -> dict[str, Any] | None:
        """Shard `i`'s sidecar if it holds exactly `indices` and its files are whole (sizes and checksums)."""
        try:
            meta = json.loads(self.part_paths(i)[2].read_text())
            ok = (
                isinstance(meta, dict) and meta.get("indices_sha256") == indices_hash(indices)
                and meta.get("count") == len(indices)
                and (meta["rows"] + meta.get("skipped", 0)) == len(indices)
                and all(_valid(meta.get(f), self.dir) for f in ("features", "labels"))
            )
        except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return meta if ok else None

    def part_complete(self, i: int, indices: np.ndarray) -> bool:
        """Whether shard `i` was written whole and holds exactly the images `indices`."""
        return self.part_meta(i, indices) is not None

    def save_part(self, i: int, feats: np.ndarray, labels: np.ndarray, skipped: int, indices: np.ndarray,
                  shard_size: int) -> None:
        """Write shard `i` (arrays first, the sidecar last as its commit marker)."""
        feats_p, labels_p, meta_p = self.part_paths(i)
        try:
            for path in (meta_p, feats_p, labels_p):  # a damaged earlier copy (even a directory); the sidecar first
                discard_path(path)
            save_npy_atomic(feats_p, feats.astype(np.float16))
            save_npy_atomic(labels_p, labels)
            write_json_atomic(meta_p, {
                "rows": int(len(labels)), "skipped": skipped, "count": int(len(indices)),
                "first": int(indices[0]) if len(indices) else None, "last": int(indices[-1]) if len(indices) else None,
                "indices_sha256": indices_hash(indices), "shard_size": shard_size,
                "features": _file_record(feats_p), "labels": _file_record(labels_p),
            })
        except OSError as exc:
            raise cache_write_error(self.dir, exc) from None

    def finalize(self, shards: list[np.ndarray], provenance: dict[str, Any]) -> Features:
        """Merge the shards into one float16 file, write meta.json last, and remove every part file.

        Each shard is checked again (indices and checksums) and streamed into the output with ordinary
        writes, so the peak memory is about one shard, not the whole array, and a full disk is an
        error naming the file (the shards stay for the next run). The caller holds :meth:`lock`.
        """
        metas = []
        for i, idx in enumerate(shards):
            meta = self.part_meta(i, idx)
            if meta is None:
                raise ClipBenchError(f"feature shard {self.part_paths(i)[0]} changed or vanished while merging; "
                                     "run the same command again (it is recomputed).")
            metas.append(meta)
        rows = sum(m["rows"] for m in metas)
        heads = [np.load(self.part_paths(i)[0], mmap_mode="r", allow_pickle=False) for i in range(len(shards))]
        dims = {h.shape[1] for h in heads if h.ndim == 2 and len(h)}
        if len(dims) > 1:
            raise ClipBenchError(f"feature shards in {self.dir} have different widths {sorted(dims)}; "
                                 "delete that folder and run again.")
        dim = dims.pop() if dims else 0
        del heads
        outputs = [self.dir / name for name in ("meta.json", "features.npy", "labels.npy")]  # meta.json first
        try:
            for target in outputs:  # an earlier merge's leftovers (never served without meta.json) make room
                discard_path(target)
            target = outputs[1]
            save_npy_streamed(target, np.float16, (rows, dim), (
                np.load(self.part_paths(i)[0], mmap_mode="r", allow_pickle=False) for i in range(len(shards))))
            labels_parts = [np.load(self.part_paths(i)[1], allow_pickle=False) for i in range(len(shards))]
            labels = np.concatenate(labels_parts) if labels_parts else np.zeros((0,), np.int64)
            target = outputs[2]
            save_npy_atomic(target, labels)
            meta = {
                "key": self.key,
                "rows": int(rows),
                "dim": int(dim),
                "skipped_images": sum(m.get("skipped", 0) for m in metas),
                "shard_size": metas[0].get("shard_size") if metas else None,
                "features": _file_record(self.dir / "features.npy"),
                "labels": _file_record(self.dir / "labels.npy"),
                **provenance,
            }
            target = outputs[0]
            write_json_atomic(target, meta)
        except OSError as exc:
            for path in outputs:  # an incomplete merge is never kept: the disk gets its space back
                with contextlib.suppress(OSError):
                    discard_path(path)
            raise cache_write_error(target, exc) from None
        self.remove_parts()
        return Features(np.load(self.dir / "features.npy", mmap_mode="r"), labels, meta)

    def remove_parts(self) -> None:
        """Delete every shard file and temporary file of this entry (the caller holds the lock)."""
        for p in self.dir.glob("part-*"):
            p.unlink(missing_ok=True)
        remove_temp_files(self.dir)
