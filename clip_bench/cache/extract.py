"""Extraction into the feature cache: images through the model in shards, resumable, across DataLoader workers
and torchrun ranks.

Each finished shard is saved at once (``clip_bench.cache.features.FeatureCache``), so a killed run resumes where
it stopped; the shards are merged into one entry when all are done.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from clip_bench.cache.features import FEATURE_KINDS, FeatureCache, Features, cache_write_error
from clip_bench.config import ExtractConfig
from clip_bench.loaders.base import LabeledImages, Transformed
from clip_bench.models.resolve import LoadedModel, ModelHandle
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.progress import progress_bar


def encode_images(lm: LoadedModel, images: torch.Tensor, kind: str = "embed", compile: bool = False) -> torch.Tensor:
    """Image features of one preprocessed batch: the embedding, or the pre-projection features (any backend)."""
    if kind == "embed":
        return lm.image_encoder(compile)(images)
    if kind == "pre-proj":
        return lm.encode_image_pre_proj(images)
    raise ClipBenchError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}.")


def extract(
    lm: LoadedModel | ModelHandle,
    dataset: LabeledImages,
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
    lm: LoadedModel | ModelHandle, dataset: LabeledImages, shards: list[np.ndarray], todo: list[int],
    cache: FeatureCache | None, kind: str, cfg: ExtractConfig, desc: str,
) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Run the shards in `todo` through the model; each finished shard is saved at once (if caching)."""
    from torch.utils.data import DataLoader

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


def _check_finite(feats: np.ndarray, indices: np.ndarray, dataset: LabeledImages, desc: str) -> None:
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


def _unwrap_worker_errors(
    loader: Iterable[tuple[torch.Tensor, np.ndarray, np.ndarray]],
) -> Iterator[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
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

    def __init__(self, inner: Transformed, skip_bad: bool) -> None:
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
