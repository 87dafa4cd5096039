"""Atomic file writes, content hashing and a cross-process file lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """``np.save`` atomically (no pickles); a full disk is an OSError that says so (ENOSPC)."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"{path}: refusing to save an object array (it would need pickling)")
    save_npy_streamed(path, array.dtype, array.shape, [array.reshape(-1)])


def save_npy_streamed(
    path: str | os.PathLike[str], dtype: np.dtype | type, shape: tuple[int, ...], blocks: Iterable[np.ndarray],
) -> None:
    """Write a C-order ``.npy`` of `shape` from consecutive row `blocks`, atomically, holding one block at a time.

    Ordinary buffered writes (never a memory-mapped output), with the space reserved first where the
    file system can: a full disk is an OSError (ENOSPC), never a SIGBUS, and the temporary file is removed.
    """
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(map(int, shape))}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        end = fh.tell() + dtype.itemsize * math.prod(header["shape"])
        _reserve(fh.fileno(), end)
        for block in blocks:
            fh.write(np.ascontiguousarray(block, dtype=dtype).data)
        if fh.tell() != end:
            raise ValueError(f"{path}: wrote {fh.tell()} bytes, expected {end} for shape {header['shape']}")


def _reserve(fd: int, size: int) -> None:
    """Allocate `size` bytes for `fd` now (ENOSPC here, before writing), where the file system supports it."""
    if size <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


def remove_temp_files(folder: str | os.PathLike[str]) -> None:
    """Delete the temporary files that :func:`atomic_path` leaves in `folder` when its process dies.

    Only for a caller holding the lock under which every write to `folder` happens: then no live
    writer owns one of them.
    """
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            discard_path(tmp)


def probe_writable_dir(folder: str | os.PathLike[str]) -> None:
    """Create `folder` if needed and write (then remove) a temporary file in it; raises OSError when it cannot."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def discard_path(path: str | os.PathLike[str]) -> None:
    """Delete a damaged cache file, or a directory standing where a cache file belongs."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of dict key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


def array_digest(array: Any) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(np.asarray(array))
    return sha256_bytes(f"{a.dtype.str}:{a.shape}:".encode() + a.tobytes())


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], wait_message: str | None = None) -> Iterator[None]:
    """Exclusive advisory lock on `path` (created if needed), held for the block.

    When another process holds it, `wait_message` (if given) is printed on stderr once before waiting.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_message:
                print(wait_message, file=sys.stderr, flush=True)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
