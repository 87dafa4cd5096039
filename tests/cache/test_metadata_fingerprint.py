"""Per-sample metadata is part of the data's identity: in-memory data with other metadata has another fingerprint
(so other feature-cache entries, result ids and sample hashes), data without metadata keeps its fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from clip_bench.cache.data_fingerprint import fingerprint_dataset
from clip_bench.loaders.base import ArrayImages, Remapped
from clip_bench.loaders.digits import digits_arrays
from clip_bench.util.errors import ClipBenchError


def test_metadata_changes_the_fingerprint_of_in_memory_data():
    images, labels = digits_arrays("test", 16)
    meta = np.column_stack([np.arange(len(labels)) % 3, np.full(len(labels), 7)])
    plain = fingerprint_dataset(ArrayImages(images, labels), None)
    with_meta = fingerprint_dataset(ArrayImages(images, labels, metadata=meta), None)
    moved = meta.copy()
    moved[0, 0] = 2 if meta[0, 0] != 2 else 1  # one image in another region
    assert len({plain, with_meta, fingerprint_dataset(ArrayImages(images, labels, metadata=moved), None)}) == 3
    assert fingerprint_dataset(ArrayImages(images, labels, metadata=meta.copy()), None) == with_meta
    remapped = Remapped(ArrayImages(images, labels, metadata=meta), list(range(10)))
    assert np.array_equal(remapped.metadata, meta) and fingerprint_dataset(remapped, None) == with_meta


def test_metadata_must_be_one_integer_row_per_sample():
    images, labels = digits_arrays("test", 16)
    with pytest.raises(ClipBenchError, match="one row per sample"):
        ArrayImages(images, labels, metadata=np.zeros((3, 2), int))
    with pytest.raises(ClipBenchError, match="one row per sample"):
        ArrayImages(images, labels, metadata=np.zeros(len(labels), int))
    with pytest.raises(ClipBenchError, match="integers"):
        ArrayImages(images, labels, metadata=np.zeros((len(labels), 1)))
    assert ArrayImages(images, labels, metadata=np.zeros((len(labels), 2), np.int8)).metadata.dtype == np.int64
