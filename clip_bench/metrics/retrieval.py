"""Image–text retrieval recall@k in both directions, in bounded memory: pure array maths.

Protocol. Every image is a query over all captions (image→text, the paper's "text retrieval") and every
caption is a query over all images (text→image, "image retrieval"). A query's score for a candidate is
the dot product of the L2-normalised image embedding and the L2-normalised caption embedding (float32).
A query scores 1 at k when *any* of its true matches is among its top k (the CLIP paper's and
CLIP_benchmark's definition); recall@k is the mean over queries, in percent. A task's main metric is one
of two summaries: ``mean_recall``, the mean of the six recalls (k = 1, 5, 10, both directions; the CLIP
paper's retrieval tasks), or ``mean_recall@1``, the mean of image→text and text→image recall@1 (DataComp's
``eval_utils/retr_eval.py``, the Flickr and MSCOCO columns of open_clip's results table).

Ties are broken deterministically, never by sort order: the rank of candidate j for a query is

    rank(j) = #{candidates c : s(c) > s(j)} + #{candidates c : s(c) == s(j) and c < j}

(0-based; candidates are captions in dataset order, or images in dataset order), i.e. the order of a
stable sort by descending score. A query's rank is the smallest rank of its true matches, and it is a
hit at k when that rank is < k. Equal scores therefore favour the candidate that comes first.

Memory. Scores are never held as a full (images × captions) matrix: queries are processed in row blocks
of at most ``block_bytes`` of float32 scores (default 128 MB); each block also needs one boolean
temporary (a quarter of its size), so the peak above the embeddings is about 1.25 × ``block_bytes``
plus small fixed buffers (rows with exact ties need one more boolean temporary, for those rows only).

Confidence (see ``clip_bench.results.outcomes``). Image→text recall@k is a mean of one 0/1 outcome per image:
Wilson interval. The caption queries of one image are not independent (its 5 captions tend to hit or
miss together), so text→image recall@k and the summaries (``mean_recall``, ``mean_recall@1``) get a cluster
bootstrap over images: each replicate draws images with replacement, every drawn image bringing its own
query and all its caption queries (B = 1000, seed 0). The candidate gallery is held fixed: the intervals
describe the sampling of the queries, as the recalls are defined for this gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clip_bench.util.errors import ClipBenchError
from clip_bench.util.progress import progress_bar

KS = (1, 5, 10)


DEFAULT_BLOCK_BYTES = 128 * 2**20


#: Row metric names: image→text is the paper's "text retrieval", text→image its "image retrieval".
I2T, T2I, MAIN = "text_retrieval_recall@{k}", "image_retrieval_recall@{k}", "mean_recall"
#: DataComp's summary: the mean of the two recalls at 1.
MEAN_R1 = "mean_recall@1"
#: The summaries a retrieval task may name as its main metric, and the k they average (0: every k in KS).
SUMMARIES = {MAIN: 0, MEAN_R1: 1}


def summary_ks(k: int) -> tuple[int, ...]:
    """The k a summary averages over both directions: every k in KS for ``mean_recall`` (k = 0), else k alone."""
    return KS if k == 0 else (k,)


def parse_metric(metric: str | None) -> tuple[str, int] | None:
    """("i2t", k) or ("t2i", k) for a recall@k row, ("mean", k) for a summary (``mean_recall``: 0,
    ``mean_recall@1``: 1; see :func:`summary_ks`), None for other metrics."""
    if metric in SUMMARIES:
        return "mean", SUMMARIES[metric]
    for direction, pattern in (("i2t", I2T), ("t2i", T2I)):
        prefix = pattern.split("{")[0]
        if metric and metric.startswith(prefix) and metric[len(prefix):].isdigit():
            return direction, int(metric[len(prefix):])
    return None


@dataclass(frozen=True)
class RetrievalRanks:
    """Per-query 0-based rank of the best true match: one per image (image→text), one per caption (text→image)."""

    image_to_text: np.ndarray
    text_to_image: np.ndarray

    def recalls(self, ks: Sequence[int] = KS, summary: str = MAIN) -> dict[str, float]:
        """Recall@k in percent for both directions, then the `summary` (a key of :data:`SUMMARIES`)."""
        out: dict[str, float] = {}
        for k in ks:
            out[I2T.format(k=k)] = 100.0 * float(np.mean(self.image_to_text < k))
        for k in ks:
            out[T2I.format(k=k)] = 100.0 * float(np.mean(self.text_to_image < k))
        out[summary] = self.summary(summary, ks)
        return out

    def summary(self, name: str, ks: Sequence[int] = KS) -> float:
        """The summary `name` in percent: the mean over both directions of recall@k for its k (``mean_recall``:
        every k in `ks`)."""
        if name not in SUMMARIES:
            raise ClipBenchError(f"{name!r} is not a retrieval summary; expected one of {', '.join(SUMMARIES)}.")
        ks = tuple(ks) if SUMMARIES[name] == 0 else summary_ks(SUMMARIES[name])
        per = [100.0 * float(np.mean(ranks < k)) for ranks in (self.image_to_text, self.text_to_image) for k in ks]
        return float(np.mean(per))


def _block_rows(n_cols: int, block_bytes: int) -> int:
    return max(1, int(block_bytes) // max(1, 4 * n_cols))


def _best_true_ranks(scores: np.ndarray, true_cols: np.ndarray) -> np.ndarray:
    """Rank (tie rule above) of each row's best true column; `true_cols` is (rows, m), padded with -1."""
    rows = np.arange(scores.shape[0])
    valid = true_cols >= 0
    true_scores = np.where(valid, scores[rows[:, None], np.where(valid, true_cols, 0)], -np.inf)
    best = true_scores.max(axis=1)
    # the true column with the best score; among equal best scores the lowest index (it ranks first)
    at_best = valid & (true_scores == best[:, None])
    best_col = np.where(at_best, true_cols, np.iinfo(np.int64).max).min(axis=1)
    greater = np.count_nonzero(scores > best[:, None], axis=1)
    # exact ties with the best true match are rare: only rows with another equal score need the index rule
    tied_rows = np.flatnonzero(np.count_nonzero(scores == best[:, None], axis=1) > 1)
    if len(tied_rows):
        sub = scores[tied_rows] == best[tied_rows, None]
        sub &= np.arange(scores.shape[1])[None, :] < best_col[tied_rows, None]
        greater[tied_rows] += np.count_nonzero(sub, axis=1)
    return greater


