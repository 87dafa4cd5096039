"""The ``--limit`` sampler: which dataset indices a limited run uses, the rule's name, and a hash of a selection."""

from __future__ import annotations

import numpy as np

from clip_bench.util.io import sha256_bytes

#: How ``--limit`` draws its subset (recorded in keys and rows; see subset_indices).
SUBSET_RULE = "stratified-v1"


def indices_hash(indices: np.ndarray) -> str:
    """Hash of exactly which dataset indices (in order) a shard holds."""
    return sha256_bytes(np.ascontiguousarray(indices, dtype=np.int64).tobytes())


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
