"""The data behind a number: a content fingerprint of exactly the files one loaded split reads.

The fingerprint of a split is a SHA-256 over the dataset's length, its targets, its per-sample metadata
(``LabeledImages.metadata``, when it has any: the groups of worst-group metrics), and the list of
(path relative to the source's root, size in bytes, SHA-256 of the content) of the files it reads
(:meth:`LabeledImages.data_files`: images, shards, container and annotation files), in the order the
dataset lists them: that is its sample order, so the same files in another order (a class list reordered,
which pairs other images with each label) are other data, as cached features are stored in sample order.
A dataset that reads no file (``digits``, built from scikit-learn's bundled array) hashes its in-memory
images instead; one that declares nothing counts every file under its source's root (correct, slower).
The fingerprint is content-based: the same data copied to another root or machine has the same fingerprint.

It is part of the feature-cache key, of every result row (``data_fingerprint``) and so of its
``result_id``, and of the outcomes' sample hash: other images are another measurement, never a cache hit
or a paired comparison.

Content hashes are memoised per file by (absolute path, size, mtime_ns, ctime_ns, inode) in
``<cache>/fingerprints.sqlite`` (safe with concurrent processes), so a second run costs one ``stat`` per
file. A file modified within :data:`RACY_SECONDS` of being hashed is not memoised (its next change could
keep the same timestamp). Without a cache directory every file is hashed every time. Within one run
(:func:`run_scope`) each split is fingerprinted once.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clip_bench.loaders.base import LabeledImages
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import array_digest, sha256_file, sha256_json

FORMAT = "clip-bench-data-v2"  # v2: files in sample order (v1 sorted them)
STORE_FILE = "fingerprints.sqlite"
#: A file whose mtime is this close to the moment it is hashed is hashed again next time, not memoised.
RACY_SECONDS = 2.0
#: Files hashed at once (threads: hashlib releases the GIL while it hashes).
HASH_THREADS = 4
_LOOKUP_CHUNK = 500
_HASH_BATCH = 4096

_scope: dict[tuple[Any, ...], str] | None = None  # the fingerprints of the current run, see run_scope


# ---------------------------------------------------------------------------------------------
# Per-file content hashes, memoised


class HashStore:
    """SHA-256 of file contents, keyed by (absolute path, size, mtime_ns, ctime_ns, inode), in SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=120, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout = 120000")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "ctime_ns INTEGER, inode INTEGER, sha256 TEXT)"
        )

    def lookup(self, stats: dict[str, os.stat_result]) -> dict[str, str]:
        """The memoised hash of each path whose size, timestamps and inode are unchanged."""
        found: dict[str, str] = {}
        paths = list(stats)
        for start in range(0, len(paths), _LOOKUP_CHUNK):
            chunk = paths[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for path, size, mtime, ctime, inode, digest in self.db.execute(
                f"SELECT path, size, mtime_ns, ctime_ns, inode, sha256 FROM files WHERE path IN ({marks})", chunk
            ):
                st = stats[path]
                if (size, mtime, ctime, inode) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
                    found[path] = digest
        return found

    def add(self, records: list[tuple[str, os.stat_result, str]]) -> None:
        """Memoise (path, its stat when hashed, hash) records in one transaction."""
        if not records:
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                [(p, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, h) for p, st, h in records],
            )

    def close(self) -> None:
        self.db.close()


def open_store(cache_dir: str | Path | None) -> HashStore | None:
    """The hash store under `cache_dir`, or None (no cache, or a store that cannot be opened: files are then
    hashed every time, which costs time and never changes a fingerprint)."""
    if cache_dir is None:
        return None
    path = Path(cache_dir) / STORE_FILE
    try:
        return HashStore(path)
    except (sqlite3.Error, OSError) as exc:
        print(f"clip-bench: warning: cannot use the file-hash store {path} ({exc}); data files are hashed "
              "on every run.", file=sys.stderr)
        return None


def _absolute(paths: Sequence[str | Path]) -> list[str]:
    """Absolute paths (a loader's paths are already normal, so the current folder is only prefixed)."""
    here = os.getcwd().rstrip(os.sep) + os.sep
    return [p if p.startswith(os.sep) else here + p for p in map(os.fspath, paths)]


def file_hashes(paths: Sequence[str | Path], store: HashStore | None) -> list[tuple[int, str]]:
    """(size, SHA-256) of each file's content, from `store` when the file is unchanged, else hashed now."""
    keys = _absolute(paths)
    try:
        stats = {k: os.stat(k) for k in keys}
    except OSError as exc:
        raise ClipBenchError(f"cannot read data file {exc.filename} ({exc.strerror}); the data changed while "
                             "it was read, or is not readable.") from None
    known: dict[str, str] = {}
    if store is not None:
        try:
            known = store.lookup(stats)
        except sqlite3.Error as exc:  # a damaged store (another schema, a bad page): hash every file instead
            print(f"clip-bench: warning: cannot read the file-hash store {store.path} ({exc}); data files are "
                  "hashed anew.", file=sys.stderr)
    todo = [k for k in dict.fromkeys(keys) if k not in known]
    if todo:
        with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
            for start in range(0, len(todo), _HASH_BATCH):  # memoised batch by batch: an interrupted run keeps them
                batch = todo[start : start + _HASH_BATCH]
                known.update(_hash_batch(pool, batch, stats, store))
    return [(stats[k].st_size, known[k]) for k in keys]


