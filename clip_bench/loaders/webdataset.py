"""clip-benchmark's WebDataset layout (the ``clip-benchmark/wds_<name>`` dataset repos), read lazily.

Layout under ``<data_root>/<source path>/`` (as CLIP_benchmark's ``webdataset_builder`` writes it)::

    classnames.txt                          one class name a line, in label order
    zeroshot_classification_templates.txt   optional; the prompts of a source with ``prompts_from_data: true``
                                            (with classnames.txt), else ignored (the task's own prompts are used)
    dataset_type.txt                        optional: ``classification`` (default) or ``multilabel``
    <split>/nshards.txt                     optional: the number of shards
    <split>/0.tar, 1.tar, ...               samples ``<key>.cls`` (label index as text; ``<key>.npy``, a
                                            multi-hot vector, for multilabel) + ``<key>.webp|png|jpg|jpeg``

DataComp's copies (the ``djghosh/wds_<task>_test`` repos) have the same layout, and their WILDS and fairness
sets add a ``<key>.npy`` beside the ``.cls`` of a classification sample: an integer metadata vector (region,
income group, ...), not a label. It becomes the dataset's ``metadata`` (row i = sample i); every sample of a
split has one, of one length, or none does.

Each shard is indexed once (tar headers and the tiny label members only); images are read on demand
from their byte offsets, so nothing but the index is held in memory. With ``--download`` a missing
split is fetched from the Hugging Face hub (source arg ``repo``) into the same layout.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext
from clip_bench.loaders.hub_download import hub_snapshot
from clip_bench.tasks.class_groups import num_task_classes
from clip_bench.tasks.prompts import DATA_CLASSNAMES, DATA_TEMPLATES
from clip_bench.util.errors import ClipBenchError

IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")
LABEL_EXTENSIONS = ("cls", "npy")
META_FILES = (DATA_CLASSNAMES, DATA_TEMPLATES, "dataset_type.txt")


class TarImages(LabeledImages):
    """Images stored as members of uncompressed tar shards, addressed by (shard, byte offset, size)."""

    def __init__(self, shards: list[Path], shard: np.ndarray, offset: np.ndarray, size: np.ndarray,
                 targets: np.ndarray) -> None:
        self.shards = [str(p) for p in shards]
        self.shard, self.offset, self.size = shard, offset, size
        self.targets = targets

    def read_bytes(self, index: int) -> bytes:
        """The raw (encoded) image bytes of sample `index`."""
        with open(self.shards[self.shard[index]], "rb") as f:
            f.seek(int(self.offset[index]))
            return f.read(int(self.size[index]))

    def load_image(self, index: int) -> Image.Image:
        with Image.open(io.BytesIO(self.read_bytes(index))) as im:
            return im.convert("RGB")

    def data_files(self) -> list[str | Path]:
        return [*self.shards, *self.annotation_files]

    def describe(self, index: int) -> str:
        path = self.shards[self.shard[index]]
        try:  # the member's own ustar header sits just before its data
            with open(path, "rb") as f:
                f.seek(int(self.offset[index]) - tarfile.BLOCKSIZE)
                name = tarfile.TarInfo.frombuf(f.read(tarfile.BLOCKSIZE), "utf-8", "surrogateescape").name
        except (OSError, tarfile.TarError):
            name = f"byte {int(self.offset[index])}"
        return f"{path}:{name}"


def _split_name(member: str) -> tuple[str, str]:
    """WebDataset's (key, extension): the key runs to the first dot of the file's base name."""
    folder, _, base = member.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class ShardIndex(NamedTuple):
    """One shard's complete samples in tar order, and what is wrong with the others."""

    members: list[tuple[int, int]]  # image (offset, size) per sample
    labels: list[bytes]  # raw label bytes (.cls/.npy; a retrieval set's .txt captions) per sample
    keys: list[str]  # sample keys
    incomplete: list[str]  # keys lacking an image or a label
    repeated: list[str]  # keys whose image or label member appears twice
    extras: list[bytes | None]  # raw bytes of the sample's metadata member (see index_shard's meta_ext), or None


class TruncatedShardError(tarfile.ReadError):
    """A tar file that stops where a member header or the end-of-archive marker should be."""


def _check_end_of_archive(tf: tarfile.TarFile) -> None:
    """Python's tarfile ends its listing quietly where a file is cut off between members (or where a header is
    damaged); a complete archive has its end-of-archive marker (two zero blocks) right there."""
    tf.fileobj.seek(tf.offset)
    marker = tf.fileobj.read(2 * tarfile.BLOCKSIZE)
    if marker != tarfile.NUL * (2 * tarfile.BLOCKSIZE):
        raise TruncatedShardError(
            f"it stops at byte {tf.offset}, after {len(tf.members)} tar members, without the end-of-archive marker: "
            "the file is truncated or damaged; copy or download it again"
        )


