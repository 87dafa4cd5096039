"""The cost of the data fingerprint at ImageNet size: 50,000 files (val) and 1,281,167 files (train).

    python benchmarks/bench_fingerprint.py                         # both sizes, 2 KiB files
    python benchmarks/bench_fingerprint.py --files 50000 --file-bytes 2048

For each size, small synthetic files are written under a temporary folder in /tmp (1,000 class
folders, like an ImageFolder tree) and fingerprinted as a loaded split (``FileImages``) three ways:

- cold, no memo: no cache directory (``--no-cache``), every file is hashed;
- cold, memo: a fresh cache directory, every file is hashed and its hash stored in fingerprints.sqlite;
- warm, memo: the same again, one ``stat`` and a store lookup per file.

The hashing throughput (MB/s, the thread pool hashing large files) is measured on a few large files,
so the cold cost of the real data follows: ``files x per-file cost + bytes / throughput`` (ImageNet:
~6.4 GB val, ~140 GB train). Files just written sit in the page cache: from a disk, its read speed
bounds the throughput instead. The folders are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip_bench import data_fingerprint as dfp  # noqa: E402
from clip_bench.loaders.base import FileImages  # noqa: E402

IMAGENET = {"val": (50_000, 6.4e9), "train": (1_281_167, 140e9)}


def write_files(root: Path, n: int, size: int, classes: int = 1000) -> FileImages:
    """`n` files of `size` random bytes in `classes` folders; the split as FileImages."""
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, size + n % 997 + 4096, dtype=np.uint8).tobytes()
    paths, labels = [], []
    for c in range(classes):
        (root / f"n{c:08d}").mkdir(parents=True)
    for i in range(n):
        c = i % classes
        p = root / f"n{c:08d}" / f"img_{i:08d}.JPEG"
        off = i % 4096
        with open(p, "wb") as fh:
            fh.write(i.to_bytes(8, "little") + block[off : off + size - 8])  # every file distinct
        paths.append(p)
        labels.append(c)
    return FileImages(paths, np.asarray(labels, dtype=np.int64))


def timed(fn) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def throughput(tmp: Path, total_mb: int, files: int = 4) -> float:
    """MB/s of the fingerprint's hashing (thread pool, no memo) over `files` large files of `total_mb` MB."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(files):
        p = tmp / f"big_{i}.bin"
        p.write_bytes(rng.integers(0, 256, total_mb * 10**6 // files, dtype=np.uint8).tobytes())
        paths.append(p)
    dfp.file_hashes(paths, None)  # warm the page cache
    seconds, _ = timed(lambda: dfp.file_hashes(paths, None))
    return total_mb / seconds


def run_size(n: int, size: int, tmp_base: Path) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="clip-bench-fp-", dir=tmp_base))
    try:
        t0 = time.perf_counter()
        data = write_files(tmp / "data", n, size)
        written = time.perf_counter() - t0
        time.sleep(dfp.RACY_SECONDS + 0.5)  # settled files: the memo stores them
        root = tmp / "data"
        cold, fp1 = timed(lambda: dfp.fingerprint_dataset(data, root, None))
        cold_memo, fp2 = timed(lambda: dfp.fingerprint_dataset(data, root, tmp / "cache"))
        warm, fp3 = timed(lambda: dfp.fingerprint_dataset(data, root, tmp / "cache"))
        assert fp1 == fp2 == fp3, "the memo changed a fingerprint"
        store = (tmp / "cache" / dfp.STORE_FILE).stat().st_size
        return {"files": n, "write_s": written, "cold_s": cold, "cold_memo_s": cold_memo, "warm_s": warm,
                "store_mb": store / 1e6}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[IMAGENET["val"][0], IMAGENET["train"][0]])
    ap.add_argument("--file-bytes", type=int, default=2048, help="size of each synthetic file")
    ap.add_argument("--throughput-mb", type=int, default=1024, help="MB hashed for the throughput figure")
    ap.add_argument("--tmp", default="/tmp", help="where the temporary folders go")
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{dfp.HASH_THREADS} hashing threads")
    tmp = Path(tempfile.mkdtemp(prefix="clip-bench-fp-mbs-", dir=args.tmp))
    try:
        mbs = throughput(tmp, args.throughput_mb)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"hashing throughput (large files, page cache): {mbs:.0f} MB/s")
    for n in args.files:
        r = run_size(n, args.file_bytes, Path(args.tmp))
        per_file_us = 1e6 * (r["cold_s"] - n * args.file_bytes / 1e6 / mbs) / n
        print(f"{n:>9,} files of {args.file_bytes} B (written in {r['write_s']:.1f} s): cold no memo "
              f"{r['cold_s']:.1f} s, cold with memo {r['cold_memo_s']:.1f} s, warm (memo) {r['warm_s']:.2f} s "
              f"({1e6 * r['warm_s'] / n:.1f} us/file); store {r['store_mb']:.0f} MB; per-file cost beyond the bytes "
              f"{per_file_us:.0f} us")
        for name, (count, size) in IMAGENET.items():
            if count == n:
                est = n * per_file_us / 1e6 + size / 1e6 / mbs
                print(f"    ImageNet {name} ({size / 1e9:.1f} GB): first run ~{est:.0f} s at {mbs:.0f} MB/s "
                      f"(if the disk reads that fast), later runs ~{r['warm_s']:.1f} s")


if __name__ == "__main__":
    main()
