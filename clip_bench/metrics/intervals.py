"""Statistical confidence for result rows: intervals on metrics and paired tests between models.

Pure NumPy/SciPy functions of per-sample outcomes. Values are in percent, as in the rows.

- Accuracy (top-1, top-5): the Wilson score interval (:func:`wilson`); the exact Clopper-Pearson
  interval is :func:`clopper_pearson`.
- Mean per-class recall and the Kinetics mean of top-1 and top-5: a class-stratified bootstrap.
  Resampling the n_c test samples of class c with replacement only changes how many samples fall in
  each outcome category (wrong / right, or none / top-5 only / top-1), and those counts are
  multinomial with the class's observed frequencies. So the bootstrap draws the counts directly
  (:func:`stratified_category_bootstrap`): B = 1000 for 50,000 images and 1,000 classes takes well
  under a second, and the distribution is exactly that of resampling the images.
- 11-point mAP: a bootstrap over images (multi-label, so not stratified), with integer resampling
  weights and cumulative sums over each class's ranking, all replicates at once.
- ROC AUC: a bootstrap stratified by class (positives and negatives resampled separately, so both
  counts stay fixed), weighted Mann-Whitney counts over the sorted scores.
- Retrieval (text→image recall@k, mean recall): a cluster bootstrap over images (each image drawn
  with all its caption queries), as ratios of resampled per-image sums (:func:`cluster_bootstrap_ratios`).
- Paired comparisons: exact McNemar for accuracy with Newcombe's hybrid score interval for the paired
  difference; paired bootstraps (the same resampled images for both models) for the other metrics;
  Holm's step-down correction across tasks.

Every bootstrap takes a fixed seed (0 by default), so a row's interval is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _st

Z95 = float(_st.norm.ppf(0.975))
DEFAULT_B = 1000
DEFAULT_SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # replicate blocks are sized to keep each work array near 32 MB


# ---------------------------------------------------------------------------------------------
# Intervals on a proportion


def wilson(k: np.ndarray | int, n: np.ndarray | int, conf: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes in n trials, as proportions (vectorised)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = float(_st.norm.ppf(0.5 + conf / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    # At the boundaries the interval's closed-form end is exactly 0 or 1.
    return np.where(k <= 0, 0.0, lo), np.where(k >= n, 1.0, hi)


def clopper_pearson(k: np.ndarray | int, n: np.ndarray | int, conf: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) interval for k successes in n trials, as proportions."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    a = 1 - conf
    lo = np.where(k > 0, _st.beta.ppf(a / 2, k, n - k + 1), 0.0)
    hi = np.where(k < n, _st.beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    return np.nan_to_num(lo), np.nan_to_num(hi, nan=1.0)


def percentile_interval(replicates: np.ndarray, conf: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of `replicates` (NaN replicates are ignored)."""
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(reps, [(1 - conf) / 2, (1 + conf) / 2])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# Resampling primitives


def multinomial_counts(rng: np.random.Generator, n: np.ndarray, p: np.ndarray, size: int) -> np.ndarray:
    """Multinomial counts for many strata at once: n (S,), p (S, K) -> (size, S, K) integer counts.

    Drawn as K-1 conditional binomials (faster than ``Generator.multinomial`` for small K).
    """
    n = np.asarray(n, dtype=np.int64)
    p = np.asarray(p, dtype=float)
    n_strata, k = p.shape
    out = np.empty((size, n_strata, k), dtype=np.int64)
    left = np.broadcast_to(n, (size, n_strata)).copy()
    mass = np.ones(n_strata)
    for j in range(k - 1):
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.clip(np.where(mass > 0, p[:, j] / mass, 0.0), 0.0, 1.0)
        draw = rng.binomial(left, q)
        out[:, :, j] = draw
        left -= draw
        mass = mass - p[:, j]
    out[:, :, k - 1] = left
    return out


