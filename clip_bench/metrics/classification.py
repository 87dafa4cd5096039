"""Classification metrics as pure functions of (scores, targets). Every value is in percent."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from clip_bench.metrics.groups import GroupAccuracies, group_accuracies, macro_f1_from_predictions
from clip_bench.metrics.winogavil import GROUPS as JACCARD_GROUPS
from clip_bench.util.errors import ClipBenchError, UnknownNameError


def topk_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each sample's target is among its k highest scores. A target scored -inf (a class the
    probe never saw: log-probability 0) is never a hit, even when fewer than k classes were seen and
    the tie among the -inf columns would put it in the top k."""
    k = min(k, scores.shape[1])
    if k == 1:
        hits = scores.argmax(axis=1) == targets
    else:
        top = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
        hits = np.any(top == targets[:, None], axis=1)
    known = (targets >= 0) & (targets < scores.shape[1])  # a label without a score column is never a hit
    return hits & known & (scores[np.arange(len(targets)), np.where(known, targets, 0)] > -np.inf)


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, k: int = 1) -> float:
    """Share of samples whose target is among the k highest scores (:func:`topk_hits`)."""
    return 100.0 * float(np.mean(topk_hits(scores, targets, k)))


def top1(scores: np.ndarray, targets: np.ndarray) -> float:
    return 100.0 * float(np.mean(scores.argmax(axis=1) == targets))


