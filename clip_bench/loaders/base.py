"""The loader contract: a loader turns (task, source, split, root) into a labelled image dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from clip_bench.loaders.subset import subset_indices
from clip_bench.tasks.spec import SourceSpec, TaskSpec
from clip_bench.util.arrays import int64_array
from clip_bench.util.errors import DataNotFoundError
from clip_bench.util.io import array_digest


@dataclass
class LoadContext:
    """Everything a loader needs to find one split of one source."""

    task: TaskSpec
    source: SourceSpec
    split: str  # the task's split name
    source_split: str  # the source's own name for it
    root: Path | None  # data_root / source.path, or None for sources that need no files
    data_root: Path
    download: bool

    def missing(self, what: str, expected: Path | str | None = None) -> DataNotFoundError:
        """A clear error for absent data: the path, the source, and how to get it."""
        expected = expected if expected is not None else self.root
        msg = (
            f"{self.task.name} ({self.split} split) from source {self.source.name!r}: {what}"
            f"{f' (expected at {expected})' if expected is not None else ''}."
        )
        how = self.source.download
        if how:
            msg += f" To get it: {how.strip()}"
        msg += f" Use --data-root to point at another folder (now {self.data_root})."
        return DataNotFoundError(msg)


class LabeledImages(Dataset):
    """Base class for loaders' datasets: ``__getitem__`` returns (PIL RGB image, target).

    ``targets`` holds every target without opening an image: int class indices in the source's own
    order, or a float multi-hot matrix (N, C) for multi-label tasks. ``metadata`` is None, or (N, M) int64:
    row i is sample i's metadata vector (e.g. WILDS' region and year), whose columns a task's ``group_by``
    names.
    """

    targets: np.ndarray
    metadata: np.ndarray | None = None
    #: Files besides the images that the loader read to build the dataset (annotation, split, label and
    #: class-list files): a changed label file changes the numbers, so they count in the data fingerprint.
    annotation_files: Sequence[Path] = ()

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def expected_count(self) -> int:
        """What a source's ``expected`` count counts: the samples (a set of multi-image instances: its instances)."""
        return len(self)

    def limit_indices(self, limit: int | None) -> np.ndarray:
        """The samples a ``--limit`` run encodes and scores (all when `limit` is None):
        :func:`clip_bench.loaders.subset.subset_indices`, stratified by the targets."""
        return subset_indices(len(self), limit, labels=np.asarray(self.targets))

    def data_files(self) -> list[str | Path] | None:
        """Every file this dataset reads (images, shards or containers, plus ``annotation_files``): its data
        fingerprint (``clip_bench.cache.data_fingerprint``). ``[]`` when it reads no file (its in-memory content,
        :meth:`memory_digest`, is hashed instead); None when it does not say (every file under the source's
        root is then hashed)."""
        return None

    def memory_digest(self) -> str:
        """A hash of the images of a dataset that reads no file."""
        raise NotImplementedError(f"{type(self).__name__} reads no file but cannot hash its images")

    def load_image(self, index: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """Where sample `index` comes from (a file path when there is one), for error messages."""
        return f"sample {index}"

    def __getitem__(self, index: int) -> tuple[Image.Image, Any]:
        return self.load_image(index), self.targets[index]


class FileImages(LabeledImages):
    """Images stored one per file."""

    def __init__(self, paths: Sequence[str | Path], targets: np.ndarray) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets)

    def load_image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as im:
            return im.convert("RGB")

    def data_files(self) -> list[str | Path]:
        return [*self.paths, *self.annotation_files]

    def describe(self, index: int) -> str:
        return self.paths[index]


class ArrayImages(LabeledImages):
    """Images held in memory as a uint8 array (N, H, W) or (N, H, W, 3), read from `files` (none: built in memory),
    with optional per-sample `metadata` (N, M) integers."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, files: Sequence[str | Path] = (),
                 metadata: np.ndarray | None = None) -> None:
        self.images = images
        self.targets = np.asarray(targets)
        self.annotation_files = [Path(f) for f in files]
        if metadata is not None:
            self.metadata = int64_array(metadata, 2, len(self.targets), "per-sample metadata")

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.images[index])).convert("RGB")

    def data_files(self) -> list[str | Path]:
        return list(self.annotation_files)

    def memory_digest(self) -> str:
        return array_digest(self.images)


class Loader(Protocol):
    def __call__(self, ctx: LoadContext, **args: Any) -> LabeledImages: ...


class Remapped(LabeledImages):
    """A dataset whose source labels are re-indexed into the task's class order."""

    def __init__(self, inner: LabeledImages, label_map: Sequence[int]) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        lut = np.asarray(label_map, dtype=np.int64)
        t = inner.targets
        if t.ndim == 1:
            self.targets = lut[t]
        else:  # multi-hot: permute the columns
            out = np.zeros((t.shape[0], int(lut.max()) + 1), dtype=t.dtype)
            out[:, lut] = t
            self.targets = out

    def load_image(self, index: int) -> Image.Image:
        return self.inner.load_image(index)

    def describe(self, index: int) -> str:
        return self.inner.describe(index)

    def data_files(self) -> list[str | Path] | None:
        return self.inner.data_files()

    def memory_digest(self) -> str:
        return self.inner.memory_digest()


class Transformed:
    """Applies an image transform; returns (tensor, target, index) for the DataLoader."""

    def __init__(self, inner: LabeledImages, transform: Callable[[Image.Image], Any], indices: Sequence[int]) -> None:
        self.inner, self.transform, self.indices = inner, transform, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        idx = self.indices[i]
        try:
            image = self.inner.load_image(idx)
        except Image.DecompressionBombError as exc:  # an unreadable image like any other (named, skippable)
            raise ValueError(f"{exc} (PIL refuses images this large)") from None
        return self.transform(image), idx