def index_shard(path: Path, label_exts: tuple[str, ...] = LABEL_EXTENSIONS, meta_ext: str | None = None) -> ShardIndex:
    """Index one shard: image (offset, size) and raw label bytes per sample key, reading no image data.

    `label_exts` are the extensions of the label member (a retrieval set's caption file is ``txt``). With
    `meta_ext`, a sample's member of that extension is kept apart as its metadata (``extras``) whenever the
    sample also has a label of another extension (DataComp's ``.npy`` beside a ``.cls``). A shard that stops
    without the end-of-archive marker raises :class:`TruncatedShardError`.
    """
    images: dict[str, tuple[int, int, int]] = {}  # key -> (rank of extension, offset, size)
    found: dict[str, dict[str, bytes]] = {}  # key -> label extension -> raw bytes
    order: list[str] = []
    seen: set[tuple[str, str]] = set()
    repeated: list[str] = []
    wanted = (*label_exts, *([meta_ext] if meta_ext and meta_ext not in label_exts else []))
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if not m.isfile():
                continue
            key, ext = _split_name(m.name)
            if key not in images and key not in found:
                order.append(key)
            if (key, ext) in seen:
                repeated.append(key)
            seen.add((key, ext))
            if ext in IMAGE_EXTENSIONS:
                rank = IMAGE_EXTENSIONS.index(ext)
                if key not in images or rank < images[key][0]:
                    images[key] = (rank, m.offset_data, m.size)
            elif ext in wanted:
                fh = tf.extractfile(m)
                found.setdefault(key, {})[ext] = fh.read() if fh is not None else b""
        _check_end_of_archive(tf)
    labels: dict[str, bytes] = {}
    extras: dict[str, bytes | None] = {}
    for key, members in found.items():
        meta = members.pop(meta_ext, None) if meta_ext and any(e != meta_ext for e in members) else None
        own = [e for e in label_exts if e in members]
        if len(own) > 1:  # two label members (a .cls and a multi-hot .npy): which one is the label is ambiguous
            repeated.append(key)
        if own:
            labels[key], extras[key] = members[own[0]], meta
    done = [k for k in order if k in images and k in labels]
    incomplete = [k for k in order if k not in images or k not in labels]
    return ShardIndex([images[k][1:] for k in done], [labels[k] for k in done], done, incomplete, repeated,
                      [extras[k] for k in done])


def read_shard(ctx: LoadContext, path: Path, label_exts: tuple[str, ...] = LABEL_EXTENSIONS,
               meta_ext: str | None = None) -> ShardIndex:
    """:func:`index_shard`, where an unreadable or truncated shard, or a key it repeats, is an error naming it."""
    try:
        index = index_shard(path, label_exts, meta_ext)
    except (tarfile.TarError, OSError) as exc:
        raise ctx.missing(f"shard {path.name} is not a readable tar file ({exc})", path) from None
    if index.repeated:
        raise ctx.missing(
            f"sample key {index.repeated[0]!r} appears twice in shard {path.name} (keys must be unique: "
            "a repeated key pairs images with other samples' labels or captions)", path,
        )
    return index


def key_hashes(index: ShardIndex) -> np.ndarray:
    """Per-sample hashes of a shard's keys, for :func:`check_unique_keys`."""
    return np.fromiter((hash(k) for k in index.keys), dtype=np.int64, count=len(index.keys))


def check_unique_keys(ctx: LoadContext, shards: list[Path], starts: list[int], hashes: list[np.ndarray],
                      label_exts: tuple[str, ...] = LABEL_EXTENSIONS) -> None:
    """No sample key of a split may appear in two shards (`starts`: each shard's first sample position)."""
    if len(shards) > 1 and (repeat := _first_repeat(shards, starts, np.concatenate(hashes), label_exts)) is not None:
        key, first, second = repeat
        raise ctx.missing(
            f"sample key {key!r} appears in shard {first.name} and again in shard {second.name} (keys must be "
            "unique within a split)", first.parent,
        )


def _first_repeat(shards: list[Path], starts: list[int], hashes: np.ndarray,
                  label_exts: tuple[str, ...] = LABEL_EXTENSIONS) -> tuple[str, Path, Path] | None:
    """The first sample key (in reading order) that an earlier shard already had, found from per-sample key
    hashes so that the keys of a large split are never all held in memory; None if every key is unique."""
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    pairs = sorted((int(order[d + 1]), int(order[d])) for d in same)  # (later, earlier) positions
    keys: dict[int, list[str]] = {}

    def key_at(position: int) -> tuple[str, int]:
        shard = int(np.searchsorted(starts, position, side="right")) - 1
        if shard not in keys:
            keys[shard] = index_shard(shards[shard], label_exts).keys
        return keys[shard][position - starts[shard]], shard

    for later, earlier in pairs:
        (k1, s1), (k2, s2) = key_at(earlier), key_at(later)
        if k1 == k2:  # not a mere hash collision
            return k1, shards[s1], shards[s2]
    return None


