"""Benchmark: the paper's full linear-probe protocol with the torch solver vs scikit-learn.

Measured (shared 2-core Xeon VM, CPU only, torch 2.14.1, sklearn 1.9.1; 20k/5k/10k x 512, 100 classes;
``/work/venv/bin/python benchmarks/bench_probe.py --threads 1``; details in RESULTS_probe.md):

    threads=1: torch 27.1 s (sweep 24.0 + refit 3.1, 399+48 L-BFGS iterations)
               sklearn 160.2 s (sweep 146.6 + refit 13.5, 1722+154 iterations)
               speed ratio sklearn/torch 5.9x (6.2x in a second run); test accuracy 89.28 vs 89.00 (+0.28)
    threads=2: torch 13.2 s vs sklearn 245.0 s = 18.5x (sklearn half partly under other jobs' load);
               test accuracy 89.28 vs 89.14 (+0.14). Under a competing CPU job, 2-thread torch is ~15x
               slower (oversubscribed OpenMP), so on a shared CPU use --threads 1.

Synthetic CLIP-like features (float32): 100 class means plus Gaussian noise with a decaying spectrum
(feature variances ~ j^-decay, randomly rotated) and a large common offset, as real CLIP features
have. For each solver: the full C sweep (97-point grid, 7 coarse points + binary search, chosen on
val), a refit on train+val at the chosen C, and test accuracy. Both solvers run in this process on
the same arrays; the thread cap applies to both (torch threads and BLAS threads via threadpoolctl).

    /work/venv/bin/python benchmarks/bench_probe.py                 # 20k x 512, 100 classes
    /work/venv/bin/python benchmarks/bench_probe.py --threads 2 --solvers torch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from clip_bench.probe import ProbeConfig, run_linear_probe


def clip_like_features(n_train: int, n_val: int, n_test: int, dim: int, classes: int, seed: int,
                       separation: float, decay: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Class means + anisotropic noise + a common offset, float32; labels uniform over classes."""
    rng = np.random.default_rng(seed)
    spectrum = (1.0 + np.arange(dim)) ** -decay
    spectrum /= spectrum.mean()
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    offset = rng.standard_normal(dim) * 1.5
    means = rng.standard_normal((classes, dim)) * np.sqrt(spectrum) * separation

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        x = (means[y] + rng.standard_normal((n, dim)) * np.sqrt(spectrum)) @ basis.T + offset
        return x.astype(np.float32), y

    return {"train": draw(n_train), "val": draw(n_val), "test": draw(n_test)}


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return 100.0 * float(np.mean(scores.argmax(axis=1) == targets))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=20_000)
    ap.add_argument("--n-val", type=int, default=5_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--separation", type=float, default=0.2)
    ap.add_argument("--decay", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="cap torch+BLAS threads for both solvers")
    ap.add_argument("--solvers", default="torch,sklearn")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    data = clip_like_features(args.n_train, args.n_val, args.n_test, args.dim, args.classes, args.seed,
                              args.separation, args.decay)
    print(f"features: train {data['train'][0].shape}, val {data['val'][0].shape}, test {data['test'][0].shape}, "
          f"{args.classes} classes, float32; threads={args.threads or torch.get_num_threads()} "
          f"(cpus: {os.cpu_count()}), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    runs = {}
    for solver in args.solvers.split(","):
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = run_linear_probe(*data["train"], *data["val"], *data["test"], accuracy, solver=solver,
                               config=ProbeConfig(n_threads=args.threads))
        wall = time.perf_counter() - t0
        runs[solver] = {**{k: v for k, v in res.items() if k != "config"}, "bench_wall_s": wall,
                        "load_before": load0, "load_after": os.getloadavg()[0]}
        print(f"[{solver:7s}] total {wall:7.1f} s (sweep {res['sweep_time_s']:6.1f} s, {res['sweep_n_fits']} fits, "
              f"{res['sweep_n_iter']} L-BFGS iterations; refit {res['refit_time_s']:5.1f} s, {res['n_iter']} it) "
              f"best C={res['C']:.4g} val={res['val_score']:.2f} test={res['test_score']:.2f} "
              f"load {load0:.1f}->{runs[solver]['load_after']:.1f}", flush=True)
        print("          sweep (C, val acc): " + ", ".join(f"({c:.3g}, {s:.2f})" for c, s in res["sweep"]), flush=True)
    if {"torch", "sklearn"} <= runs.keys():
        ratio = runs["sklearn"]["bench_wall_s"] / runs["torch"]["bench_wall_s"]
        diff = runs["torch"]["test_score"] - runs["sklearn"]["test_score"]
        print(f"speed ratio sklearn/torch = {ratio:.1f}x; test accuracy torch - sklearn = {diff:+.2f} points")
        runs["summary"] = {"speed_ratio": ratio, "accuracy_diff_points": diff}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
