"""Loader registry: name -> loader, imported lazily so a task pulls in only what it uses."""

from __future__ import annotations

from pathlib import Path

from ..errors import ClipBenchError
from ..registry import Registry
from .base import LabeledImages, LoadContext, Remapped

LOADERS: Registry = Registry("loader")
LOADERS.register("digits", "clip_bench.loaders.digits:load_digits")
LOADERS.register("imagefolder", "clip_bench.loaders.imagefolder:load_imagefolder")
LOADERS.register("torchvision", "clip_bench.loaders.torchvision_loader:load_torchvision")


def load_split(
    task: object, source_name: str | None, split: str, data_root: str | Path, download: bool = False
) -> LabeledImages:
    """Load `split` of `task` from a source, with labels in the task's class order."""
    spec = task.source(source_name)  # type: ignore[attr-defined]
    if split not in task.splits:  # type: ignore[attr-defined]
        raise ClipBenchError(
            f"task {task.name!r} has no split {split!r}; it has {', '.join(task.splits)}."  # type: ignore[attr-defined]
        )
    data_root = Path(data_root).expanduser()
    root = data_root / spec.path if spec.path else None
    ctx = LoadContext(task, spec, split, spec.source_split(split), root, data_root, download)
    loader = LOADERS.get(spec.loader)
    data = loader(ctx, **spec.args)
    if spec.label_map is not None:
        data = Remapped(data, spec.label_map)
    return data
