"""PatchCamelyon from its HDF5 files (torchvision's layout): labels read once, patches read on demand.

Layout: ``<root>/pcam/camelyonpatch_level_2_split_<split>_{x,y}.h5`` with ``x`` (N, 96, 96, 3) uint8 and
``y`` (N, 1, 1, 1). torchvision's PCAM reopens the file per item and keeps no label array, so this
loader owns a small reader instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext
from clip_bench.loaders.fetch import torchvision_fetch

FILE_PATTERN = "camelyonpatch_level_2_split_{split}_{kind}.h5"


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise ImportError("PatchCamelyon needs h5py: pip install h5py") from None
    return h5py


class H5Images(LabeledImages):
    """Images in one HDF5 dataset, opened lazily (once per process, so DataLoader workers each get a handle)."""

    def __init__(self, path: Path, key: str, targets: np.ndarray) -> None:
        self.path, self.key = str(path), key
        self.targets = targets
        self._file: Any = None

    def load_image(self, index: int) -> Image.Image:
        if self._file is None:
            self._file = _h5py().File(self.path, "r")
        return Image.fromarray(np.asarray(self._file[self.key][index])).convert("RGB")

    def describe(self, index: int) -> str:
        return f"{self.path}[{index}]"

    def data_files(self) -> list[str | Path]:
        return [Path(self.path), *self.annotation_files]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        return state


def load_pcam(ctx: LoadContext, folder: str = "pcam") -> H5Images:
    """One PCam split (``train``, ``valid`` or ``test`` in the file names)."""
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / folder
    x_path = base / FILE_PATTERN.format(split=ctx.source_split, kind="x")
    y_path = base / FILE_PATTERN.format(split=ctx.source_split, kind="y")
    if not (x_path.exists() and y_path.exists()) and ctx.download:
        tv_split = {"valid": "val"}.get(ctx.source_split, ctx.source_split)
        torchvision_fetch(ctx, "PCAM", ctx.root, split=tv_split)
    for p in (x_path, y_path):
        if not p.exists():
            raise ctx.missing(f"{p.name} is missing{'' if ctx.download else ' (pass --download to fetch it)'}", p)
    h5py = _h5py()
    try:
        with h5py.File(y_path, "r") as f:
            targets = np.asarray(f["y"][:]).reshape(-1).astype(np.int64)
        with h5py.File(x_path, "r") as f:
            n_images = int(f["x"].shape[0])
    except (OSError, KeyError) as exc:
        raise ctx.missing(f"the PCam HDF5 files cannot be read ({exc})", base) from None
    if n_images != len(targets):
        raise ctx.missing(f"{x_path.name} holds {n_images} patches but {y_path.name} {len(targets)} labels", base)
    data = H5Images(x_path, "x", targets)
    data.annotation_files = [y_path]
    return data
