"""Row subsets and row stacks of feature matrices that are read chunk by chunk, never copied whole.

A probe on a held-out validation split (ImageNet: 20 % of 1.28 M rows) or on train + val would
otherwise gather a full copy of its rows out of the float16 feature cache (1.6 GB at ImageNet scale).
:class:`RowView` names the rows instead; the solver and the scoring read them a chunk at a time
(``view[i:j]`` gathers only those rows), so the only copy of the features is the memory-mapped cache.
A chunk holds exactly the rows the gathered copy would hold, so every number is bit-identical to the
gathered path (tests/test_probe_rows.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clip_bench.util.errors import ClipBenchError

# Below this many bytes a gathered copy is cheap and the solver reads it faster than a view.
GATHER_BELOW_BYTES = 64 * 2**20


class RowView:
    """Rows of one or more 2-D arrays (e.g. float16 memmaps), in order: ``parts`` is a sequence of
    ``(array, index)`` with ``index`` a 1-D integer array of rows or ``None`` for all rows.

    ``view[i:j]`` returns those rows as one NumPy array (gathered on demand); ``np.asarray(view)``
    gathers everything (for code that needs a real array, e.g. the scikit-learn solver)."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> None:
        if not parts:
            raise ClipBenchError("a row view needs at least one feature array")
        self._parts: list[tuple[np.ndarray, np.ndarray | None]] = []
        width = None
        for base, index in parts:
            if base.ndim != 2:
                raise ClipBenchError(f"features must be a 2-D array (n_samples, n_features), got shape {base.shape}")
            if width is not None and base.shape[1] != width:
                raise ClipBenchError(f"feature arrays to stack have different widths ({width} and {base.shape[1]})")
            width = base.shape[1]
            if index is not None:
                index = np.asarray(index)
                if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
                    raise ClipBenchError("row indices must be a 1-D integer array")
                if index.size and (index.min() < 0 or index.max() >= base.shape[0]):
                    raise ClipBenchError(f"row indices out of range for {base.shape[0]} rows")
            self._parts.append((base, index))
        dtypes = {np.dtype(base.dtype) for base, _ in self._parts}
        self.dtype = np.result_type(*dtypes)
        lengths = [base.shape[0] if index is None else index.size for base, index in self._parts]
        self._starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.shape = (int(self._starts[-1]), int(width))

    @classmethod
    def of(cls, base: np.ndarray, index: np.ndarray | None = None) -> RowView:
        """The rows ``index`` of ``base`` (all of them if None)."""
        return cls([(base, index)])

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions`` (of the stacked view), written straight into one output array."""
        out = np.empty((positions.size, self.shape[1]), dtype=self.dtype)
        if positions.size > 1 and np.any(np.diff(positions) < 0):  # unordered: one part at a time by mask
            part_of = np.searchsorted(self._starts, positions, side="right") - 1
            for p in np.unique(part_of):
                sel = part_of == p
                out[sel] = self._take(p, positions[sel] - self._starts[p])
            return out
        bounds = np.searchsorted(positions, self._starts)  # positions are ascending: each part is one block
        for p, (base, index) in enumerate(self._parts):
            a, b = int(bounds[p]), int(bounds[p + 1])
            if a == b:
                continue
            local = positions[a:b] - self._starts[p]
            rows = local if index is None else index[local]
            if rows[-1] - rows[0] == b - a - 1 and np.all(np.diff(rows) == 1):  # contiguous: a plain slice
                out[a:b] = base[int(rows[0]) : int(rows[-1]) + 1]
            else:  # gathered into the output directly (mode="clip": no buffer; indices were checked)
                np.take(base, rows, axis=0, out=out[a:b], mode="clip")
        return out

    def _take(self, p: int, local: np.ndarray) -> np.ndarray:
        base, index = self._parts[p]
        return base[local if index is None else index[local]]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self._rows(np.arange(*key.indices(self.shape[0]), dtype=np.int64))
        if isinstance(key, (np.ndarray, list)):
            positions = np.arange(self.shape[0], dtype=np.int64)[np.asarray(key)]
            return self._rows(np.atleast_1d(positions))
        raise TypeError(f"RowView supports slices and index arrays, not {type(key).__name__}")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


class TorchRows:
    """A CPU torch face of a :class:`RowView` for the solver: ``rows[i:j]`` is a tensor of those rows."""

    def __init__(self, view: RowView) -> None:
        self.view = view
        self.shape = torch.Size(view.shape)
        self.dtype = torch.from_numpy(np.empty(0, dtype=view.dtype)).dtype
        self.device = torch.device("cpu")

    def __getitem__(self, key) -> torch.Tensor:
        return torch.from_numpy(self.view[key])


def _gathered_if_small(view: RowView) -> np.ndarray | RowView:
    """The view's rows as one array when that copy is under :data:`GATHER_BELOW_BYTES` (faster to
    solve on), else the view itself (the same numbers, no copy)."""
    return view[:] if view.nbytes < GATHER_BELOW_BYTES else view


def rows_of(base: np.ndarray, index: np.ndarray | None) -> np.ndarray | RowView:
    """``base[index]``, gathered only when small (:func:`_gathered_if_small`)."""
    return base if index is None else _gathered_if_small(RowView.of(base, index))


def stack_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray | RowView:
    """``np.concatenate([first, second])``, gathered only when small (:func:`_gathered_if_small`)."""
    return _gathered_if_small(RowView([(first, None), (second, None)]))
