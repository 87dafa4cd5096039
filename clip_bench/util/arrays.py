"""Checks of integer arrays that come from data (metadata, group codes): one clear error, never a silent cast."""

from __future__ import annotations

import numpy as np

from clip_bench.util.errors import ClipBenchError


def int64_array(values: np.ndarray, ndim: int, n: int, what: str) -> np.ndarray:
    """`values` as an int64 array of `ndim` dimensions with `n` rows; another shape or a non-integer dtype is a
    :class:`ClipBenchError` naming `what`."""
    arr = np.asarray(values)
    if arr.ndim != ndim or arr.shape[0] != n:
        rows = "one value" if ndim == 1 else "one row"
        raise ClipBenchError(f"{what} must have {rows} per sample ({n}, {ndim}-D), got an array of shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ClipBenchError(f"{what} must be integers, got {arr.dtype} values.")
    return arr.astype(np.int64)
