"""Bootstrap intervals at full scale: clip-bench's vectorised bootstraps vs per-replicate resampling.

Side by side in one process, on synthetic data of the real sizes:

- ImageNet (50,000 images, 1,000 classes, 50 per class): class-stratified bootstrap of mean per-class
  recall, B = 1000; the paired version `compare` uses; and all the intervals + outcome files of an
  ImageNet zero-shot evaluation (top-1, top-5, mean per-class recall) against computing its metrics.
- VOC2007 (4,952 images, 20 classes, multi-label): bootstrap of 11-point mAP, B = 1000.
- Hateful Memes (1,000 images, binary): class-stratified bootstrap of ROC AUC, B = 1000.

The reference is the textbook loop: for each replicate, draw image indices with replacement (within
each class where stratified) and call clip-bench's plain metric on the resampled arrays. Slow
references run `--ref-reps` replicates and are extrapolated linearly to B (the loop's cost per
replicate is constant). Each pair also reports how close the two 95% intervals are.

    python benchmarks/bench_bootstrap.py [--B 1000] [--ref-reps 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch  # noqa: F401  (imported by every evaluation anyway; keep its import out of the timings)

from clip_bench import distributed, metrics, stats  # noqa: F401
from clip_bench.metrics.classification import all_metrics
from clip_bench.results.outcomes import attach_outcomes
from clip_bench.results.rows import make_row


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def reference_mpcr(correct: np.ndarray, labels: np.ndarray, reps: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    out = []
    for _ in range(reps):  # resample each class's images, recall per class, mean over classes
        out.append(100 * np.mean([correct[rng.choice(m, m.size)].mean() for m in members]))
    return np.array(out)


def reference_map(scores: np.ndarray, targets: np.ndarray, reps: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = scores.shape[0]
    out = []
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        out.append(metrics.map_11point(scores[idx], targets[idx]))
    return np.array(out)


def reference_auc(margin: np.ndarray, labels: np.ndarray, reps: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    out = []
    for _ in range(reps):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        out.append(metrics.roc_auc(margin[idx], labels[idx]))
    return np.array(out)


def report(name: str, fast: np.ndarray, t_fast: float, ref: np.ndarray, t_ref: float, B: int) -> None:
    per_rep = t_ref / ref.size
    lo, hi = stats.percentile_interval(fast)
    sd_fast, sd_ref = np.std(fast), np.std(ref)
    print(f"{name}: clip-bench {t_fast:.2f} s for B={B}; reference {per_rep * 1000:.1f} ms/replicate "
          f"-> {per_rep * B:.1f} s for B={B} ({ref.size} run); ratio {per_rep * B / t_fast:.0f}x; "
          f"95% CI [{lo:.2f}, {hi:.2f}]; bootstrap SD {sd_fast:.3f} vs reference {sd_ref:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=1000)
    ap.add_argument("--ref-reps", type=int, default=100, help="replicates the slow references actually run")
    args = ap.parse_args()
    B, R = args.B, args.ref_reps
    rng = np.random.default_rng(0)

    # ImageNet: 50,000 images, 1,000 classes.
    labels = np.repeat(np.arange(1000), 50)
    rng.shuffle(labels)
    p_class = rng.uniform(0.4, 0.95, 1000)
    correct_a = rng.random(labels.size) < p_class[labels]
    correct_b = np.where(rng.random(labels.size) < 0.9, correct_a, rng.random(labels.size) < p_class[labels])
    fast, t_fast = timed(stats.bootstrap_mean_per_class_recall, correct_a, labels, B)
    ref, t_ref = timed(reference_mpcr, correct_a, labels, R)
    report("ImageNet mean per-class recall (stratified)", fast, t_fast, ref, t_ref, B)
    paired, t_paired = timed(stats.paired_mean_per_class_recall_bootstrap, correct_a, correct_b, labels, B)
    print(f"ImageNet paired mean per-class recall (compare): {t_paired:.2f} s for B={B}; "
          f"95% CI of the difference [{stats.percentile_interval(paired)[0]:+.2f}, "
          f"{stats.percentile_interval(paired)[1]:+.2f}]")
    _, t_mc = timed(stats.mcnemar_exact, correct_a, correct_b)
    _, t_wilson = timed(stats.wilson, int(correct_a.sum()), labels.size)
    print(f"ImageNet top-1 Wilson interval {t_wilson * 1000:.2f} ms; exact McNemar {t_mc * 1000:.2f} ms")

    logits = rng.normal(size=(labels.size, 1000)).astype(np.float32)
    logits[np.arange(labels.size), labels] += 3.0
    scored, t_metrics = timed(all_metrics, logits, labels, "accuracy")
    rows = [make_row(model="m", model_fingerprint="f", task="imagenet", protocol="zeroshot", metric=m, value=v,
                     n=labels.size) for m, v in scored.items()]
    with tempfile.TemporaryDirectory() as out:
        _, t_attach = timed(attach_outcomes, rows, logits, labels, out)
        sizes = {r["metric"]: (__import__("os").path.getsize(f"{out}/{r['outcomes']}")) for r in rows}
    print(f"ImageNet zero-shot rows: metrics {t_metrics:.2f} s; intervals + outcome files {t_attach:.2f} s "
          f"(ratio {t_attach / t_metrics:.2f}); files: "
          + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items())
          + f"; total {sum(sizes.values()) / 1024:.1f} KiB")

    # VOC2007: 4,952 images, 20 classes, multi-label.
    targets = rng.random((4952, 20)) < 0.08
    scores = rng.normal(size=(4952, 20)) + 2.0 * targets
    fast, t_fast = timed(stats.bootstrap_map_11point, scores, targets, B)
    ref, t_ref = timed(reference_map, scores, targets, R)
    report("VOC2007 11-point mAP (images)", fast, t_fast, ref, t_ref, B)

    # Hateful Memes: 1,000 images, binary.
    y = (rng.random(1000) < 0.375).astype(int)
    margin = rng.normal(size=1000) + 0.8 * y
    fast, t_fast = timed(stats.bootstrap_roc_auc, margin, y, B)
    ref, t_ref = timed(reference_auc, margin, y, R)
    report("Hateful Memes ROC AUC (stratified)", fast, t_fast, ref, t_ref, B)


if __name__ == "__main__":
    main()
