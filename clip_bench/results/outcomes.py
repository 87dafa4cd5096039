"""Per-sample outcomes behind each result row, and the row's 95% interval computed from them.

Each row with a metric value gets ``ci_low`` / ``ci_high`` (percent, like ``value``), ``ci_method``
and ``outcomes``: the path, relative to the output folder, of ``outcomes/<id>.npz`` holding only
what that metric needs:

=====================  =============================================================
metric                 stored arrays
=====================  =============================================================
top1, top5             ``correct`` (packed bits)
mean_per_class_recall  ``correct`` (packed bits), ``labels`` (smallest integer type)
mean_top1_top5         ``top1``, ``top5`` (packed bits), ``labels``
map_11point            ``scores`` (N, C) float32, ``targets`` (N, C multi-hot, packed bits)
roc_auc                ``scores`` (N,) margins (float64), ``labels``
macro_f1               ``preds`` (top-1 predictions), ``labels`` (smallest integer types)
worst_group_top1/top5  ``top1`` or ``top5`` (packed bits), ``groups`` (each sample's group code)
text_retrieval_r@k     ``hits`` (packed bits, one per image query)
image_retrieval_r@k    ``hits`` (packed bits, one per caption query), ``groups`` (each caption's image;
                       ``group_sizes``, captions per image, when captions are in image order)
mean_recall,           ``ranks_i2t``, ``ranks_t2i`` (best-match ranks clipped at 10, uint8), ``groups``
mean_recall@1
jaccard_10_12, ...     ``scores`` (one Jaccard index, 0-1, per WinoGAViL instance of the row's group; float64)
=====================  =============================================================

plus ``value`` (the row's value, recomputed from the arrays when written and checked when read)
and ``sample_hash``: SHA-256 of the test labels in sample order and their shape and of the test data's
content fingerprint (``clip_bench.cache.data_fingerprint``), which ``clip-bench compare`` requires to match
between two rows (for retrieval rows: of the image indices, the captions before any template, the
caption→image pairing and the data fingerprint; for worst-group rows also of the group codes; for WinoGAViL
rows: of the instances' cues, candidates and associations and the data fingerprint). ImageNet (50,000 images):
6.1 KiB per top-1 or top-5 row, about 104 KiB for mean per-class recall before compression (see
``benchmarks/RESULTS.md``).

The file is named by the row's ``result_id`` when it has one, else by :func:`fallback_id`, the id
:func:`clip_bench.results.rows.result_id` computes from the row's fields (everything that determines its value).
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.metrics import groups as grouped
from clip_bench.metrics import intervals as stats
from clip_bench.metrics.classification import GROUP_METRICS, topk_hits
from clip_bench.metrics.retrieval import KS, RetrievalRanks, parse_metric
from clip_bench.metrics.winogavil import GROUPS as JACCARD_GROUPS
from clip_bench.metrics.winogavil import group_mask
from clip_bench.results.rows import field_of, result_id
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import atomic_path, probe_writable_dir, sha256_bytes, sha256_json

OUTCOMES_DIR = "outcomes"
FORMAT = 1
BINARY_METRICS = ("top1", "top5")
#: Metrics the rows can carry and the interval method of each.
CI_METHODS = {
    "top1": "wilson",
    "top5": "wilson",
    "mean_per_class_recall": "bootstrap-stratified",
    "mean_top1_top5": "bootstrap-stratified",
    "map_11point": "bootstrap",
    "roc_auc": "bootstrap-stratified",
    "macro_f1": "bootstrap-stratified",
    "worst_group_top1": "clopper-pearson-bonferroni",
    "worst_group_top5": "clopper-pearson-bonferroni",
    **{m: "bootstrap" for m in JACCARD_GROUPS},  # WinoGAViL: instances resampled
}
#: Retrieval rows (metric names carry k): image→text recall@k is a proportion over independent image
#: queries; text→image recall@k and the summaries (mean_recall, mean_recall@1) are resampled by image (captions of
#: an image are correlated).
RETRIEVAL_CI_METHODS = {"i2t": "wilson", "t2i": "bootstrap-cluster", "mean": "bootstrap-cluster"}
_RANK_CLIP = max(KS)  # stored ranks: min(rank, 10) decides every hit at k <= 10
_VALUE_TOL = 1e-6  # percent points


class OutcomeError(RuntimeError):
    """Stored outcomes that do not reproduce their row (an internal inconsistency, never silently used)."""


class DamagedOutcomesError(OutcomeError):
    """An outcomes file that cannot be read, or whose evidence does not give its own value: rebuild it."""


class NoIntervalError(OutcomeError):
    """Outcomes on which no 95% interval can be supported (the row then has none; the message says why)."""


class OutcomesWriteError(ClipBenchError):
    """An outcomes file that could not be written (a full disk, a read-only folder, a file where a folder belongs)."""


#: A row's outcomes file is named by its id: hex digits only, so a row read from a file never names a path.
_ID = re.compile(r"[0-9a-f]{24}")
_RELPATH = re.compile(rf"{OUTCOMES_DIR}/[0-9a-f]{{24}}\.npz")
_REBUILD = ("`clip-bench compare` rebuilds it from the feature and text caches (zero-shot rows), "
            "or run the evaluation again")
#: What reading a damaged .npz raises (a torn or empty zip, a corrupt stream, arrays of the wrong kind).
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile, zlib.error)


def has_outcomes(metric: str | None) -> bool:
    """Whether rows of `metric` get per-sample outcomes and an interval: the built-in metrics (:data:`CI_METHODS`)
    and retrieval's. A metric added with ``clip_bench.metrics.classification.register_metric`` does not: its rows
    carry no interval, and ``compare`` has no paired test for it."""
    return metric in CI_METHODS or parse_metric(metric) is not None


# ---------------------------------------------------------------------------------------------
# Identity


def fallback_id(row: dict[str, Any]) -> str:
    """The id of a row that carries no ``result_id`` (written before rows did, or by hand): the one
    :func:`clip_bench.results.rows.result_id` computes from its fields."""
    return result_id(row)


def outcome_id(row: dict[str, Any]) -> str:
    """The name (without ``.npz``) of a row's outcomes file: its ``result_id``, else :func:`fallback_id`.

    A ``result_id`` that is not 24 hex digits (a results file edited or damaged) is an :class:`OutcomeError`:
    text read from a file never names a path.
    """
    rid = row.get("result_id")
    if not rid:
        return fallback_id(row)
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise OutcomeError(f"{_who(row)}: its result_id {str(rid)[:60]!r} is not a result id (24 hex digits), so it "
                           "names no outcomes file; the results file was edited or damaged (run the evaluation again)")
    return rid


def outcome_relpath(row: dict[str, Any]) -> str:
    """Where the row's outcomes are, relative to its output folder (the row's ``outcomes`` field if set).

    The ``outcomes`` field must be ``outcomes/<24 hex digits>.npz`` (as written), else :class:`OutcomeError`.
    """
    rel = row.get("outcomes")
    if not rel:
        return f"{OUTCOMES_DIR}/{outcome_id(row)}.npz"
    if not isinstance(rel, str) or not _RELPATH.fullmatch(rel):
        raise OutcomeError(f"{_who(row)}: its outcomes path {str(rel)[:60]!r} is not an outcomes file "
                           f"({OUTCOMES_DIR}/<24 hex digits>.npz); the results file was edited or damaged "
                           "(run the evaluation again)")
    return rel


def _who(row: dict[str, Any]) -> str:
    return f"the {row.get('metric')} row of {row.get('model')} on {row.get('task')}"


def sample_hash(labels: np.ndarray, data_fingerprint: str | None = None) -> str:
    """SHA-256 of the test labels in sample order (and their shape) and of the data's content fingerprint
    (``clip_bench.cache.data_fingerprint``; rows without one hash their labels alone, as before): the identity
    of a test sample set. Other images with the same labels are other samples."""
    labels = np.asarray(labels)
    canon = labels.astype(np.uint8) if labels.ndim == 2 else labels.astype(np.int64)
    header = f"clip-bench-samples-v1:{canon.shape}" + (f":data:{data_fingerprint}" if data_fingerprint else "")
    return sha256_bytes(header.encode() + np.ascontiguousarray(canon).tobytes())


def grouped_sample_hash(sample: str, groups: np.ndarray) -> str:
    """The sample hash of a worst-group row: the test samples' (:func:`sample_hash`) and their group codes, so
    rows grouped another way are never paired."""
    codes = np.ascontiguousarray(np.asarray(groups, dtype=np.int64))
    return sha256_bytes(f"clip-bench-groups-v1:{sample}:{codes.size}:".encode() + codes.tobytes())


# ---------------------------------------------------------------------------------------------
# Outcomes of one row


def retrieval_sample_hash(
    image_ids: np.ndarray, captions: Sequence[str], text_image: np.ndarray, data_fingerprint: str | None = None,
) -> str:
    """SHA-256 identifying a retrieval test set: the images (dataset indices), the captions (before any
    template), which image each caption belongs to, and the content fingerprint of the data (the image
    files; rows without one hash as before). ``compare`` requires it to match."""
    ids = np.ascontiguousarray(np.asarray(image_ids, dtype=np.int64))
    owner = np.ascontiguousarray(np.asarray(text_image, dtype=np.int64))
    header = f"clip-bench-retrieval-samples-v1:{ids.size}:{owner.size}:{sha256_json(list(captions))}"
    header = (header if data_fingerprint is None else f"{header}:data:{data_fingerprint}").encode()
    return sha256_bytes(header + ids.tobytes() + owner.tobytes())


@dataclass
class Outcomes:
    """The per-sample evidence behind one metric value."""

    metric: str
    n: int
    sample_hash: str
    value: float
    labels: np.ndarray | None = None  # (n,) class indices, or (n, C) multi-hot for map_11point
    top1: np.ndarray | None = None  # (n,) bool
    top5: np.ndarray | None = None  # (n,) bool
    scores: np.ndarray | None = None  # (n,) margins (roc_auc) or (n, C) scores (map_11point)
    hits: np.ndarray | None = None  # (n,) bool: retrieval recall@k, one per query
    groups: np.ndarray | None = None  # (n_captions,) the image of each caption query (retrieval); group codes
    preds: np.ndarray | None = None  # (n,) top-1 predicted classes (macro_f1)
    ranks_i2t: np.ndarray | None = None  # (n_images,) best-true-match rank, clipped at 10 (mean_recall)
    ranks_t2i: np.ndarray | None = None  # (n_captions,) likewise

    @property
    def retrieval(self) -> tuple[str, int] | None:
        """("i2t" | "t2i", k), or ("mean", k) for a summary, for retrieval rows; None otherwise."""
        return parse_metric(self.metric)

    @property
    def correct(self) -> np.ndarray:
        """Per-sample correctness for the accuracy metrics (top-5 for ``top5`` and ``worst_group_top5``, else
        top-1; retrieval: hits)."""
        top5 = self.metric in ("top5", "worst_group_top5")
        arr = self.hits if self.hits is not None else self.top5 if top5 else self.top1
        if arr is None:
            raise OutcomeError(f"outcomes for {self.metric} hold no per-sample correctness")
        return arr

    def group_table(self) -> grouped.GroupAccuracies:
        """Worst-group rows: each group's code, size and correct samples."""
        if self.metric not in GROUP_METRICS or self.groups is None:
            raise OutcomeError(f"outcomes for {self.metric} hold no groups")
        try:
            return grouped.group_accuracies(self.correct, self.groups)
        except ClipBenchError as exc:  # stored codes that are not one per sample: damaged evidence
            raise OutcomeError(str(exc)) from None

    def recompute(self) -> float:
        """The metric value (percent) from the stored arrays alone."""
        m = self.metric
        if m in BINARY_METRICS:
            return 100.0 * float(np.mean(self.correct))
        if m in GROUP_METRICS:
            return self.group_table().worst
        if m == "macro_f1":
            return grouped.macro_f1_from_predictions(self.labels, self.preds)
        if self.retrieval is not None:
            if self.retrieval[0] == "mean":
                return RetrievalRanks(self.ranks_i2t, self.ranks_t2i).summary(m)
            return 100.0 * float(np.mean(self.correct))
        if m in JACCARD_GROUPS:
            return 100.0 * float(np.mean(self.scores))
        if m == "mean_per_class_recall":
            _, inv = np.unique(self.labels, return_inverse=True)
            return 100.0 * float(np.mean(np.bincount(inv, weights=self.top1) / np.bincount(inv)))
        if m == "mean_top1_top5":
            return 50.0 * (float(np.mean(self.top1)) + float(np.mean(self.top5)))
        if m == "map_11point":
            return float(stats.weighted_map_11point(self.scores, self.labels, np.ones((1, self.n)))[0])
        if m == "roc_auc":
            return float(stats.weighted_roc_auc(self.scores, self.labels, np.ones((1, self.n)))[0])
        raise OutcomeError(f"no per-sample outcomes are defined for metric {m!r}")

    def interval(self, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED) -> tuple[float, float, str]:
        """(ci_low, ci_high, ci_method): the 95% interval in percent."""
        m = self.metric
        if m in BINARY_METRICS or (self.retrieval or ("",))[0] == "i2t":
            lo, hi = stats.wilson(int(np.sum(self.correct)), self.n)
            return 100.0 * float(lo), 100.0 * float(hi), "wilson"
        if self.retrieval is not None:
            return self._retrieval_interval(B, seed)
        if m in GROUP_METRICS:
            lo, hi = self.group_table().worst_interval()
            return lo, hi, CI_METHODS[m]
        if m in JACCARD_GROUPS and self.recompute() in (0.0, 100.0):  # every instance 0 (or 1): no spread
            lo, hi = stats.wilson(round(self.recompute() / 100.0 * self.n), self.n)
            return 100.0 * float(lo), 100.0 * float(hi), "wilson-instances"
        reps = self.bootstrap(B, seed)
        if m == "macro_f1" and np.ptp(reps) == 0:
            raise NoIntervalError("every class's predictions are all one way, so a class-stratified bootstrap has no "
                                  "spread: no interval is supported")
        lo, hi = stats.percentile_interval(reps)
        return lo, hi, f"{CI_METHODS[m]}-{B}"

    def bootstrap(self, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED) -> np.ndarray:
        """Bootstrap replicates of the metric (percent)."""
        m = self.metric
        if m == "mean_per_class_recall":
            return stats.bootstrap_mean_per_class_recall(self.top1, self.labels, B, seed)
        if m == "mean_top1_top5":
            return stats.bootstrap_mean_top1_top5(self.top1, self.top5, self.labels, B, seed)
        if m == "map_11point":
            return stats.bootstrap_map_11point(self.scores, self.labels, B, seed)
        if m == "roc_auc":
            return stats.bootstrap_roc_auc(self.scores, self.labels, B, seed)
        if m == "macro_f1":
            return grouped.bootstrap_macro_f1(self.labels, self.preds, B, seed)
        if m in BINARY_METRICS:
            k = int(np.sum(self.correct))
            return 100.0 * np.random.default_rng(seed).binomial(self.n, k / self.n, size=B) / self.n
        if self.retrieval is not None or m in JACCARD_GROUPS:
            sums, sizes = self.cluster_sums()
            return 100.0 * stats.cluster_bootstrap_ratios(sums, sizes, B, seed).mean(axis=1)
        raise OutcomeError(f"no bootstrap is defined for metric {m!r}")

    def cluster_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval rows: per-image (hits, queries), shape (n_images, M) each; M = 1, or 2 × the summary's k
        (6 for mean_recall, 2 for mean_recall@1). WinoGAViL rows: per instance (Jaccard index, 1), M = 1.

        The row's value is 100 × the mean over the M columns of sum(hits) / sum(queries).
        """
        if self.metric in JACCARD_GROUPS:
            jac = np.asarray(self.scores, dtype=np.float64)[:, None]
            return jac, np.ones_like(jac)
        kind, k = self.retrieval or ("", 0)
        if kind == "i2t":
            hits = np.asarray(self.hits, dtype=np.float64)[:, None]
            return hits, np.ones_like(hits)
        if kind == "t2i":
            groups = np.asarray(self.groups, dtype=np.int64)
            g = int(groups.max()) + 1
            return (np.bincount(groups, weights=self.hits, minlength=g)[:, None],
                    np.bincount(groups, minlength=g).astype(np.float64)[:, None])
        if kind == "mean":
            groups = np.asarray(self.groups, dtype=np.int64)
            g = len(self.ranks_i2t)
            n_caps = np.bincount(groups, minlength=g).astype(np.float64)
            ks = KS if k == 0 else (k,)  # the summary's recalls (metrics.retrieval.summary_ks)
            sums = [np.asarray(self.ranks_i2t < j, dtype=np.float64) for j in ks]
            sums += [np.bincount(groups, weights=self.ranks_t2i < j, minlength=g) for j in ks]
            sizes = [np.ones(g)] * len(ks) + [n_caps] * len(ks)
            return np.stack(sums, axis=1), np.stack(sizes, axis=1)
        raise OutcomeError(f"{self.metric} is not a retrieval metric")

    def _retrieval_interval(self, B: int, seed: int) -> tuple[float, float, str]:
        """Cluster-bootstrap interval; when every query has the same outcome the bootstrap has no spread,
        and the interval is Wilson's with the number of images as the sample size (conservative)."""
        value = self.recompute()
        if value in (0.0, 100.0):
            n_images = len(self.ranks_i2t) if self.ranks_i2t is not None else int(np.max(self.groups)) + 1
            lo, hi = stats.wilson(round(value / 100.0 * n_images), n_images)
            return 100.0 * float(lo), 100.0 * float(hi), "wilson-images"
        lo, hi = stats.percentile_interval(self.bootstrap(B, seed))
        return lo, hi, f"{RETRIEVAL_CI_METHODS[self.retrieval[0]]}-{B}"