def mean_per_class_recall(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes present in `targets` of that class's recall."""
    pred = scores.argmax(axis=1)
    recalls = [np.mean(pred[targets == c] == c) for c in np.unique(targets)]
    return 100.0 * float(np.mean(recalls))


def mean_top1_top5(scores: np.ndarray, targets: np.ndarray) -> float:
    """Kinetics-700's metric in the CLIP paper: the mean of top-1 and top-5."""
    return (top1(scores, targets) + topk_accuracy(scores, targets, 5)) / 2.0


# Per-example shares: for a metric that is a sum over examples, ``metric.per_example(scores, targets)``
# gives each example's share (they sum to the metric). Two C scored on the same examples then differ
# only on the examples whose shares differ, which the C search uses to tell a real difference from
# noise (sweep.paired_se). mAP and ROC AUC rank examples against each other and have none.

def _top1_shares(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return 100.0 * (scores.argmax(axis=1) == targets) / len(targets)


def _per_class_recall_shares(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    classes, index, counts = np.unique(targets, return_inverse=True, return_counts=True)
    return 100.0 * (scores.argmax(axis=1) == targets) / (len(classes) * counts[index])


def _top1_top5_shares(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return (_top1_shares(scores, targets) + 100.0 * topk_hits(scores, targets, 5) / len(targets)) / 2.0


top1.per_example = _top1_shares
mean_per_class_recall.per_example = _per_class_recall_shares
mean_top1_top5.per_example = _top1_top5_shares


def macro_f1(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro F1 of the top-1 predictions over the classes present in `targets` (DataComp's iWildCam metric;
    ``clip_bench.metrics.groups``)."""
    return macro_f1_from_predictions(targets, scores.argmax(axis=1))


#: Metrics of one group per sample (the task's ``group_by`` metadata column): name -> the k of its top-k hits.
GROUP_METRICS = {"worst_group_top1": 1, "worst_group_top5": 5}
#: The row metrics that get per-group values (``extra.groups``) when a task groups its samples.
GROUPED_ROW_METRICS = {"top1": 1, "top5": 5, **GROUP_METRICS}


def group_table(metric: str, scores: np.ndarray, targets: np.ndarray, groups: np.ndarray) -> GroupAccuracies | None:
    """Top-k accuracy per group for a metric of :data:`GROUPED_ROW_METRICS` (else None)."""
    k = GROUPED_ROW_METRICS.get(metric)
    return None if k is None else group_accuracies(topk_hits(scores, targets, k), groups)


def _needs_groups(name: str) -> ClipBenchError:
    return ClipBenchError(f"metric {name!r} scores each image's group, which only a zero-shot run of a task with "
                          "'group_by' (a metadata column) provides; use another metric for this protocol or task.")


def worst_group_top1(scores: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The smallest top-1 accuracy over the groups (codes of one metadata column) that have images."""
    if groups is None:
        raise _needs_groups("worst_group_top1")
    return group_accuracies(topk_hits(scores, targets, 1), groups).worst


def worst_group_top5(scores: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The smallest top-5 accuracy over the groups that have images (Dollar Street's metric in DataComp)."""
    if groups is None:
        raise _needs_groups("worst_group_top5")
    return group_accuracies(topk_hits(scores, targets, 5), groups).worst


def average_precision_11point(scores: np.ndarray, positives: np.ndarray) -> float:
    """PASCAL VOC 2007's 11-point interpolated AP for one class (0-1).

    `positives` is 1 (positive), 0 (negative) or -1 (ignored: the devkit's "difficult" images, which
    count neither as hits nor as false positives)."""
    keep = positives >= 0
    scores, positives = scores[keep], positives[keep]
    order = np.argsort(-scores, kind="stable")
    pos = positives[order] > 0
    tp = np.cumsum(pos)
    fp = np.cumsum(~pos)
    n_pos = max(int(pos.sum()), 1)
    recall = tp / n_pos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.linspace(0, 1, 11):
        p = precision[recall >= t]
        ap += (p.max() if p.size else 0.0) / 11.0
    return float(ap)


def map_11point(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with a positive of 11-point AP; `targets` is an (N, C) matrix of 1 (positive),
    0 (negative) and -1 (ignored for that class, as VOC's difficult-only images)."""
    aps = [average_precision_11point(scores[:, c], targets[:, c])
           for c in range(targets.shape[1]) if (targets[:, c] > 0).any()]
    return 100.0 * float(np.mean(aps))


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Binary ROC AUC with score = logit(class 1) - logit(class 0)."""
    from sklearn.metrics import roc_auc_score

    if scores.ndim == 2 and scores.shape[1] != 2:
        raise ClipBenchError(f"ROC AUC is defined for binary tasks; these scores have {scores.shape[1]} classes "
                             "(give the task 2 classes, or another metric)")
    margin = scores[:, 1] - scores[:, 0] if scores.ndim == 2 else scores
    return 100.0 * float(roc_auc_score(targets, margin))


MAIN_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": top1,
    "mean_per_class_recall": mean_per_class_recall,
    "map_11point": map_11point,
    "roc_auc": roc_auc,
    "mean_top1_top5": mean_top1_top5,
    "macro_f1": macro_f1,
    "worst_group_top1": worst_group_top1,
    "worst_group_top5": worst_group_top5,
}


#: Names a registered metric may not take: the built-in metrics and the other metric names rows carry
#: (``top1``/``top5`` rows, retrieval's ``mean_recall``, WinoGAViL's Jaccard means), whose intervals and outcomes
#: are defined in the results.
RESERVED_METRIC_NAMES = frozenset({*MAIN_METRICS, "top1", "top5", "mean_recall", *JACCARD_GROUPS})
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_metric(
    name: str,
    fn: Callable[[np.ndarray, np.ndarray], float],
    per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    replace: bool = False,
) -> None:
    """Add a main metric that a task file can name (``metric: <name>``), for single-label tasks.

    `fn(scores, targets)` takes (N, C) class scores and (N,) class indices and returns the metric in
    percent (higher is better: the linear probe's C search maximises it). `per_example`, if given, returns
    each example's share of the value (N,) (they sum to it), which lets the C search tell two C apart
    on the same examples (see ``clip_bench.probe``); it is set as ``fn.per_example``.

    Rows of a registered metric carry no 95% interval (``ci_low``, ``ci_high`` and ``ci_method`` stay
    empty) and no per-sample outcomes: the results know how to resample only the built-in metrics, so
    ``compare`` cannot test them either. A metric is not part of a row's identity beyond its name: when
    its code changes, bump the ``version`` of the tasks that use it.
    """
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"a metric name is lower-case letters, digits and '_', starting with a letter; got {name!r}")
    if name in RESERVED_METRIC_NAMES:
        raise ValueError(f"{name!r} is a built-in metric name; register the metric under another name")
    if name in MAIN_METRICS and not replace:
        raise ValueError(f"a metric named {name!r} is already registered (pass replace=True to replace it)")
    if not callable(fn) or (per_example is not None and not callable(per_example)):
        raise ValueError(f"metric {name!r}: fn (and per_example, if given) must be functions of (scores, targets)")
    if per_example is not None:
        fn.per_example = per_example  # type: ignore[attr-defined]
    MAIN_METRICS[name] = fn


def unregister_metric(name: str) -> None:
    """Remove a metric added with :func:`register_metric` (the built-in ones stay)."""
    if name in RESERVED_METRIC_NAMES:
        raise ValueError(f"the built-in metric {name!r} cannot be removed")
    MAIN_METRICS.pop(name, None)


def main_metric_names() -> list[str]:
    """The names a task's ``metric:`` may take for classification: the built-in ones, then the registered."""
    return list(MAIN_METRICS)


def main_metric(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The main metric called `name` (built-in or registered)."""
    if name not in MAIN_METRICS:
        raise UnknownNameError("metric", name, MAIN_METRICS)
    return MAIN_METRICS[name]


def score(name: str, scores: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The named main metric in percent (`groups`: each sample's group code, for :data:`GROUP_METRICS`)."""
    if name in GROUP_METRICS:
        return MAIN_METRICS[name](scores, targets, groups)  # type: ignore[call-arg]
    return main_metric(name)(scores, targets)


def main_metric_key(main: str) -> str:
    """The row name of a task's main metric (``accuracy`` is reported as ``top1``)."""
    return "top1" if main == "accuracy" else main


def all_metrics(
    scores: np.ndarray, targets: np.ndarray, main: str, groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric a run reports: top-1, top-5 (>5 classes), mean per-class recall, and the main one
    (`groups`: each sample's group code, which a :data:`GROUP_METRICS` main metric needs)."""
    out: dict[str, float] = {}
    if targets.ndim == 1:
        out["top1"] = top1(scores, targets)
        if scores.shape[1] > 5:
            out["top5"] = topk_accuracy(scores, targets, 5)
        out["mean_per_class_recall"] = mean_per_class_recall(scores, targets)
    key = main_metric_key(main)
    if key not in out:
        out[key] = score(main, scores, targets, groups)
    return out
