"""Any ``torchvision.datasets`` class, with its split arguments and download flag taken from the task file."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext

TARGET_ATTRIBUTES = ("targets", "_labels", "labels", "_targets", "y")
#: Where torchvision datasets keep their image file list (a path, or a (path, label) tuple, per sample).
IMAGE_LIST_ATTRIBUTES = ("_image_files", "_images", "imgs", "samples", "_samples")


class TorchvisionImages(LabeledImages):
    """Wraps a torchvision dataset; targets are read from its attributes, never by opening images."""

    def __init__(self, dataset: Any, targets: np.ndarray) -> None:
        self.dataset = dataset
        self.targets = targets

    def data_files(self) -> list[str | Path] | None:
        """The image files the dataset lists plus the annotation or array files it read (:data:`DATASET_FILES`);
        None for a dataset class not listed there (every file under the source's root then counts)."""
        rule = DATASET_FILES.get(type(self.dataset).__name__)
        try:
            extra = rule(self.dataset) if rule is not None else None
        except AttributeError:  # another torchvision version keeps them elsewhere
            extra = None
        if extra is None:
            return None
        images = next((items for a in IMAGE_LIST_ATTRIBUTES
                       if (items := getattr(self.dataset, a, None)) is not None), [])
        listed = [os.fspath(item[0] if isinstance(item, tuple) else item) for item in images]
        return [*listed, *extra]

    def load_image(self, index: int) -> Image.Image:
        image = self.dataset[index][0]
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        return image.convert("RGB")

    def describe(self, index: int) -> str:
        for attr in IMAGE_LIST_ATTRIBUTES:
            items = getattr(self.dataset, attr, None)
            if items is not None:
                item = items[index]
                return str(item[0] if isinstance(item, tuple) else item)
        return f"{type(self.dataset).__name__}[{index}]"


def _mnist_files(ds: Any) -> list[Path]:
    if getattr(ds, "_check_legacy_exist", lambda: False)():  # an old torchvision's processed/*.pt is read instead
        return [Path(ds.processed_folder) / (ds.training_file if ds.train else ds.test_file)]
    prefix = "train" if ds.train else "t10k"
    return [Path(ds.raw_folder) / f"{prefix}-images-idx3-ubyte", Path(ds.raw_folder) / f"{prefix}-labels-idx1-ubyte"]


def _cifar_files(ds: Any) -> list[Path]:
    base = Path(ds.root) / ds.base_folder
    return [base / name for name, _ in (ds.train_list if ds.train else ds.test_list)] + [base / ds.meta["filename"]]


def _stl10_files(ds: Any) -> list[Path]:
    base = Path(ds.root) / ds.base_folder
    lists = {"train": ds.train_list[:2], "test": ds.test_list, "unlabeled": ds.train_list[2:],
             "train+unlabeled": ds.train_list}[ds.split]
    extra = [base / ds.class_names_file] + ([base / ds.folds_list_file] if ds.folds is not None else [])
    return [base / name for name, _ in lists] + [p for p in extra if p.exists()]


def _fgvc_files(ds: Any) -> list[Path]:
    data = Path(ds._data_path) / "data"
    names = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
    return [data / names[ds._annotation_level], data / f"images_{ds._annotation_level}_{ds._split}.txt"]


def _gtsrb_files(ds: Any) -> list[Path]:
    return [ds._base_folder / "GT-final_test.csv"] if ds._split == "test" else []


#: torchvision dataset class -> the files besides its listed images that it reads (arrays, labels, splits,
#: class lists). A class not listed here is fingerprinted by every file under its source's root.
DATASET_FILES: dict[str, Callable[[Any], list[Path]]] = {
    "MNIST": _mnist_files,
    "FashionMNIST": _mnist_files,
    "KMNIST": _mnist_files,
    "CIFAR10": _cifar_files,
    "CIFAR100": _cifar_files,
    "STL10": _stl10_files,
    "Flowers102": lambda ds: [ds._base_folder / ds._file_dict[k][0] for k in ("label", "setid")],
    "StanfordCars": lambda ds: [ds._annotations_mat_path, ds._base_folder / "devkit" / "cars_meta.mat"],
    "OxfordIIITPet": lambda ds: [ds._anns_folder / f"{ds._split}.txt"],
    "GTSRB": _gtsrb_files,
    "Food101": lambda ds: [ds._meta_folder / f"{ds._split}.json"],
    "FGVCAircraft": _fgvc_files,
    "DTD": lambda ds: [ds._meta_folder / f"{ds._split}{ds._partition}.txt"],
    "Country211": lambda ds: [],  # labels are the folder names of the listed images
    "RenderedSST2": lambda ds: [],
    "ImageNet": lambda ds: [Path(ds.root) / "meta.bin"],
}


def dataset_targets(dataset: Any) -> np.ndarray:
    """Integer labels of a torchvision dataset, from whichever attribute it keeps them in."""
    for attr in TARGET_ATTRIBUTES:
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return np.asarray([int(v) for v in values], dtype=np.int64)
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is not None:
        return np.asarray([int(s[1]) for s in samples], dtype=np.int64)
    raise TypeError(f"cannot read labels of {type(dataset).__name__} without decoding every image")


def load_torchvision(
    ctx: LoadContext,
    dataset: str,
    split_kwargs: dict[str, dict[str, Any]] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> TorchvisionImages:
    """Instantiate ``torchvision.datasets.<dataset>(root, download=..., **split_kwargs[split], **kwargs)``."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset, None)
    if cls is None:
        raise ctx.missing(f"torchvision has no dataset class {dataset!r} (torchvision {tvd.__name__})")
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    call = dict(kwargs or {})
    call.update((split_kwargs or {}).get(ctx.source_split, {"split": ctx.source_split}))
    if not ctx.download and not ctx.root.exists():
        raise ctx.missing(f"no {dataset} data (pass --download to fetch it)", ctx.root)
    if "download" in inspect.signature(cls.__init__).parameters:
        call["download"] = ctx.download
    try:
        ds = cls(root=str(ctx.root), **call)
    except (RuntimeError, OSError, ValueError, ImportError) as exc:  # ValueError: e.g. StanfordCars download
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ctx.missing(f"torchvision's {dataset} could not load it ({detail})", ctx.root) from None
    return TorchvisionImages(ds, dataset_targets(ds))
