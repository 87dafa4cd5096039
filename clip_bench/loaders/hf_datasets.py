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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext
from clip_bench.loaders.hub_download import hub_snapshot


def cell_file(path: str, base: Path | None) -> Path:
    """The file an image cell names by `path` (without bytes): absolute, or relative to `base` (a parquet
    file's folder; None: the current folder)."""
    file = Path(path)
    return file if file.is_absolute() or base is None else base / file


def to_pil(value: Any, base: Path | None = None) -> Image.Image:
    """An image cell (PIL image, ``{"bytes", "path"}`` struct, or raw bytes) as an RGB PIL image."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            value = value["bytes"]
        elif value.get("path"):
            with Image.open(cell_file(value["path"], base)) as im:
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
        return to_pil(self.dataset[int(index)][self.image_column])

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
        return to_pil(self._cached[1][row], Path(self.files[fi]).parent)

    def describe(self, index: int) -> str:
        (fi, gi), row = self._locate(int(index))
        return f"{self.files[fi]} (row group {gi}, row {row})"

    def data_files(self) -> list[str | Path]:
        return [*self.files, *self.image_files]


def path_cells(column: Any) -> list[str]:
    """The paths of the image cells of an arrow column (chunked or not; of images, or of lists of images) that
    hold a path and no bytes: the image is then read from that file, so it is part of the data (its
    fingerprint)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[str] = []
    for chunk in chunks:
        while pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type):
            chunk = chunk.flatten()  # the images of every list, in order
        if not pa.types.is_struct(chunk.type) or chunk.type.get_field_index("path") < 0:
            continue
        paths = chunk.field("path")
        if chunk.type.get_field_index("bytes") >= 0:
            from_file = pc.and_(chunk.field("bytes").is_null(), paths.is_valid())
            paths = paths.filter(pc.fill_null(from_file, False))
        out.extend(p for p in paths.to_pylist() if p)
    return out


def _parquet_path_cells(pf: Any, image_column: str) -> list[str]:
    """:func:`path_cells` of a parquet file, reading only the row groups whose image bytes are not all present
    (by the file's null counts; a row group without them is read)."""
    leaf = f"{image_column}.bytes"
    out: list[str] = []
    for g in range(pf.num_row_groups):
        group = pf.metadata.row_group(g)
        stats = next((group.column(j).statistics for j in range(group.num_columns)
                      if group.column(j).path_in_schema == leaf), None)
        if stats is not None and stats.has_null_count and stats.null_count == 0:
            continue  # every image of the row group is stored in the file
        out.extend(path_cells(pf.read_row_group(g, columns=[image_column]).column(image_column)))
    return out


def check_cell_files(ctx: LoadContext, files: list[Path], where: Path) -> None:
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


@dataclass
class HFSplit:
    """One split of a Hugging Face dataset on disk, opened without decoding an image: the values of the columns
    asked for, in row order, and how to make the image dataset (:meth:`images`)."""

    columns: dict[str, list[Any]]
    make_images: Callable[[np.ndarray], LabeledImages]
    where: Path  # the save_to_disk folder, or the folder of the parquet files

    def images(self, targets: np.ndarray) -> LabeledImages:
        """The image column, one image per row, with `targets` (one per row)."""
        return self.make_images(targets)


def load_from_disk(ctx: LoadContext, split_dir: Path) -> Any:
    """The ``datasets.Dataset`` saved in `split_dir` (memory-mapped); a damaged folder is one clear error."""
    import datasets

    try:
        return datasets.load_from_disk(str(split_dir))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged state.json / dataset_info.json
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ctx.missing(f"{split_dir} is not a readable save_to_disk folder ({detail})", split_dir) from None


def arrow_files(ds: Any, split_dir: Path) -> list[Path]:
    """The files a saved dataset reads: its arrow files and the folder's metadata (its data fingerprint)."""
    files = [Path(f["filename"]) for f in ds.cache_files]
    return files + [p for p in (split_dir / "state.json", split_dir / "dataset_info.json") if p.exists()]


def column_values(ds: Any, column: str) -> list[Any]:
    """A column of a saved dataset as Python values, without decoding images."""
    return ds.select_columns([column]).with_format("arrow")[:][column].to_pylist()


def check_columns(ctx: LoadContext, have: list[str], want: list[str], where: Path, name: str = "the dataset") -> None:
    """Every column in `want` must be among `have`, else one clear error naming what there is."""
    for col in want:
        if col not in have:
            raise ctx.missing(f"{name} has no column {col!r} (it has {', '.join(have)})", where)


def open_hf_split(ctx: LoadContext, image_column: str, columns: list[str],
                  fetch: Callable[[], None] | None = None) -> HFSplit:
    """The split ``<root>/<source split>`` saved with ``save_to_disk``, else its parquet files (module docstring).

    `fetch` (``--download``) is called first when neither is there.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_dir = ctx.root / ctx.source_split
    if fetch is not None and not (split_dir / "state.json").exists() and not find_parquet(ctx.root, ctx.source_split):
        fetch()
    if (split_dir / "state.json").exists():
        ds = load_from_disk(ctx, split_dir)
        check_columns(ctx, ds.column_names, [image_column, *columns], split_dir)
        values = {col: column_values(ds, col) for col in columns}  # no image decoding
        files = arrow_files(ds, split_dir)
        cells = [cell_file(p, None) for p in path_cells(ds.data.table.column(image_column))]
        check_cell_files(ctx, cells, split_dir)
        files += cells

        def arrow(targets: np.ndarray) -> LabeledImages:
            return ArrowImages(ds, image_column, targets, str(split_dir), files if ds.cache_files else None)

        return HFSplit(values, arrow, split_dir)
    files = find_parquet(ctx.root, ctx.source_split)
    if not files:
        raise ctx.missing(
            f"no save_to_disk folder ({ctx.source_split}/state.json) and no parquet files for split "
            f"{ctx.source_split!r}", ctx.root,
        )
    import pyarrow.parquet as pq

    row_counts: list[list[int]] = []
    values: dict[str, list[Any]] = {col: [] for col in columns}
    named: list[Path] = []  # images that cells name by path
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            check_columns(ctx, pf.schema_arrow.names, [image_column, *columns], f, f.name)
            row_counts.append([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
            if columns:
                table = pf.read(columns=columns)
                for col in columns:
                    values[col].extend(table.column(col).to_pylist())
            named.extend(cell_file(p, f.parent) for p in _parquet_path_cells(pf, image_column))
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ctx.missing(f"{f.name} is not a readable parquet file ({detail})", f) from None
    check_cell_files(ctx, named, ctx.root)

    def parquet(targets: np.ndarray) -> LabeledImages:
        return ParquetImages(files, row_counts, image_column, targets, named)

    return HFSplit(values, parquet, files[0].parent)


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
    fetch = None
    if ctx.download and repo and ctx.root is not None:
        root = ctx.root

        def fetch() -> None:
            hub_snapshot(ctx, root, repo, _hub_patterns(ctx.source_split), revision)

    split = open_hf_split(ctx, image_column, [label_column], fetch)
    return split.images(_targets(ctx, split.columns[label_column], label_column))