def _true_captions(text_image: np.ndarray, n_images: int) -> np.ndarray:
    """(n_images, max captions per image) caption indices of each image, ascending, padded with -1."""
    order = np.argsort(text_image, kind="stable")
    counts = np.bincount(text_image, minlength=n_images)
    if counts.min(initial=1) == 0:
        raise ClipBenchError(f"image {int(np.argmin(counts))} has no caption; every image needs at least one.")
    out = np.full((n_images, int(counts.max(initial=0))), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - np.repeat(starts, counts)
    out[text_image[order], pos] = order
    return out


def retrieval_ranks(
    image_features: np.ndarray,
    text_features: np.ndarray,
    text_image: np.ndarray,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    quiet: bool = True,
) -> RetrievalRanks:
    """Best-true-match ranks of every query, scoring `image_features` @ `text_features`.T block by block.

    `text_image[t]` is the index of caption t's image. Features are used as given (normalise them
    first for cosine similarity); they are cast to float32 one block at a time.
    """
    text_image = np.asarray(text_image, dtype=np.int64)
    n_img, n_txt = len(image_features), len(text_features)
    if len(text_image) != n_txt:
        raise ClipBenchError(f"{n_txt} caption embeddings but {len(text_image)} caption→image indices.")
    if n_img == 0 or n_txt == 0:
        raise ClipBenchError("retrieval needs at least one image and one caption.")
    if text_image.min() < 0 or text_image.max() >= n_img:
        raise ClipBenchError(f"a caption points at image {int(text_image.max())}, but there are {n_img} images.")
    txt = np.asarray(text_features, dtype=np.float32)
    img = np.asarray(image_features, dtype=np.float32)
    for name, x in (("image", img), ("caption", txt)):
        if not np.isfinite(x).all():
            raise ClipBenchError(f"{name} embeddings contain NaN or infinite values; "
                                 "no recall can be computed from them.")
    true_caps = _true_captions(text_image, n_img)
    i2t = np.empty(n_img, dtype=np.int64)
    t2i = np.empty(n_txt, dtype=np.int64)
    step_i, step_t = _block_rows(n_txt, block_bytes), _block_rows(n_img, block_bytes)
    with progress_bar(total=n_img + n_txt, desc="retrieval", unit="query", quiet=quiet) as bar:
        # one score block alive at a time: it is passed on, never kept in a variable
        for s in range(0, n_img, step_i):
            i2t[s : s + step_i] = _best_true_ranks(img[s : s + step_i] @ txt.T, true_caps[s : s + step_i])
            bar.update(min(step_i, n_img - s))
        for s in range(0, n_txt, step_t):
            t2i[s : s + step_t] = _best_true_ranks(txt[s : s + step_t] @ img.T, text_image[s : s + step_t, None])
            bar.update(min(step_t, n_txt - s))
    return RetrievalRanks(i2t, t2i)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def flatten_captions(captions: Sequence[Sequence[str]], image_ids: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Captions of the images `image_ids` (dataset indices) as one list, and each caption's row in `image_ids`."""
    texts: list[str] = []
    owner: list[int] = []
    for row, i in enumerate(np.asarray(image_ids).tolist()):
        texts.extend(captions[i])
        owner.extend([row] * len(captions[i]))
    return texts, np.asarray(owner, dtype=np.int64)
