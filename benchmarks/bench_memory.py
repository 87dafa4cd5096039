"""Benchmark: peak memory of an ImageNet-scale linear probe on float16, memory-mapped features.

A probe on 1.28 M x 768 features with 1000 classes is estimated at "about 2 GB for the features plus
about 1 GB of buffers". This writes synthetic float16 features of that size as .npy
files (class means plus noise, in chunks), then runs the probe in a fresh subprocess exactly as
``clip-bench linprobe`` hands features to it: the cache's float16 file memory-mapped, no val split
(ImageNet has none, so a stratified 20% of train is held out), ``run_linear_probe`` with the torch
solver, test scored on 50,000 rows. A sampling thread in the child reads /proc/self/status every
20 ms; the report gives the peak resident set (VmHWM), its anonymous and file-backed parts, and the
baseline after imports. Memory peaks during the first L-BFGS iterations, so a short run (2-point C
grid, ``--max-iter`` iterations) measures the same peak as a full one.

``--reference`` also runs, in a second child on the same files, the probe on features copied into a
float32 array first; at full scale that needs ~10 GB, so use a smaller ``--rows`` on a shared machine.
Feature files go to ``--workdir`` (default: a folder in the system's temporary directory).

    python benchmarks/bench_memory.py                       # 1.28 M x 768, 1000 classes
    python benchmarks/bench_memory.py --rows 256000 --reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

GB = 1e9  # decimal, as the README states its figures
ESTIMATE_GB = 3.0  # "about 2 GB for the features plus about 1 GB of buffers"


def write_features(folder: Path, rows: int, test_rows: int, dim: int, classes: int, seed: int = 0) -> dict[str, Path]:
    """Class means + unit noise, float16, written chunk by chunk (never a full-size array in memory)."""
    from numpy.lib.format import open_memmap

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    means = (rng.standard_normal((classes, dim)) * 0.35).astype(np.float32)
    paths = {}
    for split, n in (("train", rows), ("test", test_rows)):
        fx, fy = folder / f"{split}_{n}x{dim}_{classes}.npy", folder / f"{split}_{n}_{classes}.labels.npy"
        paths[split], paths[f"{split}_y"] = fx, fy
        if fx.exists() and fy.exists():
            continue
        y = (np.arange(n) % classes).astype(np.int64)
        rng.shuffle(y)
        out = open_memmap(fx, mode="w+", dtype=np.float16, shape=(n, dim))
        for i in range(0, n, 65536):
            block = means[y[i : i + 65536]] + rng.standard_normal((len(y[i : i + 65536]), dim), dtype=np.float32)
            out[i : i + 65536] = block
        out.flush()
        del out
        np.save(fy, y)
    return paths


class PeakSampler(threading.Thread):
    """Samples this process's VmRSS, RssAnon and RssFile (bytes) and keeps their maxima."""

    def __init__(self, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.every, self.peak, self.stop = every, {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}, threading.Event()

    @staticmethod
    def status() -> dict[str, int]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

    def run(self) -> None:
        while not self.stop.is_set():
            for k, v in self.status().items():
                if k in self.peak:
                    self.peak[k] = max(self.peak[k], v)
            time.sleep(self.every)


def child(args: argparse.Namespace) -> None:
    """One probe in this (fresh) process; prints a JSON line with the memory figures."""
    import torch

    from clip_bench.probe import ProbeConfig, run_linear_probe

    torch.set_num_threads(args.threads)
    paths = {k: Path(v) for k, v in json.loads(args.paths).items()}
    sampler = PeakSampler()
    base = PeakSampler.status()
    sampler.start()
    t0 = time.perf_counter()
    train_X = np.load(paths["train"], mmap_mode="r")  # what the feature cache hands over
    test_X = np.load(paths["test"], mmap_mode="r")
    if args.mode == "float32-copy":  # the reference: np.asarray(features, dtype=np.float32) per split
        train_X, test_X = np.asarray(train_X, dtype=np.float32), np.asarray(test_X, dtype=np.float32)
    train_y, test_y = np.load(paths["train_y"]), np.load(paths["test_y"])
    config = ProbeConfig(max_iter=args.max_iter, c_min=0.1, c_max=1.0, steps_per_decade=1, n_threads=args.threads)

    def top1(scores: np.ndarray, targets: np.ndarray) -> float:
        return 100.0 * float(np.mean(scores.argmax(axis=1) == targets))

    res = run_linear_probe(train_X, train_y, None, None, test_X, test_y, top1, config=config,
                           n_classes=int(train_y.max()) + 1)
    sampler.stop.set()
    sampler.join()
    end = PeakSampler.status()
    print(json.dumps({
        "mode": args.mode, "seconds": round(time.perf_counter() - t0, 1), "baseline_rss": base["VmRSS"],
        "peak_rss": end["VmHWM"], "peak_anon": sampler.peak["RssAnon"], "peak_file": sampler.peak["RssFile"],
        "test_top1": res["test_score"], "n_train": res["n_train"], "n_val": res["n_val"], "n_refit": res["n_refit"],
        "fits": res["sweep_n_fits"] + 1,
    }))


def run_child(args: argparse.Namespace, paths: dict[str, Path], mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--threads", str(args.threads),
           "--max-iter", str(args.max_iter), "--paths", json.dumps({k: str(v) for k, v in paths.items()})]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_281_167, help="training rows (ImageNet: 1,281,167)")
    ap.add_argument("--test-rows", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=768, help="feature width (ViT-B/32 before the projection: 768)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--max-iter", type=int, default=1, help="L-BFGS iterations per fit (the peak comes early)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "clip_bench_bench_memory")
    ap.add_argument("--reference", action="store_true",
                    help="also run the probe on a float32 copy of the features (~2.5x the memory)")
    ap.add_argument("--keep", action="store_true", help="keep the feature files for another run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="float16-memmap", help=argparse.SUPPRESS)
    ap.add_argument("--paths", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    t0 = time.perf_counter()
    paths = write_features(args.workdir, args.rows, args.test_rows, args.dim, args.classes)
    feature_bytes = paths["train"].stat().st_size + paths["test"].stat().st_size
    print(f"features: {args.rows:,} + {args.test_rows:,} rows x {args.dim} float16, {args.classes} classes: "
          f"{feature_bytes / GB:.2f} GB on disk (written in {time.perf_counter() - t0:.0f} s)")
    results = [run_child(args, paths, "float16-memmap")]
    if args.reference:
        results.append(run_child(args, paths, "float32-copy"))
    for r in results:
        print(
            f"{r['mode']:>15}: peak RSS {r['peak_rss'] / GB:.2f} GB (anonymous {r['peak_anon'] / GB:.2f}, "
            f"file-backed {r['peak_file'] / GB:.2f}; {r['baseline_rss'] / GB:.2f} after imports), "
            f"{r['peak_rss'] / feature_bytes:.2f}x the features; {r['fits']} fits of {args.max_iter} L-BFGS iterations "
            f"on {r['n_train']:,} + val {r['n_val']:,} rows, refit {r['n_refit']:,}, {r['seconds']:.0f} s"
        )
    if len(results) == 2:
        print(f"float32 copy / float16 memmap peak RSS: {results[1]['peak_rss'] / results[0]['peak_rss']:.2f}x")
    print(f"estimate: about {ESTIMATE_GB:.0f} GB (about 2 GB for the features plus about 1 GB of buffers)")
    if not args.keep:
        for p in paths.values():
            p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
