"""Hugging Face ``datasets`` data on disk: a ``save_to_disk`` folder, or parquet files (the hub's layout).

Looked up for split ``s`` under ``<data_root>/<source path>/``, in this order:

- ``s/`` written by ``Dataset.save_to_disk`` (or one split of a ``DatasetDict.save_to_disk``);
- parquet files ``s/*.parquet``, ``data/s-*.parquet`` (hub repos), ``*/s/*.parquet`` (the hub's
  parquet conversion), ``s-*.parquet`` or ``s.parquet``.

Arrow folders are memory-mapped by ``datasets``; parquet files are read directly with pyarrow, one
row group at a time, so no converted copy is written anywhere. Labels are integer class indices in
the source's order, or strings matched to the task's class names. An image cell that holds a path and no
bytes (what ``Dataset.to_parquet`` writes for images built from files) is read from that file (absolute, or
relative to the parquet file's folder), which then counts among the files the split reads (its fingerprint).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext
from clip_bench.loaders.hub_download import hub_snapshot


def _cell_file(path: str, base: Path | None) -> Path:
    """The file an image cell names by `path` (without bytes): absolute, or relative to `base` (a parquet
    file's folder; None: the current folder)."""
    file = Path(path)
    return file if file.is_absolute() or base is None else base / file


def _to_pil(value: Any, base: Path | None = None) -> Image.Image:
    """An image cell (PIL image, ``{"bytes", "path"}`` struct, or raw bytes) as an RGB PIL image."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            value = value["bytes"]
        elif value.get("path"):
            with Image.open(_cell_file(value["path"], base)) as im:
                return im.convert("RGB")
    if isinstance(value, bytes | bytearray | memoryview):
        with Image.open(io.BytesIO(bytes(value))) as im:
            return im.convert("RGB")
    raise ValueError(f"the image cell holds {type(value).__name__}, not image bytes or a path")


class ArrowImages(LabeledImages):
    """A ``datasets.Dataset`` loaded from disk (memory-mapped); images decode one row at a time."""

    def __init__(self, dataset: Any, image_column: str, targets: np.ndarray, where: str,
                 files: list[Path] | None = None) -> None:
        self.dataset = dataset.select_columns([image_column])
        self.image_column = image_column
        self.targets = targets
        self.where = where
        self.files = files  # the arrow files and the folder's metadata (None: not known)

    def load_image(self, index: int) -> Image.Image:
        return _to_pil(self.dataset[int(index)][self.image_column])

    def data_files(self) -> list[str | Path] | None:
        return self.files

    def describe(self, index: int) -> str:
        return f"{self.where}[{index}]"


class ParquetImages(LabeledImages):
    """Rows of parquet files; the image column of one row group is read (and kept) at a time."""

    def __init__(self, files: list[Path], row_counts: list[list[int]], image_column: str, targets: np.ndarray,
                 image_files: list[Path] | None = None) -> None:
        self.files = [str(f) for f in files]
        self.image_files = [str(f) for f in image_files or []]  # images that cells name by path (no bytes)
        self.image_column = image_column
        self.targets = targets
        starts, locs = [], []
        pos = 0
        for fi, groups in enumerate(row_counts):
            for gi, n in enumerate(groups):
                starts.append(pos)
                locs.append((fi, gi))
                pos += n
        self._starts = np.asarray(starts, dtype=np.int64)
        self._locs = locs
        self._cached: tuple[tuple[int, int, int], list[Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers start with an empty row-group cache
        state = dict(self.__dict__)
        state["_cached"] = None
        return state

    def _locate(self, index: int) -> tuple[tuple[int, int], int]:
        g = int(np.searchsorted(self._starts, index, side="right") - 1)
        return self._locs[g], index - int(self._starts[g])

    def load_image(self, index: int) -> Image.Image:
        import pyarrow.parquet as pq

        (fi, gi), row = self._locate(int(index))
        key = (os.getpid(), fi, gi)
        if self._cached is None or self._cached[0] != key:
            table = pq.ParquetFile(self.files[fi]).read_row_group(gi, columns=[self.image_column])
            self._cached = (key, table.column(self.image_column).to_pylist())
        return _to_pil(self._cached[1][row], Path(self.files[fi]).parent)

    def describe(self, index: int) -> str:
        (fi, gi), row = self._locate(int(index))
        return f"{self.files[fi]} (row group {gi}, row {row})"

    def data_files(self) -> list[str | Path]:
        return [*self.files, *self.image_files]


def _path_cells(column: Any) -> list[str]:
    """The paths of the image cells of an arrow column (chunked or not) that hold a path and no bytes: the image
    is then read from that file, so it is part of the data (its fingerprint)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[str] = []
    for chunk in chunks:
        if not pa.types.is_struct(chunk.type) or chunk.type.get_field_index("path") < 0:
            continue
        paths = chunk.field("path")
        if chunk.type.get_field_index("bytes") >= 0:
            from_file = pc.and_(chunk.field("bytes").is_null(), paths.is_valid())
            paths = paths.filter(pc.fill_null(from_file, False))
        out.extend(p for p in paths.to_pylist() if p)
    return out


def _parquet_path_cells(pf: Any, image_column: str) -> list[str]:
    """:func:`_path_cells` of a parquet file, reading only the row groups whose image bytes are not all present
    (by the file's null counts; a row group without them is read)."""
    leaf = f"{image_column}.bytes"
    out: list[str] = []
    for g in range(pf.num_row_groups):
        group = pf.metadata.row_group(g)
        stats = next((group.column(j).statistics for j in range(group.num_columns)
                      if group.column(j).path_in_schema == leaf), None)
        if stats is not None and stats.has_null_count and stats.null_count == 0:
            continue  # every image of the row group is stored in the file
        out.extend(_path_cells(pf.read_row_group(g, columns=[image_column]).column(image_column)))
    return out


def _check_cell_files(ctx: LoadContext, files: list[Path], where: Path) -> None:
    """Images that cells name by path must exist (they are read, and fingerprinted, like any image file)."""
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise ctx.missing(f"{len(absent)} of the {len(files)} images that the image cells name by path are missing "
                          f"(first: {absent[0]})", where)


def _hub_patterns(split: str) -> list[str]:
    """Where a split's parquet files may sit (first match wins), as globs relative to the source folder."""
    return [f"{split}/*.parquet", f"data/{split}-*.parquet", f"*/{split}/*.parquet", f"{split}-*.parquet",
            f"{split}.parquet"]


def find_parquet(root: Path, split: str) -> list[Path]:
    """The parquet files of `split` under `root`, in name order (first layout that matches wins)."""
    for pattern in _hub_patterns(split):
        files = sorted(root.glob(pattern))
        if files:
            return files
    return []


def _targets(ctx: LoadContext, values: list[Any], label_column: str) -> np.ndarray:
    """Integer labels; string labels are matched to the task's class names."""
    if values and isinstance(values[0], str):
        names = {n: i for i, n in enumerate(ctx.task.prompt_set().display_names())}
        unknown = sorted({v for v in values if v not in names})
        if unknown:
            raise ctx.missing(f"labels in column {label_column!r} are not class names of the task: {unknown[:5]}")
        return np.asarray([names[v] for v in values], dtype=np.int64)
    array = np.asarray(values)
    if array.dtype.kind == "f" and array.size and np.isfinite(array).all() and (array == np.round(array)).all():
        array = array.astype(np.int64)  # whole numbers stored as floats
    if array.dtype.kind not in "iu":
        bad = next((v for v in values if isinstance(v, bool) or not (
            isinstance(v, int | np.integer) or (isinstance(v, float) and v.is_integer()))), None)
        raise ctx.missing(
            f"column {label_column!r} does not hold integer class indices or class names (found {bad!r})"
        )
    return array.astype(np.int64)


def load_hf_datasets(
    ctx: LoadContext,
    image_column: str = "image",
    label_column: str = "label",
    repo: str | None = None,
    revision: str | None = None,
) -> LabeledImages:
    """The ``hf_datasets`` loader: a split saved with ``save_to_disk``, or as parquet files.

    With --download and a `repo`, a split with no files is fetched as the dataset repo's parquet files.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_dir = ctx.root / ctx.source_split
    if (ctx.download and repo and not (split_dir / "state.json").exists()
            and not find_parquet(ctx.root, ctx.source_split)):
        hub_snapshot(ctx, ctx.root, repo, _hub_patterns(ctx.source_split), revision)
    if (split_dir / "state.json").exists():
        import datasets

        try:
            ds = datasets.load_from_disk(str(split_dir))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged state.json / dataset_info.json
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ctx.missing(f"{split_dir} is not a readable save_to_disk folder ({detail})", split_dir) from None
        for col in (image_column, label_column):
            if col not in ds.column_names:
                raise ctx.missing(f"the dataset has no column {col!r} (it has {', '.join(ds.column_names)})", split_dir)
        column = ds.select_columns([label_column]).with_format("arrow")[:][label_column]  # no image decoding
        targets = _targets(ctx, column.to_pylist(), label_column)
        files = [Path(f["filename"]) for f in ds.cache_files]
        files += [p for p in (split_dir / "state.json", split_dir / "dataset_info.json") if p.exists()]
        cells = [_cell_file(p, None) for p in _path_cells(ds.data.table.column(image_column))]
        _check_cell_files(ctx, cells, split_dir)
        files += cells
        return ArrowImages(ds, image_column, targets, str(split_dir), files if ds.cache_files else None)
    files = find_parquet(ctx.root, ctx.source_split)
    if not files:
        raise ctx.missing(
            f"no save_to_disk folder ({ctx.source_split}/state.json) and no parquet files for split "
            f"{ctx.source_split!r}", ctx.root,
        )
    import pyarrow.parquet as pq

    row_counts, labels, cells = [], [], []
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            for col in (image_column, label_column):
                if col not in names:
                    raise ctx.missing(f"{f.name} has no column {col!r} (it has {', '.join(names)})", f)
            row_counts.append([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
            labels.extend(pf.read(columns=[label_column]).column(label_column).to_pylist())
            cells.extend(_cell_file(p, f.parent) for p in _parquet_path_cells(pf, image_column))
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ctx.missing(f"{f.name} is not a readable parquet file ({detail})", f) from None
    _check_cell_files(ctx, cells, ctx.root)
    return ParquetImages(files, row_counts, image_column, _targets(ctx, labels, label_column), cells)
