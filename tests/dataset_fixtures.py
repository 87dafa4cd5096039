"""Writers for tiny fixtures in real on-disk formats: WebDataset shards, videos, digit images."""

from __future__ import annotations

import io
import json
import struct
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from clip_bench.loaders.digits import digits_arrays


def digits_rgb(split: str = "test", size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The digits split as (N, size, size, 3) uint8 RGB images and their labels."""
    images, labels = digits_arrays(split, size)
    return np.repeat(images[..., None], 3, axis=3), labels


def encode(image: np.ndarray, ext: str) -> bytes:
    """An image file's bytes (webp is lossless, as CLIP_benchmark writes it)."""
    buf = io.BytesIO()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext]
    Image.fromarray(image).save(buf, format=fmt, **({"lossless": True} if ext == "webp" else {"quality": 95}))
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def npy_bytes(array: np.ndarray | Sequence[int]) -> bytes:
    """The bytes of a ``.npy`` file holding `array`."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def write_shards(root: Path, split: str, n: int, shard_size: int,
                 members: Callable[[int, str], list[tuple[str, bytes]]]) -> list[Path]:
    """Samples 0..n-1 as ``<root>/<split>/{0..}.tar`` (key ``s%07d``; `members(i, key)` gives each sample's
    (file name, bytes)) and ``nshards.txt``, as CLIP_benchmark's WebDataset exporter lays them out."""
    (root / split).mkdir(parents=True, exist_ok=True)
    shards = []
    for s, start in enumerate(range(0, n, shard_size)):
        path = root / split / f"{s}.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(start, min(start + shard_size, n)):
                for name, data in members(i, f"s{i:07d}"):
                    _add(tf, name, data)
        shards.append(path)
    (root / split / "nshards.txt").write_text(f"{len(shards)}\n")
    return shards


def write_wds(
    root: Path,
    split: str,
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    classnames: Sequence[str] | None,
    shard_size: int = 1000,
    ext: str = "webp",
    templates: Sequence[str] = ('a photo of the number: "{c}".',),
    multilabel: bool = False,
    metadata: Sequence[np.ndarray | None] | np.ndarray | None = None,
) -> list[Path]:
    """A clip-benchmark style WebDataset: <root>/<split>/{0..}.tar + nshards.txt, classnames.txt, templates.

    With `metadata`, sample i also gets ``<key>.npy`` holding ``metadata[i]`` beside its ``.cls`` (DataComp's
    djghosh layout; a None entry writes none)."""
    def members(i: int, key: str) -> list[tuple[str, bytes]]:
        if multilabel:
            out = [(f"{key}.npy", npy_bytes(labels[i]))]
        else:
            out = [(f"{key}.cls", str(int(labels[i])).encode())]
            if metadata is not None and metadata[i] is not None:
                out.append((f"{key}.npy", npy_bytes(metadata[i])))
        return [*out, (f"{key}.{ext}", encode(images[i], ext))]

    shards = write_shards(root, split, len(images), shard_size, members)
    if classnames is not None:
        (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    if multilabel:
        (root / "dataset_type.txt").write_text("multilabel\n")
    return shards


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed MNIST idx file: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_test: int | None = None, n_train: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's four raw idx files under ``<root>/MNIST/raw`` from the digits splits at 28 px (the first
    `n_test` test images, all when None); returns the test images and labels."""
    raw = root / "MNIST" / "raw"
    test_x, test_y = digits_arrays("test", 28)
    test_x, test_y = test_x[:n_test], test_y[:n_test]
    train_x, train_y = digits_arrays("train", 28)
    write_idx(raw / "t10k-images-idx3-ubyte", test_x)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_y)
    write_idx(raw / "train-images-idx3-ubyte", train_x[:n_train])
    write_idx(raw / "train-labels-idx1-ubyte", train_y[:n_train])
    return test_x, test_y


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 5) -> Path:
    """A real video file (mpeg4 in .avi, H.264 otherwise) of RGB frames with even sides, via PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12"}
        else:
            stream.bit_rate = 4_000_000
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_json(path: Path, data: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def fixture_task(name: str, folder: Path) -> str:
    """The shipped task `name` copied to `folder` without its full-size sample counts (``expected``).

    Fixtures are tiny, and a loaded split whose size differs from ``expected`` is an error; everything
    else (sources, paths, class lists, subsets, class groups, metric) stays the shipped task's.
    """
    import yaml

    from clip_bench.tasks.catalog import get_task

    raw = yaml.safe_load(Path(get_task(name).file).read_text(encoding="utf-8"))
    for source in raw["sources"].values():
        source.pop("expected", None)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return str(path)


def write_digit_folder(split_root: Path, per_class: int) -> None:
    """An ImageFolder split ``<split_root>/<digit>/<nnn>.png`` of the digits test images, `per_class` each."""
    images, labels = digits_arrays("test", 32)
    for c in range(10):
        folder = split_root / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(images[labels == c][:per_class]):
            Image.fromarray(img).save(folder / f"{j:03d}.png")


def write_stl10_binary(
    root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
    folds: Sequence[Sequence[int]],
) -> dict[str, str]:
    """STL-10's binary release under ``<root>/stl10_binary``: {train,test}_{X,y}.bin, unlabeled_X.bin,
    fold_indices.txt and class_names.txt. Images are (N, 96, 96, 3) uint8, stored as the dataset does
    (channel-major, each channel column-major); labels are 0-based here and written 1-based. Returns
    each file's md5 (torchvision checks them)."""
    import hashlib

    base = root / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)

    def images(x: np.ndarray) -> bytes:
        return np.ascontiguousarray(x.transpose(0, 3, 2, 1)).astype(np.uint8).tobytes()

    (base / "train_X.bin").write_bytes(images(train[0]))
    (base / "train_y.bin").write_bytes((np.asarray(train[1]) + 1).astype(np.uint8).tobytes())
    (base / "test_X.bin").write_bytes(images(test[0]))
    (base / "test_y.bin").write_bytes((np.asarray(test[1]) + 1).astype(np.uint8).tobytes())
    (base / "unlabeled_X.bin").write_bytes(images(train[0][:1]))
    (base / "fold_indices.txt").write_text("".join(" ".join(map(str, f)) + " \n" for f in folds))
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (base / "class_names.txt").write_text("\n".join(names) + "\n")
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in base.iterdir()}


