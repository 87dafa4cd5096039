"""Loader registry: name -> loader, imported lazily so a task pulls in only what it uses."""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.loaders.base import LabeledImages, LoadContext, Remapped
from clip_bench.tasks.spec import SourceSpec, TaskSpec
from clip_bench.util.errors import ClipBenchError, UnknownNameError
from clip_bench.util.registry import Registry

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
LOADERS.register("hf_retrieval", "clip_bench.loaders.retrieval:load_hf_retrieval")
LOADERS.register("hf_winogavil", "clip_bench.loaders.winogavil:load_hf_winogavil")


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
    task = task.bind_data(data_root, spec.name)  # type: ignore[attr-defined]  # prompts_from_data: this folder's
    root = data_root / spec.path if spec.path else None
    ctx = LoadContext(task, spec, split, spec.source_split(split), root, data_root, download)
    try:
        loader = LOADERS.get(spec.loader)
    except UnknownNameError as exc:
        raise ClipBenchError(f"task file {task.file or task.name}: source {spec.name!r}: {exc}") from None  # type: ignore[attr-defined]
    check_loader_args(task, spec, loader)
    data = loader(ctx, **spec.args)
    check_expected_size(ctx, data.expected_count)
    check_label_range(ctx, data.targets)
    if spec.label_map is not None:
        data = Remapped(data, spec.label_map)
    return data


def check_loader_args(task: TaskSpec, spec: SourceSpec, loader: Callable[..., Any]) -> None:
    """A source's ``args`` must be arguments its loader takes, with every required one given."""
    params = list(inspect.signature(loader).parameters.values())[1:]  # after ctx
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    where = f"task file {task.file or task.name}: 'args' of source {spec.name!r} (loader {spec.loader})"
    for arg in spec.args:
        if arg not in known:
            close = difflib.get_close_matches(str(arg), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes {', '.join(known) or 'no arguments'}."
            raise ClipBenchError(f"{where} has unknown argument {arg!r}; {hint}")
    missing = [p.name for p in params if p.default is p.empty and p.name not in spec.args and p.name in known]
    if missing:
        raise ClipBenchError(f"{where} lacks the required argument {missing[0]!r}.")
    try:
        hints = typing.get_type_hints(loader)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved: the loader checks its own values
        return
    for arg, value in spec.args.items():
        if arg in hints and not _fits(value, hints[arg]):
            raise ClipBenchError(f"{where}: {arg!r} must be {_type_text(hints[arg])}, got {value!r}.")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value has the type a loader annotates (containers are checked element by element)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_fits(k, args[0]) and _fits(v, args[1])
                                                             for k, v in value.items()))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_text(hint: Any) -> str:
    """A loader argument's annotation as a reader of a task file says it: ``an integer``, ``true or false``, ..."""
    named = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) in (list, tuple):
        return "a list"
    if typing.get_origin(hint) is dict:
        return "a mapping"
    return named.get(hint, getattr(hint, "__name__", str(hint)))


def check_label_range(ctx: LoadContext, targets: np.ndarray) -> None:
    """Class-index targets must lie in 0..n-1 for the source's n classes (its label_map's length, else the
    task's class count): a label outside is damaged data, never an extra class or a wrapped-around index."""
    if targets.ndim != 1 or not targets.size or not np.issubdtype(targets.dtype, np.integer):
        return
    if getattr(ctx.task, "extra", {}).get("kind", "classification") != "classification":
        return
    from clip_bench.tasks.class_groups import num_task_classes

    n = len(ctx.source.label_map) if ctx.source.label_map is not None else num_task_classes(ctx.task)
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= n:
        bad = low if low < 0 else high
        raise ClipBenchError(
            f"{ctx.task.name} ({ctx.split} split) from source {ctx.source.name!r}: the data has label {bad}, outside "
            f"the source's {n} classes (0..{n - 1}); the data is damaged or is another dataset (data under {ctx.root})."
        )


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