def resample_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) integer weights: how often each of n samples is drawn in each bootstrap replicate."""
    idx = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n)


def _blocks(total: int, per_replicate: int) -> list[int]:
    step = max(1, _CHUNK_ELEMENTS // max(per_replicate, 1))
    return [min(step, total - i) for i in range(0, total, step)]


# ---------------------------------------------------------------------------------------------
# Bootstraps of single metrics (replicates in percent)


def stratified_category_bootstrap(
    categories: np.ndarray, strata: np.ndarray, n_categories: int, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap counts of per-sample categories, resampled within each stratum (class).

    Returns (counts (B, S, K), stratum sizes (S,)): the count of each category in each stratum for
    every replicate, exactly distributed as when each stratum's samples are resampled with replacement.
    """
    categories = np.asarray(categories, dtype=np.int64)
    _, strata = np.unique(np.asarray(strata), return_inverse=True)
    n_strata = int(strata.max()) + 1 if strata.size else 0
    table = np.zeros((n_strata, n_categories), dtype=np.int64)
    np.add.at(table, (strata, categories), 1)
    sizes = table.sum(axis=1)
    rng = np.random.default_rng(seed)
    return multinomial_counts(rng, sizes, table / sizes[:, None], B), sizes


def stratified_cell_bootstrap(
    cell_strata: np.ndarray, cell_sizes: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray],
    B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """(B,) replicates of `statistic(counts)` when each stratum's samples are resampled within it.

    The samples are summarised as J cells, the distinct (stratum, outcome) pairs that occur: cell j holds
    ``cell_sizes[j]`` samples of stratum ``cell_strata[j]``. Resampling a stratum's samples with replacement
    draws its cells' counts from a multinomial with the observed shares; they are drawn directly, cell after
    cell as conditional binomials, over the cells that occur only (never a strata × outcomes table, which for
    a confusion matrix would be mostly empty). `statistic` maps a (b, J) block of counts to (b,) values.
    """
    sizes = np.asarray(cell_sizes, dtype=np.int64)
    _, stratum = np.unique(np.asarray(cell_strata), return_inverse=True)
    order = np.argsort(stratum, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(stratum[order]) != 0])
    per_stratum = np.diff(np.r_[starts, sizes.size])
    rank = np.empty(sizes.size, dtype=np.int64)
    rank[order] = np.arange(sizes.size) - np.repeat(starts, per_stratum)
    totals = np.bincount(stratum, weights=sizes).astype(np.int64)
    share = sizes / totals[stratum]
    before = np.empty(sizes.size)  # the share of the stratum's earlier cells
    running = np.cumsum(share[order])
    before[order] = running - share[order] - np.repeat(running[starts] - share[order][starts], per_stratum)
    last = rank == per_stratum[stratum] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(last, 1.0, np.clip(share / np.maximum(1.0 - before, 1e-300), 0.0, 1.0))
    by_rank = [np.flatnonzero(rank == r) for r in range(int(rank.max()) + 1 if rank.size else 0)]
    rng = np.random.default_rng(seed)
    out = []
    for size in _blocks(B, sizes.size):
        left = np.broadcast_to(totals, (size, totals.size)).copy()
        counts = np.empty((size, sizes.size), dtype=np.int64)
        for cells in by_rank:  # one cell per stratum at each rank: no index repeats below
            draw = rng.binomial(left[:, stratum[cells]], q[cells])
            counts[:, cells] = draw
            left[:, stratum[cells]] -= draw
        out.append(np.asarray(statistic(counts), dtype=np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def bootstrap_mean_per_class_recall(
    correct: np.ndarray, labels: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified bootstrap replicates of mean per-class recall (percent)."""
    counts, sizes = stratified_category_bootstrap(np.asarray(correct, dtype=np.int64), labels, 2, B, seed)
    return 100.0 * (counts[:, :, 1] / sizes).mean(axis=1)


def bootstrap_mean_top1_top5(
    top1: np.ndarray, top5: np.ndarray, labels: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified bootstrap replicates of (top-1 + top-5) / 2 (percent), Kinetics' metric."""
    cat = np.asarray(top1, dtype=np.int64) + np.asarray(top5, dtype=np.int64)  # 0, 1 (top-5 only) or 2
    counts, sizes = stratified_category_bootstrap(cat, labels, 3, B, seed)
    return 100.0 * (counts @ np.array([0.0, 0.5, 1.0])).sum(axis=1) / sizes.sum()


def weighted_map_11point(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """11-point mAP (percent) for each row of integer sample `weights` (R, n); unit weights give the metric.

    Per class, samples are ranked once (stable, as the metric does). Interpolated precision only
    peaks right after a positive, so each replicate's curve is needed only at the positives' ranks:
    TP there is the cumulative weight of the positives, FP the cumulative weight of the negatives
    ranked above. A sample drawn w times counts w times; one not drawn adds a point that is never
    above an existing one, so the interpolated maxima are those of the resampled image list.
    """
    scores, targets = np.asarray(scores), np.asarray(targets)  # 1 positive, 0 negative, -1 ignored (VOC difficult)
    wt = np.ascontiguousarray(np.asarray(weights, dtype=np.int32).T)  # (n, R): gathers and sums run over rows
    R = wt.shape[1]
    cols = np.arange(R)
    thresholds = np.linspace(0, 1, 11)
    ap_sum = np.zeros(R)
    n_present = np.zeros(R)
    for c in range(targets.shape[1]):
        keep = np.flatnonzero(targets[:, c] >= 0)  # as metrics.map_11point: ignored entries drop out per class
        order = keep[np.argsort(-scores[keep, c], kind="stable")]
        pos_sorted = targets[order, c] > 0
        if not pos_sorted.any():
            continue
        pos_idx, neg_idx = order[pos_sorted], order[~pos_sorted]
        negs_above = np.flatnonzero(pos_sorted) - np.arange(pos_idx.size)  # negatives ranked above each positive
        tp = np.cumsum(wt[pos_idx], axis=0, dtype=np.int32).astype(np.float64)  # (P, R), exact integer counts
        cum_neg = np.zeros((neg_idx.size + 1, R), dtype=np.int32)
        np.cumsum(wt[neg_idx], axis=0, dtype=np.int32, out=cum_neg[1:])
        fp = cum_neg[negs_above].astype(np.float64)
        n_pos = tp[-1]
        present = n_pos > 0
        recall = tp / np.maximum(n_pos, 1)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        best_after = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
        best_after = np.concatenate([best_after, np.zeros((1, R))], axis=0)
        first = (recall[:, None, :] < thresholds[None, :, None]).sum(axis=0)  # (11, R): recall is non-decreasing
        ap = best_after[first, cols].sum(axis=0) / 11.0
        ap_sum += np.where(present, ap, 0.0)
        n_present += present
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * ap_sum / n_present


def bootstrap_map_11point(
    scores: np.ndarray, targets: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Bootstrap replicates (over images) of 11-point mAP (percent)."""
    rng = np.random.default_rng(seed)
    n = scores.shape[0]
    return np.concatenate([weighted_map_11point(scores, targets, resample_weights(rng, n, b))
                           for b in _blocks(B, n * 4)])


def _stratified_weights(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """(size, n) resampling weights, each class resampled within itself."""
    labels = np.asarray(labels)
    w = np.zeros((size, labels.shape[0]), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        w[:, members] = resample_weights(rng, members.size, size)
    return w


def weighted_roc_auc(margin: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary ROC AUC (percent) for each row of sample `weights` (R, n); ties count one half.

    Samples are sorted by score once and the weights summed per distinct score, so each replicate
    is a weighted Mann-Whitney count: O(R·n).
    """
    margin = np.asarray(margin, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(margin, kind="stable")
    sorted_margin = margin[order]
    starts = np.flatnonzero(np.r_[True, sorted_margin[1:] != sorted_margin[:-1]])
    w = np.asarray(weights, dtype=np.float64)[:, order]
    lab = labels[order]
    pos = np.add.reduceat(w * lab, starts, axis=1)  # (R, L): weighted positives at each score level
    neg = np.add.reduceat(w * ~lab, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * wins / (pos.sum(axis=1) * neg.sum(axis=1))


def bootstrap_roc_auc(
    margin: np.ndarray, labels: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified bootstrap replicates of binary ROC AUC (percent)."""
    rng = np.random.default_rng(seed)
    n = np.asarray(margin).shape[0]
    return np.concatenate([weighted_roc_auc(margin, labels, _stratified_weights(rng, labels, b))
                           for b in _blocks(B, n * 4)])


def cluster_bootstrap_ratios(
    sums: np.ndarray, sizes: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Cluster-bootstrap replicates of ratio means: (B, M) proportions sum(w·sums) / sum(w·sizes) per column.

    `sums` (G, M) is each cluster's total outcome (e.g. the hits among an image's caption queries) and
    `sizes` (G, M) its number of queries; every replicate draws G clusters with replacement (integer
    weights), so correlated queries of one cluster move together. Paired differences: pass the
    difference of two models' sums (same clusters, same sizes).
    """
    sums, sizes = np.asarray(sums, dtype=np.float64), np.asarray(sizes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = sums.shape[0]
    out = []
    for size in _blocks(B, n * 2):
        w = resample_weights(rng, n, size).astype(np.float64)  # integer weights: the sums stay exact
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((w @ sums) / (w @ sizes))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Paired comparisons


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[float, int, int]:
    """Exact two-sided McNemar test: (p-value, #A right & B wrong, #A wrong & B right)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    m = only_a + only_b
    if m == 0:
        return 1.0, only_a, only_b
    p = 2.0 * _st.binom.cdf(min(only_a, only_b), m, 0.5)
    return float(min(1.0, p)), only_a, only_b


def newcombe_paired_interval(a_correct: np.ndarray, b_correct: np.ndarray, conf: float = 0.95) -> tuple[float, float]:
    """Newcombe's (1998, method 10) score interval for accuracy(B) - accuracy(A) on paired samples (proportions)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    n = a.size
    both, only_b = float(np.sum(a & b)), float(np.sum(~a & b))
    only_a, neither = float(np.sum(a & ~b)), float(np.sum(~a & ~b))
    p_b, p_a = (both + only_b) / n, (both + only_a) / n
    lb, ub = (float(x) for x in wilson(both + only_b, n, conf))
    la, ua = (float(x) for x in wilson(both + only_a, n, conf))
    # Correlation of the two marginals (phi coefficient), 0 when a margin is degenerate.
    denom = (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
    phi = (both * neither - only_b * only_a) / np.sqrt(denom) if denom > 0 else 0.0
    d = p_b - p_a
    lower = np.sqrt(max((p_b - lb) ** 2 - 2 * phi * (p_b - lb) * (ua - p_a) + (ua - p_a) ** 2, 0.0))
    upper = np.sqrt(max((ub - p_b) ** 2 - 2 * phi * (ub - p_b) * (p_a - la) + (p_a - la) ** 2, 0.0))
    return float(max(d - lower, -1.0)), float(min(d + upper, 1.0))


def paired_accuracy_bootstrap(
    a_correct: np.ndarray, b_correct: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Bootstrap replicates of accuracy(B) - accuracy(A) in points (the four agreement counts are multinomial)."""
    a, b = np.asarray(a_correct, dtype=np.int64), np.asarray(b_correct, dtype=np.int64)
    counts, sizes = stratified_category_bootstrap(2 * a + b, np.zeros_like(a), 4, B, seed)
    return 100.0 * (counts[:, 0, 1] - counts[:, 0, 2]) / sizes[0]


def paired_mean_per_class_recall_bootstrap(
    a_correct: np.ndarray, b_correct: np.ndarray, labels: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified paired bootstrap replicates of mean per-class recall, B minus A (points)."""
    a, b = np.asarray(a_correct, dtype=np.int64), np.asarray(b_correct, dtype=np.int64)
    counts, sizes = stratified_category_bootstrap(2 * a + b, labels, 4, B, seed)
    return 100.0 * ((counts[:, :, 1] - counts[:, :, 2]) / sizes).mean(axis=1)


def paired_mean_top1_top5_bootstrap(
    a_top1: np.ndarray, a_top5: np.ndarray, b_top1: np.ndarray, b_top5: np.ndarray, labels: np.ndarray,
    B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified paired bootstrap replicates of the Kinetics mean, B minus A (points)."""
    ca = np.asarray(a_top1, dtype=np.int64) + np.asarray(a_top5, dtype=np.int64)
    cb = np.asarray(b_top1, dtype=np.int64) + np.asarray(b_top5, dtype=np.int64)
    counts, sizes = stratified_category_bootstrap(3 * ca + cb, labels, 9, B, seed)
    value = np.array([0.0, 0.5, 1.0])
    diff = (value[None, :] - value[:, None]).ravel()  # category 3*ca+cb -> value(cb) - value(ca)
    return 100.0 * (counts @ diff).sum(axis=1) / sizes.sum()


def _paired_weighted_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray, n: int,
    draw: Callable[[np.random.Generator, int], np.ndarray], B: int, seed: int,
) -> np.ndarray:
    """Replicates of statistic(b, w) - statistic(a, w), the same weights `w` (B, n) for both models."""
    rng = np.random.default_rng(seed)
    out = []
    for size in _blocks(B, n * 4):
        w = draw(rng, size)
        out.append(statistic(b, w) - statistic(a, w))
    return np.concatenate(out)


def paired_map_11point_bootstrap(
    a_scores: np.ndarray, b_scores: np.ndarray, targets: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Paired bootstrap replicates (same resampled images) of 11-point mAP, B minus A (points)."""
    n = targets.shape[0]
    return _paired_weighted_bootstrap(lambda s, w: weighted_map_11point(s, targets, w), a_scores, b_scores, n,
                                      lambda rng, size: resample_weights(rng, n, size), B, seed)


def paired_roc_auc_bootstrap(
    a_margin: np.ndarray, b_margin: np.ndarray, labels: np.ndarray, B: int = DEFAULT_B, seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified paired bootstrap replicates of ROC AUC, B minus A (points)."""
    return _paired_weighted_bootstrap(lambda m, w: weighted_roc_auc(m, labels, w), a_margin, b_margin,
                                      labels.shape[0], lambda rng, size: _stratified_weights(rng, labels, size),
                                      B, seed)


def bootstrap_p_value(replicates: np.ndarray, observed: float) -> float:
    """Two-sided p-value of "no difference" from paired-bootstrap replicates of a difference.

    The replicates are centred on the observed difference (their spread approximates the null
    distribution); p = (1 + #{|d* - d| >= |d|}) / (B + 1). Identical models give p = 1.
    """
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan")
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = np.sum(np.abs(reps - observed) >= abs(observed) - tol)
    return float(min(1.0, (1 + extreme) / (reps.size + 1)))


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction: (adjusted p-values, rejected at `alpha`), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p, np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted, adjusted < alpha


# ---------------------------------------------------------------------------------------------
# Few-shot means over seeds


def combine_seed_intervals(
    values: Sequence[float], ci_lows: Sequence[float], ci_highs: Sequence[float], conf: float = 0.95,
) -> tuple[float, float]:
    """Interval (percent) for the mean over seeds of a few-shot metric.

    total variance = (between-seed sample variance) / n_seeds + (mean within-seed variance), each
    within-seed variance being that seed's test-sample standard error squared, read off its 95%
    interval as ((high - low) / (2 · 1.96))². The within-seed term is not divided by n_seeds: every
    seed is scored on the same test images, so their test-sample errors are (conservatively) taken
    as fully correlated. The interval is mean ± z · sqrt(total variance), clipped to [0, 100].
    """
    v = np.asarray(values, dtype=float)
    se_within = (np.asarray(ci_highs, dtype=float) - np.asarray(ci_lows, dtype=float)) / (2 * Z95)
    between = float(np.var(v, ddof=1)) / v.size if v.size > 1 else 0.0
    total = between + float(np.mean(se_within ** 2))
    z = float(_st.norm.ppf(0.5 + conf / 2))
    mean = float(v.mean())
    return max(0.0, mean - z * np.sqrt(total)), min(100.0, mean + z * np.sqrt(total))