def voc_xml(objects: Sequence[tuple[str, int]]) -> str:
    """A VOC annotation file with one ``<object>`` per (class, difficult flag)."""
    body = "".join(
        f"<object><name>{c}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        for c, d in objects
    )
    return f"<annotation><folder>VOC2007</folder><size><width>16</width><height>16</height></size>{body}</annotation>"


def write_voc(root: Path, image_sets: dict[str, dict[str, Sequence[tuple[str, int]]]], size: int = 16) -> None:
    """A VOCdevkit/VOC2007 tree: ImageSets/Main/<set>.txt, Annotations/<id>.xml and random JPEGImages/<id>.jpg;
    `image_sets` maps set name -> {image id: [(class, difficult)]}."""
    base = root / "VOCdevkit" / "VOC2007"
    for d in ("ImageSets/Main", "Annotations", "JPEGImages"):
        (base / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, images in image_sets.items():
        (base / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(images) + "\n")
        for i, objects in images.items():
            (base / "Annotations" / f"{i}.xml").write_text(voc_xml(objects))
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "JPEGImages" / f"{i}.jpg")


def write_ucf101_frames(root: Path, splits: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    """UCF101's layout with pre-extracted frames: ``UCF-101/<Class>/v_<Class>_gGG_cCC/00000.jpg`` (one frame,
    the middle one) and ``ucfTrainTestlist/<list>.txt`` naming each clip's ``.avi``. `splits` maps a list
    name (``trainlist02``) to (clip stem ``Class/v_Class_g01_c01``, frame) pairs; train lists carry a
    1-based class index after the path, as the real ones do."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    for name, clips in splits.items():
        lines = []
        for stem, frame in clips:
            folder = root / "UCF-101" / stem
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(folder / "00000.jpg", quality=95)
            lines.append(f"{stem}.avi" + (" 1" if name.startswith("train") else ""))
        (lists / f"{name}.txt").write_text("\n".join(lines) + "\n")