def outcomes_for(
    metric: str, scores: np.ndarray, targets: np.ndarray, value: float, memo: dict[str, Any] | None = None,
    data_fingerprint: str | None = None, groups: np.ndarray | None = None,
) -> Outcomes:
    """The outcomes a row with `metric` needs, from the scores and targets its value was computed on
    (`data_fingerprint`: the content of the test data, part of the sample hash; `groups`: each sample's group
    code, which worst-group metrics need).

    `memo` (one dict per (scores, targets)) shares the per-sample work between the rows of one evaluation.
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    memo = {} if memo is None else memo

    def top1() -> np.ndarray:
        if "top1" not in memo:
            memo["top1"] = topk_hits(scores, targets, 1)
        return memo["top1"]

    def top5() -> np.ndarray:
        if "top5" not in memo:
            memo["top5"] = topk_hits(scores, targets, 5)
        return memo["top5"]

    if ("hash", data_fingerprint) not in memo:
        memo["hash", data_fingerprint] = sample_hash(targets, data_fingerprint)
    common = dict(metric=metric, n=int(targets.shape[0]), value=float(value),
                  sample_hash=memo["hash", data_fingerprint])
    if metric == "top1":
        return Outcomes(**common, top1=top1())
    if metric == "top5":
        return Outcomes(**common, top5=top5())
    if metric == "mean_per_class_recall":
        return Outcomes(**common, top1=top1(), labels=targets)
    if metric == "mean_top1_top5":
        return Outcomes(**common, top1=top1(), top5=top5(), labels=targets)
    if metric == "map_11point":
        # 1 positive, 0 negative, -1 ignored for that class (VOC's difficult-only images), as the metric reads them
        return Outcomes(**common, scores=_compact_float(scores), labels=np.sign(targets.astype(np.int8)))
    if metric == "roc_auc":
        margin = scores[:, 1] - scores[:, 0] if scores.ndim == 2 else scores
        return Outcomes(**common, scores=np.asarray(margin, dtype=np.float64), labels=targets)
    if metric == "macro_f1":
        return Outcomes(**common, preds=scores.argmax(axis=1), labels=targets)
    if metric in GROUP_METRICS:
        if groups is None:
            raise OutcomeError(f"{metric} outcomes need each sample's group code")
        codes = grouped.check_group_codes(groups, targets.shape[0])
        common["sample_hash"] = grouped_sample_hash(common["sample_hash"], codes)
        return Outcomes(**common, groups=codes, **({"top5": top5()} if metric == "worst_group_top5" else
                                                   {"top1": top1()}))
    raise OutcomeError(f"no per-sample outcomes are defined for metric {metric!r}")


def retrieval_outcomes(
    metric: str, ranks: RetrievalRanks, text_image: np.ndarray, value: float, sample: str,
) -> Outcomes:
    """The outcomes of one retrieval row (see the table in the module docstring)."""
    kind, k = parse_metric(metric) or ("", 0)
    groups = _small_int(np.asarray(text_image, dtype=np.int64))
    n_img, n_txt = len(ranks.image_to_text), len(ranks.text_to_image)
    common = dict(metric=metric, value=float(value), sample_hash=sample)
    if kind == "i2t":
        return Outcomes(**common, n=n_img, hits=ranks.image_to_text < k)
    if kind == "t2i":
        return Outcomes(**common, n=n_txt, hits=ranks.text_to_image < k, groups=groups)
    if kind == "mean":
        return Outcomes(**common, n=n_img + n_txt, groups=groups,
                        ranks_i2t=np.minimum(ranks.image_to_text, _RANK_CLIP).astype(np.uint8),
                        ranks_t2i=np.minimum(ranks.text_to_image, _RANK_CLIP).astype(np.uint8))
    raise OutcomeError(f"{metric!r} is not a retrieval metric")


def winogavil_sample_hash(
    cues: Sequence[str], candidates: Sequence[Sequence[str]], associations: Sequence[Sequence[str]],
    data_fingerprint: str | None = None,
) -> str:
    """SHA-256 identifying the WinoGAViL instances a row was scored on (in order): their cues, candidates and
    associations, and the content fingerprint of the data. ``compare`` requires it to match."""
    body = sha256_json({"cues": list(cues), "candidates": [list(c) for c in candidates],
                        "associations": [list(a) for a in associations]})
    return sha256_bytes(f"clip-bench-winogavil-samples-v1:{len(cues)}:{body}:data:{data_fingerprint}".encode())


def winogavil_outcomes(metric: str, jaccards: np.ndarray, n_candidates: np.ndarray, value: float,
                       sample: str) -> Outcomes:
    """The outcomes of one WinoGAViL row: the Jaccard index of each instance of its group."""
    keep = np.asarray(jaccards, dtype=np.float64)[group_mask(metric, n_candidates)]
    return Outcomes(metric=metric, n=int(keep.size), value=float(value), sample_hash=sample, scores=keep)


def attach_winogavil_outcomes(
    rows: list[dict[str, Any]], jaccards: np.ndarray, n_candidates: np.ndarray, sample: str,
    output_dir: str | Path | None, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """:func:`attach_outcomes` for the rows of one WinoGAViL evaluation (each instance's Jaccard index and
    candidate count, instance-set hash `sample` from :func:`winogavil_sample_hash`)."""
    def outcomes_of(row: dict[str, Any]) -> Outcomes | None:
        if row["metric"] not in JACCARD_GROUPS:
            return None
        return winogavil_outcomes(row["metric"], jaccards, n_candidates, row["value"], sample)

    return _attach_rows(rows, outcomes_of, "per-instance", output_dir, B, seed)


def paired_retrieval_bootstrap(
    oa: Outcomes, ob: Outcomes, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED,
) -> np.ndarray:
    """Paired cluster-bootstrap replicates of A - B (points) for a retrieval metric: the same resampled
    images (each with all its caption queries) for both models; for a WinoGAViL row, the same resampled
    instances."""
    (sa, sizes), (sb, sizes_b) = oa.cluster_sums(), ob.cluster_sums()
    if sa.shape != sb.shape or not np.array_equal(sizes, sizes_b):
        raise OutcomeError(f"{oa.metric}: the two outcomes are not on the same queries")
    return 100.0 * stats.cluster_bootstrap_ratios(sa - sb, sizes, B, seed).mean(axis=1)


def _compact_float(x: np.ndarray) -> np.ndarray:
    """float32 when that loses nothing, else float64 (so the stored scores rank exactly as scored)."""
    x32 = np.asarray(x, dtype=np.float32)
    return x32 if np.array_equal(x32, x) else np.asarray(x, dtype=np.float64)


def _small_int(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    low = int(labels.min()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.int32):
        if low >= np.iinfo(dtype).min and top <= np.iinfo(dtype).max:
            return labels.astype(dtype)
    return labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Storage


def save(out: Outcomes, path: str | Path) -> Path:
    """Write `out` to a compressed ``.npz`` atomically (bits packed, labels in the smallest integer type)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "metric": np.array(out.metric), "n": np.array(out.n),
        "sample_hash": np.array(out.sample_hash), "value": np.array(out.value),
    }
    for name in ("top1", "top5", "hits"):
        if getattr(out, name) is not None:
            arrays[name] = np.packbits(np.asarray(getattr(out, name), dtype=bool))
    if out.groups is not None:
        groups = np.asarray(out.groups)
        if groups.size and np.all(groups[1:] >= groups[:-1]) and groups[0] == 0 and groups[-1] < groups.size:
            arrays["group_sizes"] = _small_int(np.bincount(groups))  # captions in image order: run lengths
        else:
            arrays["groups"] = _small_int(groups)
    for name in ("ranks_i2t", "ranks_t2i"):
        if getattr(out, name) is not None:
            arrays[name] = np.asarray(getattr(out, name), dtype=np.uint8)
    if out.labels is not None:
        labels = np.asarray(out.labels)
        if labels.ndim == 2:
            arrays["targets"] = np.packbits(labels > 0, axis=1)
            arrays["n_classes"] = np.array(labels.shape[1])
            if (labels < 0).any():  # entries the metric ignores (-1)
                arrays["ignored"] = np.packbits(labels < 0, axis=1)
        else:
            arrays["labels"] = _small_int(labels)
    if out.scores is not None:
        arrays["scores"] = out.scores
    if out.preds is not None:
        arrays["preds"] = _small_int(np.asarray(out.preds))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def load(path: str | Path) -> Outcomes:
    """Read an outcomes file written by :func:`save` (nothing is unpickled)."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != FORMAT:
            raise OutcomeError(f"{path}: outcomes format {int(z['format'])}, expected {FORMAT}")
        n = int(z["n"])
        kw: dict[str, Any] = dict(metric=str(z["metric"]), n=n, sample_hash=str(z["sample_hash"]),
                                  value=float(z["value"]))
        for name in ("top1", "top5"):
            if name in z:
                kw[name] = np.unpackbits(z[name], count=n).astype(bool)
        if "groups" in z:
            kw["groups"] = z["groups"].astype(np.int64)
        if "group_sizes" in z:
            sizes = z["group_sizes"].astype(np.int64)
            kw["groups"] = np.repeat(np.arange(sizes.size), sizes)
        for name in ("ranks_i2t", "ranks_t2i"):
            if name in z:
                kw[name] = z[name].astype(np.int64)
        if "hits" in z:
            kw["hits"] = np.unpackbits(z["hits"], count=n).astype(bool)
        if "labels" in z:
            kw["labels"] = z["labels"].astype(np.int64)
        if "targets" in z:
            kw["labels"] = np.unpackbits(z["targets"], axis=1, count=int(z["n_classes"])).astype(np.int8)
            if "ignored" in z:
                kw["labels"][np.unpackbits(z["ignored"], axis=1, count=int(z["n_classes"])).astype(bool)] = -1
        if "scores" in z:
            kw["scores"] = z["scores"]
        if "preds" in z:
            kw["preds"] = z["preds"].astype(np.int64)
    return Outcomes(**kw)


def load_for_row(row: dict[str, Any], output_dir: str | Path) -> Outcomes | None:
    """The outcomes behind `row` under `output_dir`, or None if there is no file.

    Raises :class:`OutcomeError` if the file is damaged or does not reproduce the row's value (it
    then belongs to another run of the same evaluation, and must not be used for this row).
    """
    path = Path(output_dir) / outcome_relpath(row)
    if not path.is_file():
        return None
    try:
        out = load(path)
        recomputed = float(out.recompute())
    except (*_READ_ERRORS, OutcomeError) as exc:
        why = str(exc) or type(exc).__name__  # an empty file's EOFError says nothing
        raise DamagedOutcomesError(f"outcomes file {path} is damaged ({why}); {_REBUILD}") from None
    if abs(recomputed - out.value) > _VALUE_TOL:
        raise DamagedOutcomesError(
            f"outcomes file {path} is damaged: its per-sample evidence gives {out.metric} = {recomputed:.4f}, not "
            f"the {out.value:.4f} it records; {_REBUILD}"
        )
    if out.metric != row.get("metric") or abs(out.value - float(row["value"])) > _VALUE_TOL:
        raise OutcomeError(
            f"outcomes file {path} holds {out.metric} = {out.value:.4f}, but the row says "
            f"{row.get('metric')} = {float(row['value']):.4f}; it belongs to another run of this evaluation"
        )
    return out


# ---------------------------------------------------------------------------------------------
# The hooks the protocols call


def attach_outcomes(
    rows: list[dict[str, Any]], scores: np.ndarray, targets: np.ndarray, output_dir: str | Path | None,
    B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED, groups: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Give each row (all scored on `scores` vs `targets`; `groups`: each sample's group code, for worst-group
    rows) its interval, and write its outcomes file.

    The outcomes are checked to reproduce each row's value first: a mismatch is an internal error,
    never a silently wrong interval. Files are written only by the main process and only when
    `output_dir` is set; rows then say where (``outcomes``), else ``outcomes`` is None.
    """

    memo: dict[str, Any] = {}
    for row in rows:
        if row.get("value") is None or row.get("metric") not in CI_METHODS:
            continue
        if row.get("n") is not None and int(row["n"]) != int(np.asarray(targets).shape[0]):
            raise OutcomeError(f"{row['metric']} row has n = {row['n']} but {np.asarray(targets).shape[0]} outcomes")
        out = outcomes_for(row["metric"], scores, targets, row["value"], memo, field_of(row, "data_fingerprint"),
                           groups)
        _attach(row, out, "per-sample", output_dir, B, seed)
    return rows