def _parse_label(raw: bytes, multilabel: bool) -> np.ndarray | int:
    if multilabel:
        return np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float32).reshape(-1)
    return int(raw.decode("utf-8").strip())


def _check_labels(ctx: LoadContext, path: Path, keys: list[str], labels: list[np.ndarray | int], n: int) -> None:
    """Every label of a shard must index one of the source's `n` classes (multi-hot: have `n` entries)."""
    for key, label in zip(keys, labels, strict=True):
        if isinstance(label, np.ndarray):
            if label.shape != (n,):
                raise ctx.missing(f"sample {key!r} in {path.name} has a .npy label of {label.size} entries, not {n}",
                                  path)
        elif not 0 <= label < n:
            raise ctx.missing(
                f"sample {key!r} in {path.name} has label {label}, outside the source's {n} classes (0..{n - 1})", path
            )


def list_shards(split_dir: Path) -> tuple[list[Path], int | None]:
    """The split's shards in numeric order, and the count ``nshards.txt`` promises (if present)."""
    expected = None
    nshards = split_dir / "nshards.txt"
    if nshards.exists():
        text = nshards.read_text(encoding="utf-8", errors="replace").strip()
        if not text.isdigit() or int(text) < 1:
            raise ClipBenchError(
                f"{nshards} should hold the number of shards (a positive integer), but holds {text[:40]!r}; "
                "fix it or delete it (the shards <n>.tar are then counted)."
            )
        expected = int(text)
    found = sorted(split_dir.glob("*.tar"), key=lambda p: (int(p.stem) if p.stem.isdigit() else 1 << 62, p.name))
    if expected is not None:
        wanted = {f"{i}.tar" for i in range(expected)}
        found = [p for p in found if p.name in wanted]
    return found, expected


def download_wds(ctx: LoadContext, root: Path, repo: str, revision: str | None = None) -> None:
    """Fetch one split (plus class names and metadata) of a clip-benchmark WebDataset repo into `root`."""
    hub_snapshot(ctx, root, repo, [f"{ctx.source_split}/*", *META_FILES], revision)


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def load_wds(ctx: LoadContext, repo: str | None = None, revision: str | None = None) -> TarImages:
    """The ``wds`` loader: a local copy of a clip-benchmark WebDataset (fetched from `repo` with --download).

    `revision` pins the hub commit a download takes; data already on disk is used as it is.
    """
    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_dir = ctx.root / ctx.source_split
    shards, expected = list_shards(split_dir) if split_dir.is_dir() else ([], None)
    complete = bool(shards) and (expected is None or len(shards) == expected)
    own_files = (DATA_CLASSNAMES, DATA_TEMPLATES) if ctx.source.prompts_from_data else (DATA_CLASSNAMES,)
    if not complete or not all((ctx.root / f).exists() for f in own_files):
        if ctx.download and repo:
            download_wds(ctx, ctx.root, repo, revision)
            shards, expected = list_shards(split_dir) if split_dir.is_dir() else ([], None)
        if not shards:
            show = repo and not ctx.download and not ctx.source.download  # the download text says it already
            hint = f" (pass --download to fetch {repo} from the Hugging Face hub)" if show else ""
            raise ctx.missing(f"no WebDataset shards <n>.tar for split {ctx.source_split!r}{hint}", split_dir)
        if expected is not None and len(shards) != expected:
            raise ctx.missing(f"only {len(shards)} of the {expected} shards listed in nshards.txt are present",
                              split_dir)
    dataset_type = "classification"
    if (ctx.root / "dataset_type.txt").exists():
        dataset_type = (ctx.root / "dataset_type.txt").read_text().strip().lower() or dataset_type
    if dataset_type not in ("classification", "multilabel"):
        raise ctx.missing(f"dataset_type.txt says {dataset_type!r}; only classification data can be scored here")
    _check_classnames(ctx)
    n_classes = _source_classes(ctx)
    multilabel = dataset_type == "multilabel"
    shard_ids: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    targets: list[np.ndarray | int] = []
    metadata = _Metadata()
    starts: list[int] = []
    hashes: list[np.ndarray] = []
    for i, path in enumerate(shards):
        index = read_shard(ctx, path, meta_ext=None if multilabel else "npy")
        if index.incomplete:
            raise ctx.missing(
                f"{len(index.incomplete)} samples in {path.name} lack an image or a .cls/.npy label "
                f"(first: {index.incomplete[0]!r}); is this a classification WebDataset?", path,
            )
        try:
            labels = [_parse_label(r, multilabel) for r in index.labels]
        except (ValueError, OSError, EOFError) as exc:
            raise ctx.missing(f"a label in {path.name} cannot be read ({exc})", path) from None
        _check_labels(ctx, path, index.keys, labels, n_classes)
        metadata.add(ctx, path, index)
        targets.extend(labels)
        starts.append(len(shard_ids))
        hashes.append(key_hashes(index))
        shard_ids.extend([i] * len(index.members))
        offsets.extend(m[0] for m in index.members)
        sizes.extend(m[1] for m in index.members)
    check_unique_keys(ctx, shards, starts, hashes)
    if not targets:
        raise ctx.missing("the shards hold no samples", split_dir)
    target_array = np.stack(targets) if multilabel else np.asarray(targets, dtype=np.int64)
    data = TarImages(
        shards, np.asarray(shard_ids, dtype=np.int32), np.asarray(offsets, dtype=np.int64),
        np.asarray(sizes, dtype=np.int64), target_array,
    )
    data.metadata = metadata.array()  # the shards hold it: their hashes in the data fingerprint cover it
    # the data fingerprint covers the templates a source takes from the data, as it covers the class names
    read = (DATA_CLASSNAMES, "dataset_type.txt", *((DATA_TEMPLATES,) if ctx.source.prompts_from_data else ()))
    data.annotation_files = [p for p in (ctx.root / n for n in read) if p.exists()]
    return data


