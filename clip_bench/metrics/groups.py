"""Metrics over groups of samples, from per-sample outcomes: macro F1 over the classes of the test labels, and
accuracy per group with its worst group. Values are in percent.

- **Macro F1** (DataComp's ``F1-macro_all`` for iWildCam, from wilds' ``F1(average="macro")``): for each class c
  present in the test labels, F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c), and their mean. A class that no test
  sample has gets no term even when it is predicted (its predictions are misses of the true classes): this is
  scikit-learn's ``f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))``.
- **Worst-group accuracy** (wilds' ``metric.py`` / ``grouper.py``, DataComp's ``eval_utils/fairness_eval.py``):
  the groups are the integer codes (>= 0) of one metadata column; each code with at least one sample is a
  group with its top-1 (or top-5) accuracy, and the value is the smallest. A code no sample has is no group.
  Every group's code, size and accuracy are kept (:class:`GroupAccuracies`), so that a tiny group that sets
  the value is visible.

Intervals (95%):

- worst group: simultaneous Clopper-Pearson intervals for the G groups' accuracies, each at level
  1 - 0.05/G (Bonferroni). With probability at least 95% every true accuracy lies in its interval, and then
  the true worst-group accuracy lies between the smallest lower end and the smallest upper end. A bootstrap
  of a minimum is not used: it has no spread for a small group whose samples are all right or all wrong (a
  4-image region with 0/4 correct would get the interval [0, 0]).
- macro F1: a class-stratified bootstrap (each true class's samples resampled within it), drawn as
  multinomial counts of the confusion-matrix cells that occur (:func:`~clip_bench.metrics.intervals.
  stratified_cell_bootstrap`); the same for the paired difference of two models.
- paired worst group: a group-stratified paired bootstrap (the same resampled images for both models),
  used only when no group that can be the worst is too small or all one outcome for a model
  (:func:`paired_worst_group_unsupported` says why otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clip_bench.metrics import intervals as stats
from clip_bench.util.arrays import int64_array
from clip_bench.util.errors import ClipBenchError

#: The smallest group a paired bootstrap of the worst group may rest on (if it can be the worst group).
MIN_BOOTSTRAP_GROUP = 30


def check_group_codes(groups: np.ndarray, n: int) -> np.ndarray:
    """`groups` as (n,) int64 group codes; anything else (another length or dtype, negative codes) is an error."""
    codes = int64_array(groups, 1, n, "group codes")
    if codes.size and codes.min() < 0:
        raise ClipBenchError(f"group codes must be >= 0 (as wilds numbers groups); got {int(codes.min())}.")
    return codes


@dataclass(frozen=True)
class GroupAccuracies:
    """Accuracy per group: the codes with at least one sample (ascending), their sizes and correct samples."""

    codes: np.ndarray
    sizes: np.ndarray
    hits: np.ndarray

    @property
    def values(self) -> np.ndarray:
        """Each group's accuracy in percent."""
        return 100.0 * self.hits / self.sizes

    @property
    def worst_index(self) -> int:
        """The position of the worst group (the smallest code among equal accuracies)."""
        return int(np.argmin(self.hits / self.sizes))

    @property
    def worst(self) -> float:
        """The worst group's accuracy in percent."""
        return float(self.values[self.worst_index])

    @property
    def worst_code(self) -> int:
        return int(self.codes[self.worst_index])

    def records(self) -> list[dict[str, Any]]:
        """One ``{"code", "n", "value"}`` per group, for a result row."""
        return [{"code": int(c), "n": int(n), "value": float(v)}
                for c, n, v in zip(self.codes, self.sizes, self.values)]

    def intervals(self, conf: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Simultaneous (Bonferroni) Clopper-Pearson intervals of every group's accuracy, as proportions."""
        return stats.clopper_pearson(self.hits, self.sizes, 1.0 - (1.0 - conf) / len(self.codes))

    def worst_interval(self, conf: float = 0.95) -> tuple[float, float]:
        """95% interval (percent) of the worst group's accuracy: (smallest lower end, smallest upper end) of
        the simultaneous intervals (see the module docstring)."""
        lo, hi = self.intervals(conf)
        return 100.0 * float(lo.min()), 100.0 * float(hi.min())

    def can_be_worst(self, conf: float = 0.95) -> np.ndarray:
        """Which groups can be the worst within the simultaneous intervals: those whose lower end is at most
        the smallest upper end."""
        lo, hi = self.intervals(conf)
        return lo <= hi.min()


def group_accuracies(hits: np.ndarray, groups: np.ndarray) -> GroupAccuracies:
    """Per-group accuracy of per-sample `hits` (bool), groups by code; codes without samples are left out."""
    hits = np.asarray(hits, dtype=bool)
    codes = check_group_codes(groups, hits.shape[0])
    if not codes.size:
        raise ClipBenchError("no samples to group: a worst-group accuracy needs at least one sample.")
    present, index = np.unique(codes, return_inverse=True)  # codes may be large (ids): never a table up to the max
    sizes = np.bincount(index, minlength=present.size)
    right = np.bincount(index, weights=hits, minlength=present.size).round().astype(np.int64)
    return GroupAccuracies(present.astype(np.int64), sizes, right)


def worst_group_accuracy(hits: np.ndarray, groups: np.ndarray) -> float:
    """The smallest accuracy (percent) over the groups that have samples."""
    return group_accuracies(hits, groups).worst


# ---------------------------------------------------------------------------------------------
# Macro F1


def f1_counts(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes present in `labels`, their true positives, false positives, sizes)."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    classes, index, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    right = preds == labels
    tp = np.bincount(index[right], minlength=classes.size)
    at = np.minimum(np.searchsorted(classes, preds), classes.size - 1)
    counted = ~right & (classes[at] == preds)  # a wrong prediction of a present class: its false positive
    fp = np.bincount(at[counted], minlength=classes.size)
    return classes, tp, fp, sizes


def f1_values(tp: np.ndarray, fp: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """F1 per class (a proportion) = 2·TP / (2·TP + FP + FN) with FN = size - TP; sizes are >= 1."""
    return 2.0 * tp / (tp + fp + sizes)


def macro_f1_from_predictions(labels: np.ndarray, preds: np.ndarray) -> float:
    """Macro F1 (percent) over the classes present in `labels` (scikit-learn's ``labels=np.unique(y_true)``)."""
    if np.asarray(labels).size == 0:
        raise ClipBenchError("no samples: macro F1 needs at least one labelled sample.")
    _, tp, fp, sizes = f1_counts(labels, preds)
    return 100.0 * float(np.mean(f1_values(tp, fp, sizes)))


@dataclass(frozen=True)
class _F1Cells:
    """The distinct (label, prediction of each model) cells of a test set, for bootstraps of macro F1."""

    stratum: np.ndarray  # (J,) each cell's class, as an index into the present classes
    sizes: np.ndarray  # (J,) samples in each cell
    class_sizes: np.ndarray  # (C,) samples per present class (fixed under class-stratified resampling)
    indicators: list[tuple[Any, Any]]  # per model: (J, C) sparse maps cell -> its class's TP, and FP

    def macro_f1(self, counts: np.ndarray, model: int) -> np.ndarray:
        """(b,) macro F1 (percent) of one model for (b, J) resampled cell counts."""
        to_tp, to_fp = self.indicators[model]
        tp, fp = (to_tp.T @ counts.T).T, (to_fp.T @ counts.T).T
        return 100.0 * f1_values(tp, fp, self.class_sizes).mean(axis=1)


def _f1_cells(labels: np.ndarray, *preds: np.ndarray) -> _F1Cells:
    from scipy import sparse

    labels = np.asarray(labels, dtype=np.int64)
    keys, sizes = np.unique(np.column_stack([labels, *preds]).astype(np.int64), axis=0, return_counts=True)
    classes, class_sizes = np.unique(labels, return_counts=True)
    stratum = np.searchsorted(classes, keys[:, 0])
    shape = (keys.shape[0], classes.size)
    indicators = []
    for j in range(1, keys.shape[1]):
        pred = keys[:, j]
        at = np.minimum(np.searchsorted(classes, pred), classes.size - 1)
        right = np.flatnonzero(pred == keys[:, 0])
        wrong = np.flatnonzero((pred != keys[:, 0]) & (classes[at] == pred))  # a present class's false positive
        indicators.append(tuple(sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=shape)
                                for rows, cols in ((right, stratum[right]), (wrong, at[wrong]))))
    return _F1Cells(stratum, sizes, class_sizes, indicators)


def bootstrap_macro_f1(
    labels: np.ndarray, preds: np.ndarray, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified bootstrap replicates of macro F1 (percent)."""
    cells = _f1_cells(labels, preds)
    return stats.stratified_cell_bootstrap(cells.stratum, cells.sizes, lambda c: cells.macro_f1(c, 0), B, seed)


def paired_macro_f1_bootstrap(
    labels: np.ndarray, a_preds: np.ndarray, b_preds: np.ndarray, B: int = stats.DEFAULT_B,
    seed: int = stats.DEFAULT_SEED,
) -> np.ndarray:
    """Class-stratified paired bootstrap replicates (the same resampled images) of macro F1, B minus A (points)."""
    cells = _f1_cells(labels, a_preds, b_preds)
    return stats.stratified_cell_bootstrap(cells.stratum, cells.sizes,
                                           lambda c: cells.macro_f1(c, 1) - cells.macro_f1(c, 0), B, seed)


# ---------------------------------------------------------------------------------------------
# Paired worst group


def paired_worst_group_bootstrap(
    a_hits: np.ndarray, b_hits: np.ndarray, groups: np.ndarray, B: int = stats.DEFAULT_B,
    seed: int = stats.DEFAULT_SEED,
) -> np.ndarray:
    """Group-stratified paired bootstrap replicates of worst-group accuracy, B minus A (points): each group's
    images resampled within it, the same images for both models."""
    a, b = np.asarray(a_hits, dtype=np.int64), np.asarray(b_hits, dtype=np.int64)
    codes = check_group_codes(groups, a.shape[0])
    counts, sizes = stats.stratified_category_bootstrap(2 * a + b, codes, 4, B, seed)  # categories (a, b) = 2a + b
    acc_a = (counts[:, :, 2] + counts[:, :, 3]) / sizes
    acc_b = (counts[:, :, 1] + counts[:, :, 3]) / sizes
    return 100.0 * (acc_b.min(axis=1) - acc_a.min(axis=1))


def paired_worst_group_unsupported(a_hits: np.ndarray, b_hits: np.ndarray, groups: np.ndarray) -> str | None:
    """Why a paired bootstrap cannot support an interval for the difference of two worst-group accuracies, or None.

    A group that can be the worst of either model (:meth:`GroupAccuracies.can_be_worst`) must have at least
    :data:`MIN_BOOTSTRAP_GROUP` images and not all one outcome for a model: the bootstrap treats a group's
    observed accuracy as its truth, which for a handful of images, or all right or all wrong, hides its
    uncertainty (the resampled group never changes).
    """
    tables = [group_accuracies(h, groups) for h in (a_hits, b_hits)]  # the same groups, in the same order
    for i in np.flatnonzero(tables[0].can_be_worst() | tables[1].can_be_worst()):
        code, n = int(tables[0].codes[i]), int(tables[0].sizes[i])
        if n < MIN_BOOTSTRAP_GROUP:
            return (f"group {code} ({_images(n)}) can be the worst group, too few for a paired bootstrap "
                    f"(at least {MIN_BOOTSTRAP_GROUP} needed)")
        if any(t.hits[i] in (0, n) for t in tables):
            return (f"group {code} ({_images(n)}) can be the worst group and a model gets all its images right or "
                    "all wrong there, so a bootstrap has no spread in it")
    return None


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"
