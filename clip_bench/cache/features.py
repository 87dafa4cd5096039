"""Batched image-feature extraction with a fingerprinted, sharded, resumable on-disk cache.

Layout of one cache entry ``<cache>/features/<key>/``:
  part-00000.npy / part-00000.labels.npy / part-00000.json  while extracting (one per shard)
  features.npy (float16) / labels.npy / meta.json            once complete (meta.json written last)
Sidecars record sizes and SHA-256 checksums; a truncated or corrupt file is detected and recomputed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clip_bench.cache.identity import numeric_identity, task_hash
from clip_bench.config import ExtractConfig
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import (
    discard_path,
    file_lock,
    remove_temp_files,
    save_npy_atomic,
    save_npy_streamed,
    sha256_bytes,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from clip_bench.util.progress import progress_bar

FEATURE_KINDS = ("embed", "pre-proj")
CACHE_FORMAT = 3  # 3: keyed by the data's content fingerprint, not the data root's path
#: How ``--limit`` draws its subset (recorded in keys and rows; see subset_indices).
SUBSET_RULE = "stratified-v1"


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
    model_fingerprint: str, task: Any, source: Any, split: str, kind: str, limit: int | None,
    data_fingerprint: str | None,
    precision: str = "fp32", device: Any = None, skip_bad_images: bool = False,
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


def _file_record(path: Path) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _valid(record: Any, folder: Path) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return False
    path = folder / record["file"]
    return path.exists() and path.stat().st_size == record.get("bytes") and sha256_file(path) == record.get("sha256")


def indices_hash(indices: np.ndarray) -> str:
    """Hash of exactly which dataset indices (in order) a shard holds."""
    return sha256_bytes(np.ascontiguousarray(indices, dtype=np.int64).tobytes())


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


def encode_images(lm: Any, images: torch.Tensor, kind: str = "embed", compile: bool = False) -> torch.Tensor:
    """Image features of one preprocessed batch: the embedding, or the pre-projection features (any backend)."""
    if kind == "embed":
        return lm.image_encoder(compile)(images)
    if kind == "pre-proj":
        return lm.encode_image_pre_proj(images)
    raise ClipBenchError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}.")


def subset_indices(n: int, limit: int | None, seed: int = 0, labels: np.ndarray | None = None) -> np.ndarray:
    """All indices, or a fixed subset of `limit` of them in ascending order (the same every run).

    With single-label `labels` the subset is stratified: each class gets about ``limit * n_c / n``
    samples (every class at least one while ``limit`` allows), drawn at random with `seed`; without
    labels (or with multi-hot ones) it is a plain random draw. The rule is ``SUBSET_RULE``.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    labels = None if labels is None else np.asarray(labels)
    if labels is None or labels.ndim != 1 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
        return np.sort(rng.choice(n, size=limit, replace=False))
    perm = rng.permutation(n)
    _, inverse, counts = np.unique(labels[perm], return_inverse=True, return_counts=True)
    rank = np.zeros(n, dtype=np.int64)  # rank of each permuted sample within its class
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    # position within its class as a fraction: taking the smallest keys is a proportional, interleaved draw
    # that gives every class its first sample before any class its second
    key = rank / counts[inverse]
    chosen = perm[np.argsort(key, kind="stable")[:limit]]
    return np.sort(chosen)