#: Inside :func:`collect_unwritten`: where the reasons of outcomes files that could not be written go.
_unwritten: ContextVar[list[str] | None] = ContextVar("unwritten_outcomes", default=None)


@contextlib.contextmanager
def collect_unwritten() -> Iterator[list[str]]:
    """Within the block an outcomes file that cannot be written does not stop the evaluation: its row keeps its
    interval, gets ``outcomes`` None, and the reason goes to the yielded list (so a run keeps every row it
    computes and reports the failure after). Outside, such a failure raises :class:`OutcomesWriteError`."""
    reasons: list[str] = []
    token = _unwritten.set(reasons)
    try:
        yield reasons
    finally:
        _unwritten.reset(token)


def check_writable(output_dir: str | Path) -> None:
    """A clear error now (before any work) when outcomes files could not be written under `output_dir`."""
    folder = Path(output_dir) / OUTCOMES_DIR
    try:
        probe_writable_dir(folder)
    except OSError as exc:
        raise OutcomesWriteError(f"cannot write per-sample outcomes to {folder} "
                                 f"({exc.strerror or type(exc).__name__}); make it a writable folder or pass "
                                 "--output-dir to another folder.") from None


def _attach(row: dict[str, Any], out: Outcomes, what: str, output_dir: str | Path | None, B: int, seed: int) -> None:
    """Check that `out` reproduces the row's value, give the row its interval and write the outcomes file."""
    from clip_bench.util import distributed as ddp

    check = out.recompute()
    if not abs(check - float(row["value"])) <= _VALUE_TOL:
        raise OutcomeError(f"{what} outcomes give {row['metric']} = {check!r}, the row says {row['value']!r}")
    try:
        row["ci_low"], row["ci_high"], row["ci_method"] = out.interval(B, seed)
    except NoIntervalError as exc:  # never a wrong interval: none, and the row says why
        row["ci_low"] = row["ci_high"] = row["ci_method"] = None
        row["extra"] = {**(row.get("extra") or {}), "no_interval": str(exc)}
    row["outcomes"] = None
    if output_dir is not None:
        rel = f"{OUTCOMES_DIR}/{outcome_id(row)}.npz"
        if ddp.is_main():
            try:
                save(out, Path(output_dir) / rel)
            except OSError as exc:
                why = (f"cannot write per-sample outcomes to {Path(output_dir) / rel} "
                       f"({exc.strerror or type(exc).__name__})")
                reasons = _unwritten.get()
                if reasons is None:
                    raise OutcomesWriteError(f"{why}; free some space or make the folder writable.") from None
                reasons.append(why)
                return
        row["outcomes"] = rel


