"""Batched image-feature extraction with a fingerprinted, sharded, resumable on-disk cache.

Layout of one cache entry ``<cache>/features/<key>/``:
  part-00000.npy / part-00000.labels.npy / part-00000.json  while extracting (one per shard)
  features.npy (float16) / labels.npy / meta.json            once complete (meta.json written last)
Sidecars record sizes and SHA-256 checksums; a truncated or corrupt file is detected and recomputed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ClipBenchError
from .io_utils import save_npy_atomic, sha256_file, sha256_json, write_json_atomic
from .progress import progress_bar

FEATURE_KINDS = ("embed", "pre-proj")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ExtractConfig:
    """How to run extraction: batching, workers, sharding, progress."""

    batch_size: int = 64
    workers: int = 2
    shard_size: int = 2048
    quiet: bool = False
    skip_bad_images: bool = False
    compile: bool = False  # torch.compile the image tower (helps on recent GPUs; first batch is slow)

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("workers", 0), ("shard_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ClipBenchError(f"ExtractConfig.{name} must be an integer >= {low}, got {value!r}.")


@dataclass
class Features:
    """Cached features (float16, memory-mapped) and their targets, with the cache metadata."""

    features: np.ndarray
    labels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.labels)


def default_cache_dir() -> Path:
    """``$CLIP_BENCH_CACHE`` or ``~/.cache/clip_bench``."""
    return Path(os.environ.get("CLIP_BENCH_CACHE", Path.home() / ".cache" / "clip_bench")).expanduser()


def feature_key(
    model_fingerprint: str, task: Any, source: Any, split: str, kind: str, limit: int | None, data_root: Path
) -> dict[str, Any]:
    """Everything that determines a feature file's content; its hash names the cache entry."""
    return {
        "format": CACHE_FORMAT,
        "model": model_fingerprint,
        "task": task.name,
        "task_version": task.version,
        "source": source.name,
        "source_config": source.config_hash,
        "split": split,
        "kind": kind,
        "limit": limit,
        "data_root": str(Path(data_root).expanduser().resolve()) if source.path else None,
    }


def _file_record(path: Path) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _valid(record: dict[str, Any], folder: Path) -> bool:
    path = folder / record["file"]
    return path.exists() and path.stat().st_size == record["bytes"] and sha256_file(path) == record["sha256"]


class FeatureCache:
    """One cache entry: complete features, or the shards of an interrupted extraction."""

    def __init__(self, cache_dir: str | Path, key: dict[str, Any]) -> None:
        self.key = key
        self.dir = Path(cache_dir) / "features" / sha256_json(key)[:24]

    def load(self) -> Features | None:
        """The complete entry, or None if absent or damaged (a damaged entry is discarded)."""
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != self.key or not all(_valid(meta[f], self.dir) for f in ("features", "labels")):
                raise ValueError("checksum mismatch")
            feats = np.load(self.dir / "features.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(self.dir / "labels.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            meta_path.unlink(missing_ok=True)
            return None
        return Features(feats, labels, meta, from_cache=True)

    def part_paths(self, i: int) -> tuple[Path, Path, Path]:
        stem = self.dir / f"part-{i:05d}"
        return stem.with_suffix(".npy"), Path(f"{stem}.labels.npy"), stem.with_suffix(".json")

    def part_complete(self, i: int, n_expected: int) -> bool:
        """Whether shard `i` was written whole (row count, sizes and checksums all match)."""
        meta_p = self.part_paths(i)[2]
        try:
            meta = json.loads(meta_p.read_text())
            return (meta["rows"] + meta.get("skipped", 0)) == n_expected and all(
                _valid(meta[f], self.dir) for f in ("features", "labels")
            )
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return False

    def save_part(self, i: int, feats: np.ndarray, labels: np.ndarray, skipped: int) -> None:
        feats_p, labels_p, meta_p = self.part_paths(i)
        save_npy_atomic(feats_p, feats.astype(np.float16))
        save_npy_atomic(labels_p, labels)
        write_json_atomic(
            meta_p,
            {"rows": int(len(labels)), "skipped": skipped, "features": _file_record(feats_p), "labels": _file_record(labels_p)},
        )

    def finalize(self, n_parts: int, provenance: dict[str, Any]) -> Features:
        """Merge the shards into one float16 file, write meta.json last, and remove the shards."""
        parts = [(np.load(self.part_paths(i)[0], allow_pickle=False), np.load(self.part_paths(i)[1], allow_pickle=False))
                 for i in range(n_parts)]
        feats = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 0), np.float16)
        labels = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0,), np.int64)
        skipped = sum(json.loads(self.part_paths(i)[2].read_text()).get("skipped", 0) for i in range(n_parts))
        save_npy_atomic(self.dir / "features.npy", feats.astype(np.float16))
        save_npy_atomic(self.dir / "labels.npy", labels)
        meta = {
            "key": self.key,
            "rows": int(len(labels)),
            "dim": int(feats.shape[1]) if feats.ndim == 2 else 0,
            "skipped_images": skipped,
            "features": _file_record(self.dir / "features.npy"),
            "labels": _file_record(self.dir / "labels.npy"),
            **provenance,
        }
        write_json_atomic(self.dir / "meta.json", meta)
        for i in range(n_parts):
            for p in self.part_paths(i):
                p.unlink(missing_ok=True)
        return Features(np.load(self.dir / "features.npy", mmap_mode="r"), labels, meta)


