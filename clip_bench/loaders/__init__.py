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
LOADERS.register("sampled_folders", "clip_bench.loaders.class_folders:load_sampled_folders")
LOADERS.register("named_folders", "clip_bench.loaders.class_folders:load_named_folders")
LOADERS.register("voc", "clip_bench.loaders.voc:load_voc")
LOADERS.register("fer2013", "clip_bench.loaders.fer2013:load_fer2013")
LOADERS.register("pcam", "clip_bench.loaders.pcam:load_pcam")
LOADERS.register("kitti_distance", "clip_bench.loaders.kitti:load_kitti_distance")
LOADERS.register("clevr_counts", "clip_bench.loaders.clevr:load_clevr_counts")
LOADERS.register("sun397", "clip_bench.loaders.sun397:load_sun397")
LOADERS.register("hateful_memes", "clip_bench.loaders.hateful_memes:load_hateful_memes")
LOADERS.register("wds", "clip_bench.loaders.webdataset:load_wds")
LOADERS.register("hf_datasets", "clip_bench.loaders.hf_datasets:load_hf_datasets")
LOADERS.register("indexfolder", "clip_bench.loaders.indexfolder:load_indexfolder")
LOADERS.register("video", "clip_bench.loaders.video:load_video")
LOADERS.register("wds_retrieval", "clip_bench.loaders.retrieval:load_wds_retrieval")
LOADERS.register("karpathy_json", "clip_bench.loaders.retrieval:load_karpathy_json")


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
    check_expected_size(ctx, len(data))
    if spec.label_map is not None:
        data = Remapped(data, spec.label_map)
    return data


def check_expected_size(ctx: LoadContext, found: int) -> None:
    """A split whose sample count differs from the source's ``expected`` count is incomplete (or another dataset).

    Runs on the full split, before any ``--limit`` subset is drawn, so a limit is never mistaken for missing data.
    """
    want = ctx.source.expected.get(ctx.split)
    if want is not None and found != want:
        what = "missing" if found < want else "more than expected: is this the same dataset?"
        raise ctx.missing(
            f"the {ctx.split} split has {found} samples but {want} are expected ({abs(want - found)} {what})"
        )
