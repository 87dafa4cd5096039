"""Video classification scored on the MIDDLE frame of each clip, as the CLIP paper did (UCF101, Kinetics-700).

A clip is a video file (decoded with PyAV: ``pip install 'clip-bench[video]'``) or a folder of
pre-extracted frames (``<clip>/<frame>.jpg``); either way frame ``n // 2`` of its ``n`` frames is used.
Clips are listed by a split file (UCF101's ``trainlist01.txt`` / ``testlist01.txt``: one relative path
per line, an optional label after it is ignored), or found in a tree ``<split>/<class>/<clip>``. A
clip's class is its parent folder, matched to the task's class names ignoring case, spaces, ``_`` and
``-`` (UCF101's ``HandstandPushups`` is "Hand Stand Pushups"); the class order is always the task's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext
from clip_bench.loaders.imagefolder import IMAGE_EXTENSIONS
from clip_bench.util.errors import ClipBenchError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")


def normalize_class(name: str) -> str:
    """The key a folder name and a class name are matched by: case-folded, without spaces, ``_`` or ``-``."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def _natural_key(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """A frame folder's images in frame order (``frame2`` before ``frame10``)."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)


def _import_av():  # type: ignore[no-untyped-def]
    try:
        import av
    except ImportError:
        raise ClipBenchError(
            "reading video files needs PyAV: pip install 'clip-bench[video]' (or pip install av); "
            "pre-extracted frame folders need nothing extra."
        ) from None
    return av


def _count_frames(path: Path) -> int:
    av = _import_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def video_middle_frame(path: str | Path) -> Image.Image:
    """Frame ``n // 2`` of a video file's ``n`` frames, as an RGB image (decodes up to the middle only)."""
    av = _import_av()
    target = _count_frames(Path(path)) // 2
    last = None
    with av.open(str(path)) as container:
        for i, decoded in enumerate(container.decode(video=0)):
            last = decoded  # a clip with fewer decodable frames than counted gives its last one
            if i >= target:
                break
    if last is None:
        raise ValueError(f"{path} has no decodable video frames")
    return last.to_image().convert("RGB")


def middle_frame(path: str | Path) -> Image.Image:
    """The middle frame of a clip: a video file or a folder of frames."""
    path = Path(path)
    if path.is_dir():
        frames = frame_files(path)
        if not frames:
            raise ValueError(f"frame folder {path} holds no images")
        with Image.open(frames[len(frames) // 2]) as im:
            return im.convert("RGB")
    return video_middle_frame(path)


class MiddleFrames(LabeledImages):
    """One image per clip: its middle frame, decoded on demand."""

    def __init__(self, clips: list[Path], targets: np.ndarray) -> None:
        self.clips = [str(c) for c in clips]
        self.targets = np.asarray(targets)

    def load_image(self, index: int) -> Image.Image:
        return middle_frame(self.clips[index])

    def describe(self, index: int) -> str:
        return self.clips[index]

    def data_files(self) -> list[str | Path]:
        """Each clip's video file, or the middle frame of its frame folder (the only frame read), plus the clip list."""
        files = []
        for clip in map(Path, self.clips):
            frames = frame_files(clip) if clip.is_dir() else [clip]
            if frames:
                files.append(frames[len(frames) // 2])
        return [*files, *self.annotation_files]


def resolve_clip(path: Path) -> Path | None:
    """The clip at `path`: the video file, or its frame folder (same path without the extension)."""
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        return path
    for folder in (path.with_suffix(""), path):
        if folder.is_dir():
            return folder
    return None


def _class_index(ctx: LoadContext) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(ctx.task.prompt_set().display_names()):
        key = normalize_class(name)
        if key in index:
            raise ctx.missing(f"class names {index[key]} and {i} both match folder key {key!r}")
        index[key] = i
    return index


def _from_list(ctx: LoadContext, base: Path, list_path: Path) -> list[tuple[Path, str]]:
    if not list_path.is_file():
        raise ctx.missing(f"no clip list for split {ctx.source_split!r}", list_path)
    out = []
    for line in list_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rel = Path(line.split()[0])
            if len(rel.parts) < 2:
                raise ctx.missing(f"list entry {rel} has no class folder (expected <class>/<clip>)", list_path)
            out.append((base / rel, rel.parts[-2]))
    return out


def _from_tree(ctx: LoadContext, base: Path) -> list[tuple[Path, str]]:
    if not base.is_dir():
        raise ctx.missing(f"no folder for split {ctx.source_split!r}", base)
    out = []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for clip in sorted(class_dir.iterdir()):
            if clip.is_dir() or clip.suffix.lower() in VIDEO_EXTENSIONS:
                out.append((clip, class_dir.name))
    return out


def load_video(
    ctx: LoadContext,
    videos: str = "",
    list_file: str | None = None,
    split_dirs: bool = True,
    allow_missing: bool = False,
    allow_extra_folders: bool = False,
) -> MiddleFrames:
    """The ``video`` loader.

    `videos` is the folder (under the source path) holding ``<class>/<clip>``; `list_file` (a path
    under the source path, ``{split}`` replaced by the source's split name) lists the split's clips,
    otherwise the split is the tree ``<videos>/<split>/<class>/<clip>`` (or ``<videos>/<class>/<clip>``
    with ``split_dirs: false``); there every class needs a folder, which may be empty. `allow_missing`
    skips listed clips and class folders absent on disk; the row's ``n`` tells how many were scored.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    base = ctx.root / videos if videos else ctx.root
    tree = base / ctx.source_split if split_dirs else base
    list_path = ctx.root / list_file.format(split=ctx.source_split) if list_file else None
    if list_path is not None:
        entries = _from_list(ctx, base, list_path)
    else:
        entries = _from_tree(ctx, tree)
    classes = _class_index(ctx)
    unknown = sorted({folder for _, folder in entries if normalize_class(folder) not in classes})
    if unknown and not allow_extra_folders:
        raise ctx.missing(
            f"{len(unknown)} class folders match no class name of the task ({', '.join(unknown[:5])})", base
        )
    clips: list[Path] = []
    labels: list[int] = []
    missing: list[Path] = []
    for path, folder in entries:
        label = classes.get(normalize_class(folder))
        if label is None:
            continue
        clip = resolve_clip(path)
        if clip is None:
            missing.append(path)
            continue
        clips.append(clip)
        labels.append(label)
    if missing and not allow_missing:
        raise ctx.missing(f"{len(missing)} listed clips are absent (first: {missing[0]})", base)
    if not list_file and not allow_missing:
        folders = {normalize_class(p.name) for p in tree.iterdir() if p.is_dir()}
        absent = [i for k, i in classes.items() if k not in folders]
        if absent:
            first = ctx.task.prompt_set().display_names()[absent[0]]
            raise ctx.missing(f"{len(absent)} of {len(classes)} class folders are missing (first: {first!r})", tree)
    if not clips:
        raise ctx.missing("no clips found", base)
    if any(c.is_file() for c in clips):
        _import_av()  # fail now, with the install hint, rather than inside a DataLoader worker
    data = MiddleFrames(clips, np.asarray(labels, dtype=np.int64))
    data.annotation_files = [list_path] if list_path is not None else []
    return data