def _hash_batch(
    pool: ThreadPoolExecutor, batch: list[str], stats: dict[str, os.stat_result], store: HashStore | None,
) -> dict[str, str]:
    """Hash the files of `batch` and memoise those that are settled (not modified just before)."""
    settled = time.time_ns() - int(RACY_SECONDS * 1e9)
    try:
        step = -(-len(batch) // (4 * HASH_THREADS))  # a few files per task: small files cost little beyond the read
        parts = pool.map(lambda some: [sha256_file(p) for p in some],
                         [batch[i : i + step] for i in range(0, len(batch), step)])
        digests = dict(zip(batch, (d for part in parts for d in part)))
        after = {k: os.stat(k) for k in batch}
    except OSError as exc:
        raise ClipBenchError(f"cannot read data file {exc.filename} ({exc.strerror}).") from None
    for k in batch:
        before, now = stats[k], after[k]
        if (before.st_size, before.st_mtime_ns, before.st_ino) != (now.st_size, now.st_mtime_ns, now.st_ino):
            raise ClipBenchError(f"data file {k} changed while it was read; run again once the data is in place.")
    if store is not None:
        records = [(k, after[k], digests[k]) for k in batch
                   if after[k].st_mtime_ns < settled and after[k].st_ctime_ns < settled]
        try:
            store.add(records)
        except sqlite3.Error as exc:  # a full or read-only cache: the next run hashes again
            print(f"clip-bench: warning: cannot write the file-hash store {store.path} ({exc}).", file=sys.stderr)
    return digests


# ---------------------------------------------------------------------------------------------
# The fingerprint of one loaded split


def _relative(paths: list[str], root: Path | None) -> list[str]:
    """`paths` (absolute) relative to the source's root, so a copy elsewhere has the same fingerprint; a
    path outside the root stays absolute."""
    if root is None:
        return paths
    base = _absolute([root])[0].rstrip(os.sep) + os.sep
    return [p[len(base):].replace(os.sep, "/") if p.startswith(base) else p for p in paths]


def declared_files(data: LabeledImages, root: Path | None) -> list[str] | None:
    """The files `data` reads (:meth:`LabeledImages.data_files`), or every file under `root` when it does not
    say; None for a dataset that reads no file (its in-memory content is hashed)."""
    files = data.data_files() if hasattr(data, "data_files") else None
    if files is not None:
        return _absolute(files) or None
    if root is None:
        raise ClipBenchError(
            f"the dataset {type(data).__name__} does not declare the files it reads (data_files()) and its source "
            "has no path, so its data cannot be fingerprinted; give its loader a data_files() method."
        )
    return _absolute(sorted(str(p) for p in Path(root).rglob("*") if p.is_file()))


def fingerprint_dataset(data: LabeledImages, root: Path | None, cache_dir: str | Path | None = None) -> str:
    """The fingerprint of one loaded split (see the module docstring); `root` is its source's folder."""
    files = declared_files(data, root)
    parts: dict[str, Any] = {"format": FORMAT, "n": len(data), "targets": array_digest(data.targets)}
    if getattr(data, "metadata", None) is not None:  # per-sample metadata (groups): other metadata is other data
        parts["metadata"] = array_digest(data.metadata)
    if files is None:
        parts["memory"] = data.memory_digest()
    else:
        store = open_store(cache_dir)
        try:
            hashes = file_hashes(files, store)
        finally:
            if store is not None:
                store.close()
        parts["files"] = [(rel, size, digest) for rel, (size, digest) in zip(_relative(files, root), hashes)]
    return sha256_json(parts)


def combine(fingerprints: dict[str, str]) -> str:
    """One fingerprint for several splits (e.g. the train and val splits a probe learns from)."""
    if len(fingerprints) == 1:
        return next(iter(fingerprints.values()))
    return sha256_json({"format": FORMAT, "splits": fingerprints})


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """Within the block (one run: a protocol over its tasks, or a sweep) each split is fingerprinted once.

    Outside any block nothing is remembered between calls: data changed between two runs in one process
    is fingerprinted again.
    """
    global _scope
    outer = _scope is None
    if outer:
        _scope = {}
    try:
        yield
    finally:
        if outer:
            _scope = None


def split_fingerprint(
    task: TaskSpec, source_name: str | None, split: str, data_root: str | Path, cache_dir: str | Path | None,
    download: bool = False,
) -> tuple[str, Any]:
    """(fingerprint, the dataset if it was loaded for it, else None) of `split` of `task` from a source.

    Remembered per (task, source, split, data root) within :func:`run_scope`.
    """
    from clip_bench.cache.identity import task_hash
    from clip_bench.loaders import load_split

    source = task.source(source_name)
    root = Path(data_root).expanduser()
    key = (task.name, task_hash(task), source.name, source.config_hash, split, str(root.resolve()))
    if _scope is not None and key in _scope:
        return _scope[key], None
    data = load_split(task, source.name, split, root, download)
    fp = fingerprint_dataset(data, root / source.path if source.path else None, cache_dir)
    if _scope is not None:
        _scope[key] = fp
    return fp, data