class _Metadata:
    """The ``.npy`` metadata vectors of a split's samples, shard by shard: all samples have one, of one length,
    or none has; each must hold integers (exactly: a float that is not a whole number is no group code)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.first: tuple[str, str, int | None] | None = None  # (shard, key, vector length or None) of sample 0

    def add(self, ctx: LoadContext, path: Path, index: ShardIndex) -> None:
        for key, raw in zip(index.keys, index.extras, strict=True):
            vector = None if raw is None else _parse_metadata(ctx, path, key, raw)
            length = None if vector is None else len(vector)
            if self.first is None:
                self.first = (path.name, key, length)
            elif length != self.first[2]:
                shard, first_key, want = self.first
                has = "no .npy metadata" if length is None else f"a .npy metadata vector of {length} entries"
                other = "none" if want is None else f"{want} entries"
                raise ctx.missing(f"sample {key!r} in shard {path.name} has {has}, but sample {first_key!r} in shard "
                                  f"{shard} has {other} (every sample needs one metadata vector of one length, or "
                                  "none does)", path)
            if vector is not None:
                self.rows.append(vector)

    def array(self) -> np.ndarray | None:
        """(n, m) int64, row i = sample i; None when no sample has metadata."""
        return np.stack(self.rows) if self.rows else None


def _parse_metadata(ctx: LoadContext, path: Path, key: str, raw: bytes) -> np.ndarray:
    """One sample's metadata vector as int64; anything else is an error naming the shard and key."""
    where = f"sample {key!r} in shard {path.name}"
    try:
        value = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ctx.missing(f"the .npy metadata of {where} cannot be read ({exc})", path) from None
    if value.ndim > 1 or not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.bool_)
                              or np.issubdtype(value.dtype, np.floating)):
        raise ctx.missing(f"the .npy metadata of {where} has shape {value.shape} and dtype {value.dtype}, not a "
                          "vector of integers", path)
    vector = value.reshape(-1)
    with np.errstate(invalid="ignore"):
        as_int = vector.astype(np.int64)
    if not np.array_equal(as_int, vector):  # a fraction, NaN or a value beyond int64
        bad = vector[np.flatnonzero(as_int != vector)[0]].item()
        raise ctx.missing(f"the .npy metadata of {where} holds {bad!r}, which is not a whole number (metadata "
                          "entries are integer codes)", path)
    return as_int


def _source_classes(ctx: LoadContext) -> int:
    """How many classes the source's labels index: its label_map's length, else the task's class count."""
    return len(ctx.source.label_map) if ctx.source.label_map is not None else num_task_classes(ctx.task)


def _check_classnames(ctx: LoadContext) -> None:
    """classnames.txt must list as many classes as the task (or its label_map) expects."""
    path = ctx.root / DATA_CLASSNAMES if ctx.root is not None else None
    if path is None or not path.exists() or ctx.source.prompts_from_data:  # then the task's classes are this list
        return
    n_wds = len(_read_lines(path))
    label_map = ctx.source.label_map
    n_expected = _source_classes(ctx)
    if n_wds != n_expected:
        what = "the source's label_map maps" if label_map is not None else "the task has"
        raise ctx.missing(
            f"classnames.txt lists {n_wds} classes but {what} {n_expected}; this is another dataset, "
            "or its label order needs a label_map", path,
        )