def encode_images(lm: Any, images: torch.Tensor, kind: str = "embed", compile: bool = False) -> torch.Tensor:
    """Image features of one preprocessed batch: the embedding, or the ViT's pre-projection features."""
    model = lm.model
    if kind == "embed":
        return lm.image_encoder(compile)(images)
    visual = model.visual
    if kind == "pre-proj":
        proj = getattr(visual, "proj", None)
        if proj is None:
            raise ClipBenchError(
                f"--features pre-proj needs a ViT image tower with a projection; {type(visual).__name__} has none. "
                "Use --features embed."
            )
        visual.proj = None
        try:
            return visual(images)
        finally:
            visual.proj = proj
    raise ClipBenchError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}.")


def subset_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """All indices, or a fixed random subset of `limit` of them in ascending order (same every run)."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


def extract(
    lm: Any,
    dataset: Any,
    indices: np.ndarray,
    cache: FeatureCache | None,
    kind: str = "embed",
    cfg: ExtractConfig = ExtractConfig(),
    provenance: dict[str, Any] | None = None,
    desc: str = "images",
) -> Features:
    """Encode `dataset[indices]` in shards.

    Finished shards found in `cache` are reused, so a killed run resumes where it stopped. Under
    torchrun each rank encodes a disjoint set of shards; rank 0 merges them and every rank returns
    the same features.
    """
    from . import distributed as ddp

    shards = [indices[s : s + cfg.shard_size] for s in range(0, len(indices), cfg.shard_size)] or [indices]
    todo = [i for i, shard in enumerate(shards) if cache is None or not cache.part_complete(i, len(shard))]
    mine = [i for i in todo if i % ddp.world_size() == ddp.rank()]
    t0 = time.perf_counter()
    computed = _encode_shards(lm, dataset, shards, mine, cache, kind, cfg, desc)
    prov = {**(provenance or {}), "extract_seconds": round(time.perf_counter() - t0, 3), "kind": kind,
            "world_size": ddp.world_size()}
    if cache is not None:
        ddp.barrier()
        if ddp.is_main():
            feats = cache.finalize(len(shards), prov)
        ddp.barrier()
        if not ddp.is_main():
            loaded = cache.load()
            if loaded is None:
                raise ClipBenchError(
                    f"rank {ddp.rank()} cannot read the merged features in {cache.dir}; "
                    "under torchrun every rank needs the same --cache-dir on a shared filesystem."
                )
            feats = loaded
        return feats
    for part in ddp.gather_objects(computed):
        computed.update(part)
    f = np.concatenate([computed[i][0] for i in range(len(shards))])
    y = np.concatenate([computed[i][1] for i in range(len(shards))])
    skipped = sum(computed[i][2] for i in range(len(shards)))
    return Features(f, y, {"rows": len(y), "skipped_images": skipped, **prov})


def _encode_shards(
    lm: Any, dataset: Any, shards: list[np.ndarray], todo: list[int], cache: FeatureCache | None,
    kind: str, cfg: ExtractConfig, desc: str,
) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Run the shards in `todo` through the model; each finished shard is saved at once (if caching)."""
    from torch.utils.data import DataLoader

    from .loaders.base import Transformed

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
    skipped = 0
    queue = iter(todo)
    current = next(queue)
    need = len(shards[current])
    with progress_bar(total=len(pending), desc=desc, unit="img", quiet=cfg.quiet) as bar, torch.inference_mode():
        for images, idx, n_bad in _unwrap_worker_errors(loader):
            skipped += n_bad
            if len(idx):
                images = images.to(model.device, non_blocking=True)
                if model.device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                with model.autocast():
                    emb = encode_images(model, images, kind, cfg.compile)
                buf_f.append(emb.float().cpu().numpy())
                buf_i.append(idx)
            bar.update(len(idx) + n_bad)
            need -= len(idx) + n_bad
            while current is not None and need <= 0:
                got_f = np.concatenate(buf_f) if buf_f else np.zeros((0, 0), np.float32)
                got_i = np.concatenate(buf_i) if buf_i else np.zeros(0, np.int64)
                here = np.isin(got_i, shards[current])
                f, ix = got_f[here].astype(np.float16), got_i[here]
                if cache is not None:
                    cache.save_part(current, f, targets[ix], skipped)
                else:
                    out[current] = (f, targets[ix], skipped)
                buf_f, buf_i = ([got_f[~here]], [got_i[~here]]) if (~here).any() else ([], [])
                skipped = 0
                current = next(queue, None)
                need += len(shards[current]) if current is not None else 0
    return out


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

    def __getitem__(self, i: int) -> tuple[Any, int] | None:
        try:
            return self.inner[i]
        except (OSError, ValueError, SyntaxError) as exc:
            if self.skip_bad:
                return None
            where = self.inner.inner.describe(self.inner.indices[i])
            raise ClipBenchError(
                f"cannot read image {where}: {exc}. Fix or remove it, or pass --skip-bad-images to skip such images."
            ) from None


def _collate(batch: list[tuple[Any, int] | None]) -> tuple[torch.Tensor, np.ndarray, int]:
    good = [b for b in batch if b is not None]
    bad = len(batch) - len(good)
    if not good:
        return torch.zeros(0), np.zeros(0, np.int64), bad
    return torch.stack([b[0] for b in good]), np.asarray([b[1] for b in good], np.int64), bad