def attach_retrieval_outcomes(
    rows: list[dict[str, Any]], ranks: RetrievalRanks, text_image: np.ndarray, sample: str,
    output_dir: str | Path | None, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """:func:`attach_outcomes` for the rows of one retrieval evaluation (`ranks`, captions' images
    `text_image`, test-set hash `sample` from :func:`retrieval_sample_hash`)."""
    def outcomes_of(row: dict[str, Any]) -> Outcomes | None:
        if parse_metric(row.get("metric")) is None:
            return None
        return retrieval_outcomes(row["metric"], ranks, text_image, row["value"], sample)

    return _attach_rows(rows, outcomes_of, "per-query", output_dir, B, seed)


def _attach_rows(
    rows: list[dict[str, Any]], outcomes_of: Callable[[dict[str, Any]], Outcomes | None], what: str,
    output_dir: str | Path | None, B: int, seed: int,
) -> list[dict[str, Any]]:
    """:func:`_attach` for every row with a value that `outcomes_of` gives outcomes for (None: none); the
    outcomes must count the row's ``n``."""
    for row in rows:
        if row.get("value") is None or (out := outcomes_of(row)) is None:
            continue
        if row.get("n") is not None and int(row["n"]) != out.n:
            raise OutcomeError(f"{row['metric']} row has n = {row['n']} but {out.n} outcomes")
        _attach(row, out, what, output_dir, B, seed)
    return rows


def attach_seed_mean_interval(mean_row: dict[str, Any], seed_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Interval of a few-shot mean row from its per-seed rows (see :func:`stats.combine_seed_intervals`)."""
    if not seed_rows or any(r.get("ci_low") is None for r in seed_rows):
        return mean_row
    lo, hi = stats.combine_seed_intervals(
        [r["value"] for r in seed_rows], [r["ci_low"] for r in seed_rows], [r["ci_high"] for r in seed_rows]
    )
    mean_row["ci_low"], mean_row["ci_high"] = lo, hi
    mean_row["ci_method"] = "seeds+" + str(seed_rows[0]["ci_method"])
    mean_row["outcomes"] = None
    return mean_row