def extract(
    lm: Any,
    dataset: Any,
    indices: np.ndarray,
    cache: FeatureCache | None,
    kind: str = "embed",
    cfg: ExtractConfig | None = None,
    provenance: dict[str, Any] | None = None,
    desc: str = "images",
) -> Features:
    """Encode `dataset[indices]` in shards.

    Finished shards found in `cache` are reused (only if they hold exactly the same images), so a
    killed run resumes where it stopped. The entry's lock is held from the check for a complete
    entry to the merge, so two runs sharing a cache never write or delete each other's shards: the
    second waits and then reads the first one's features. Under torchrun rank 0 holds the lock,
    each rank encodes a disjoint set of shards, rank 0 merges them and every rank returns the same
    features.
    """
    from clip_bench.util import distributed as ddp

    cfg = cfg or ExtractConfig()
    shards = [indices[s : s + cfg.shard_size] for s in range(0, len(indices), cfg.shard_size)] or [indices]
    if cache is None:
        mine = [i for i in range(len(shards)) if i % ddp.world_size() == ddp.rank()]
        t0 = time.perf_counter()
        computed = _encode_shards(lm, dataset, shards, mine, None, kind, cfg, desc)
        prov = {**(provenance or {}), "extract_seconds": round(time.perf_counter() - t0, 3), "kind": kind,
                "world_size": ddp.world_size()}
        for part in ddp.gather_objects(computed):
            computed.update(part)
        f = np.concatenate([computed[i][0] for i in range(len(shards))])
        y = np.concatenate([computed[i][1] for i in range(len(shards))])
        skipped = sum(computed[i][2] for i in range(len(shards)))
        return Features(f, y, {"rows": len(y), "skipped_images": skipped, **prov})
    with _entry_lock(cache):
        if ddp.broadcast_object(cache.load(discard=True) is not None if ddp.is_main() else None):
            return _load_on_every_rank(cache)  # another run finished it while we waited
        todo = [i for i, shard in enumerate(shards) if not cache.part_complete(i, shard)]
        mine = [i for i in todo if i % ddp.world_size() == ddp.rank()]
        t0 = time.perf_counter()
        _encode_shards(lm, dataset, shards, mine, cache, kind, cfg, desc)
        prov = {**(provenance or {}), "extract_seconds": round(time.perf_counter() - t0, 3), "kind": kind,
                "world_size": ddp.world_size()}
        ddp.barrier()
        feats = cache.finalize(shards, prov) if ddp.is_main() else None
        ddp.barrier()
        return feats if feats is not None else _load_on_every_rank(cache)


def _load_on_every_rank(cache: FeatureCache) -> Features:
    from clip_bench.util import distributed as ddp

    loaded = cache.load()
    if loaded is None:
        raise ClipBenchError(
            f"rank {ddp.rank()} cannot read the merged features in {cache.dir}; "
            "under torchrun every rank needs the same --cache-dir on a shared filesystem."
        )
    return loaded


@contextlib.contextmanager
def _entry_lock(cache: FeatureCache) -> Iterator[None]:
    """Rank 0 holds the entry's lock for the block; every rank starts the block once it does."""
    from clip_bench.util import distributed as ddp

    with contextlib.ExitStack() as stack:
        if ddp.is_main():
            try:
                stack.enter_context(cache.lock())
            except OSError as exc:
                raise cache_write_error(cache.dir, exc) from None
        ddp.barrier()
        yield


