"""k-shot sampling and the rule for choosing C from the shots alone.

Sampling: for each class (in label order) the shots are the first k of a permutation of that class's
examples drawn from ``np.random.default_rng([seed, class])``. A class's draw therefore does not depend
on the other classes, and for one seed the k-shot set is a prefix of the 2k-shot set (nested shots, so
curves over k compare like with like).

Choosing C without peeking at val or test (the paper does not say how its few-shot probes were
regularised, so this is clip-bench's documented rule):

* **The prior C** = ``PRIOR_SCALE`` / (n * mean_i ||x_i - mean(x)||^2) = 100 / (n s^2) for a fit to n
  examples. In scikit-learn's scaling (sum of n losses + ||w||^2 / 2C) this fixes the per-example
  regularisation 1 / (C n) at s^2 / 100, the same for any number of shots or classes and any feature
  scale (scaling the features by a scales the best C by 1 / a^2). The constant is measured, not
  derived: on both feature sets of ``benchmarks/bench_probe_c.py`` the scales 30 and 100 meet its
  goal at every k >= 2, 300 does not (RESULTS.md, "Choosing C", has the sensitivity).
* k >= 2: cross-validation inside the shots. Shot j of every class (in drawn order) goes to fold
  ``j % n_folds`` with ``n_folds = min(k, max_folds)`` (default 4; k = 2 is leave-one-shot-out).
  Every fold keeps >= 1 training shot per class. C is chosen by the paper's grid + binary search
  (``c_search.py``) on the mean fold accuracy; C that the CV cannot tell apart from the best tie (the
  paired band of ``sweep.paired_band`` for per-example metrics: each held-out shot is scored at
  every C), and among them the one nearest the prior C of the folds' training size n_cv wins: the
  shots decide what they can resolve, the prior the rest. The probe is then refit on all n shots at C * n_cv / n
  (``transfer_C``: the per-example regularisation the CV chose, not its raw C; the CV fits saw
  fewer examples, so the same C would regularise the final fit less).
* k = 1: no shot can be held out without losing its class, so C is the prior C of the shots
  (``one_shot_C``), unless ``ProbeConfig.one_shot_C`` fixes it.
"""

from __future__ import annotations

import zlib

import numpy as np

from clip_bench.util.errors import ClipBenchError


def sample_k_shot(
    labels: np.ndarray, k: int, seed: int, allow_fewer: bool = False, n_classes: int | None = None
) -> np.ndarray:
    """Indices of k examples per class (grouped by class, shots in drawn order), reproducible per seed.

    ``n_classes`` (optional) declares the label space 0..n_classes-1 so that a class with no example at
    all is caught too. A class with fewer than k examples raises :class:`ClipBenchError` naming it,
    unless ``allow_fewer`` (then it contributes all it has)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ClipBenchError(f"k-shot sampling needs one label per example, got labels of shape {labels.shape}")
    if k < 1:
        raise ClipBenchError(f"k must be >= 1, got {k}")
    order = np.argsort(labels, kind="stable")
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    if n_classes is not None:
        missing = np.setdiff1d(np.arange(n_classes), classes)
        if missing.size and not allow_fewer:
            raise ClipBenchError(
                f"class index {int(missing[0])} has 0 examples, fewer than k={k} "
                f"({missing.size} class(es) empty); pass --allow-fewer (Python: allow_fewer=True) to keep going"
            )
    short = counts < k
    if short.any() and not allow_fewer:
        c = classes[short][0]
        raise ClipBenchError(
            f"class index {c} has {int(counts[short][0])} examples, fewer than k={k} "
            f"({int(short.sum())} class(es) short); pass --allow-fewer (Python: allow_fewer=True) to use what there is"
        )
    picked = []
    for c, start, count in zip(classes, starts, counts, strict=True):
        members = order[start : start + count]
        rng = np.random.default_rng([int(seed), _class_key(c)])
        picked.append(members[rng.permutation(count)[:k]])
    return np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, dtype=np.int64)


def _class_key(c) -> int:
    """A non-negative integer per class for seeding: the label itself when it is a non-negative int."""
    if isinstance(c, (int, np.integer)) and c >= 0:
        return int(c)
    return zlib.crc32(repr(c).encode())


def shot_folds(shot_labels: np.ndarray, k: int, max_folds: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, val) position arrays into the shot set for the within-shots CV (see module docstring).

    ``shot_labels`` are the labels of :func:`sample_k_shot`'s output, in its order."""
    shot_labels = np.asarray(shot_labels)
    if k < 2:
        raise ClipBenchError("cross-validation inside the shots needs k >= 2")
    n_folds = min(k, max_folds)
    rank = np.zeros(len(shot_labels), dtype=np.int64)  # position of each shot within its class
    for c in np.unique(shot_labels):
        where = np.flatnonzero(shot_labels == c)
        rank[where] = np.arange(where.size)
    fold = rank % n_folds
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_folds)]


#: The prior's scale: C = PRIOR_SCALE / (n * mean squared spread of the features). See the module docstring.
PRIOR_SCALE = 100.0


def prior_C(X: np.ndarray, n: int | None = None, scale: float = PRIOR_SCALE) -> float:
    """The scale-aware prior C = ``scale`` / (n * mean_i ||x_i - mean(x)||^2), n = ``len(X)`` unless given:
    it fixes the per-example regularisation 1 / (C n) relative to the squared feature scale."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0] if n is None else n
    with np.errstate(over="ignore", under="ignore"):  # out-of-range spreads are reported below
        spread = float(np.mean(np.sum((X - X.mean(axis=0)) ** 2, axis=1))) if X.size else 0.0
    if not spread > 0 or n < 1:
        raise ClipBenchError("all features are identical; cannot set a scale-aware C (check the features)")
    C = scale / (n * spread)
    if not np.isfinite(C) or not np.isfinite(spread):
        raise ClipBenchError(
            f"the features' spread ({spread:.3g}) is too small or too large for a scale-aware C; "
            "check the features (a damaged cache, or features scaled far from unit size)"
        )
    return C


def one_shot_C(shots_X: np.ndarray, scale: float = PRIOR_SCALE) -> float:
    """The fixed k=1 rule: the prior C of the shots (``prior_C``)."""
    return prior_C(shots_X, scale=scale)


def transfer_C(C: float, n_from: float, n_to: float) -> float:
    """A C chosen on fits to ``n_from`` examples, for a fit to ``n_to``: the same per-example
    regularisation 1 / (C n), i.e. C * n_from / n_to."""
    return float(C) * float(n_from) / float(n_to)


def cv_train_size(folds: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean number of training examples of the CV folds (what the CV's C was chosen for)."""
    return float(np.mean([len(tr) for tr, _ in folds]))