def _encode_shards(
    lm: Any, dataset: Any, shards: list[np.ndarray], todo: list[int], cache: FeatureCache | None,
    kind: str, cfg: ExtractConfig, desc: str,
) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Run the shards in `todo` through the model; each finished shard is saved at once (if caching)."""
    from torch.utils.data import DataLoader

    from clip_bench.loaders.base import Transformed

    out: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
    if not todo:
        return out
    model = lm.get() if hasattr(lm, "get") else lm
    pending = np.concatenate([shards[i] for i in todo])
    loader = DataLoader(
        _SafeTransformed(Transformed(dataset, model.preprocess, pending), cfg.skip_bad_images),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        pin_memory=model.device.type == "cuda",
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
        collate_fn=_collate,
    )
    targets = np.asarray(dataset.targets)
    buf_f: list[np.ndarray] = []
    buf_i: list[np.ndarray] = []
    buf_bad: list[np.ndarray] = []  # indices of skipped images, attributed to the shard that holds them
    queue = iter(todo)
    current = next(queue)
    need = len(shards[current])
    with progress_bar(total=len(pending), desc=desc, unit="img", quiet=cfg.quiet) as bar, torch.inference_mode():
        for images, idx, bad_idx in _unwrap_worker_errors(loader):
            buf_bad.append(bad_idx)
            if len(idx):
                images = images.to(model.device, non_blocking=True)
                if model.device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                with model.autocast():
                    emb = encode_images(model, images, kind, cfg.compile)
                buf_f.append(emb.float().cpu().numpy())
                buf_i.append(idx)
            bar.update(len(idx) + len(bad_idx))
            need -= len(idx) + len(bad_idx)
            while current is not None and need <= 0:
                got_f = np.concatenate(buf_f) if buf_f else np.zeros((0, 0), np.float32)
                got_i = np.concatenate(buf_i) if buf_i else np.zeros(0, np.int64)
                got_bad = np.concatenate(buf_bad)
                here = np.isin(got_i, shards[current])
                bad_here = np.isin(got_bad, shards[current])
                skipped = int(bad_here.sum())
                f, ix = got_f[here].astype(np.float16), got_i[here]
                _check_finite(f, ix, dataset, desc)
                if cache is not None:
                    cache.save_part(current, f, targets[ix], skipped, shards[current], cfg.shard_size)
                else:
                    out[current] = (f, targets[ix], skipped)
                buf_f, buf_i = ([got_f[~here]], [got_i[~here]]) if (~here).any() else ([], [])
                buf_bad = [got_bad[~bad_here]]
                current = next(queue, None)
                need += len(shards[current]) if current is not None else 0
    return out


def _check_finite(feats: np.ndarray, indices: np.ndarray, dataset: Any, desc: str) -> None:
    """Non-finite image features are an error naming an image, never a cached shard or a result."""
    bad = ~np.isfinite(feats).all(axis=1) if feats.ndim == 2 else np.zeros(0, bool)
    if not bad.any():
        return
    first = int(indices[np.flatnonzero(bad)[0]])
    where = dataset.describe(first) if hasattr(dataset, "describe") else f"sample {first}"
    raise ClipBenchError(
        f"{desc}: the image features of {int(bad.sum())} of {len(feats)} images are non-finite (NaN or inf), "
        f"e.g. {where}. The model gives non-finite outputs (check the checkpoint for NaN weights), or its "
        "features overflow float16; try --precision fp32."
    )


def _unwrap_worker_errors(loader: Any) -> Any:
    """Re-raise a ClipBenchError from a DataLoader worker with its own message, not the worker's traceback."""
    try:
        yield from loader
    except ClipBenchError as exc:
        text = str(exc)
        if "Traceback" in text:
            last = [ln for ln in text.splitlines() if ln.strip()][-1]
            text = last.split("ClipBenchError: ", 1)[-1]
        raise ClipBenchError(text) from None


class _SafeTransformed:
    """Turns an unreadable image into a clear error naming its file, or a skipped sample."""

    def __init__(self, inner: Any, skip_bad: bool) -> None:
        self.inner, self.skip_bad = inner, skip_bad

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        try:
            return self.inner[i]
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            if self.skip_bad:
                return None, int(self.inner.indices[i])  # a skipped image, named by its dataset index
            where = self.inner.inner.describe(self.inner.indices[i])
            raise ClipBenchError(
                f"cannot read image {where}: {exc}. Fix or remove it, or pass --skip-bad-images to skip such images."
            ) from None


def _collate(batch: list[tuple[Any, int]]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(images, their dataset indices, the dataset indices of skipped images) of one batch."""
    good = [b for b in batch if b[0] is not None]
    bad = np.asarray([b[1] for b in batch if b[0] is None], np.int64)
    if not good:
        return torch.zeros(0), np.zeros(0, np.int64), bad
    return torch.stack([b[0] for b in good]), np.asarray([b[1] for b in good], np.int64), bad
