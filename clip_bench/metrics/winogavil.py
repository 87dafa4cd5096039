"""WinoGAViL's Jaccard scores (DataComp's ``eval_utils/wino_eval.py``): pure array maths.

An instance is a cue, its candidate images and the candidates associated with the cue. A model scores
each candidate against the cue; the prediction is the top-n candidates, n being the number of candidates
that are associations. The instance's score is the Jaccard index |true ∩ predicted| / |true ∪ predicted|
of the two sets of candidates. A row's value is the mean over a group of instances, in percent:

- ``jaccard_10_12``: the instances with 10 or more candidates (10 or 12 in WinoGAViL; DataComp's main
  metric ``jaccard_score_10-12``);
- ``jaccard_5_6``: the instances with 6 or fewer candidates (5 or 6; DataComp's ``jaccard_score_5-6``);
- ``jaccard_all``: every instance (DataComp's ``avg_jaccard_score``).

Which candidates are true is DataComp's rule: the candidates whose name is among the associations
(``np.isin``). Equal scores: the later candidate is picked first. DataComp sorts float16 similarities with
``np.argsort(scores)[-n:]``, and numpy sorts float16 arrays this small stably, so among equal scores the
candidate that comes later ranks higher; :func:`pick_top` is that sort, made stable for every dtype.

Confidence: instances are independent; a row's 95% interval is a percentile bootstrap over its instances
(B = 1000, seed 0), and ``compare`` resamples the same instances for both models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clip_bench.util.errors import ClipBenchError

MAIN = "jaccard_10_12"
#: Row metric -> (fewest, most) candidates of the instances it averages (None: no bound).
GROUPS: dict[str, tuple[int | None, int | None]] = {
    MAIN: (10, None),
    "jaccard_5_6": (None, 6),
    "jaccard_all": (None, None),
}


def is_jaccard_metric(metric: str | None) -> bool:
    """Whether rows of `metric` are WinoGAViL Jaccard means."""
    return metric in GROUPS


def group_mask(metric: str, n_candidates: np.ndarray) -> np.ndarray:
    """Which instances (by their candidate counts) the Jaccard row `metric` averages."""
    if metric not in GROUPS:
        raise ClipBenchError(f"{metric!r} is not a WinoGAViL metric; expected one of {', '.join(GROUPS)}.")
    low, high = GROUPS[metric]
    n = np.asarray(n_candidates)
    return (n >= (low if low is not None else 0)) & (n <= (high if high is not None else np.iinfo(np.int64).max))


def true_mask(candidates: Sequence[str], associations: Sequence[str]) -> np.ndarray:
    """The candidates that are associations (DataComp's ``np.isin(candidates, associations)``)."""
    wanted = set(associations)
    return np.asarray([c in wanted for c in candidates], dtype=bool)


def pick_top(scores: np.ndarray, n: int) -> np.ndarray:
    """The `n` best-scored candidates as a mask; equal scores favour the later candidate (see module)."""
    scores = np.asarray(scores)
    if not 0 < n <= len(scores):
        raise ClipBenchError(f"cannot pick {n} of {len(scores)} candidates.")
    out = np.zeros(len(scores), dtype=bool)
    out[np.argsort(scores, kind="stable")[-n:]] = True
    return out


def jaccard(truth: np.ndarray, predicted: np.ndarray) -> float:
    """|truth ∩ predicted| / |truth ∪ predicted| of two masks (the union is never empty here)."""
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    union = int(np.count_nonzero(truth | predicted))
    if union == 0:
        raise ClipBenchError("the Jaccard index of two empty sets is undefined.")
    return int(np.count_nonzero(truth & predicted)) / union


def instance_jaccards(scores: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> np.ndarray:
    """Each instance's Jaccard index (0-1) of its top-|truth| candidates by `scores` and its true candidates."""
    if len(scores) != len(truths):
        raise ClipBenchError(f"{len(scores)} instances scored but {len(truths)} have true candidates.")
    out = np.empty(len(scores), dtype=np.float64)
    for i, (s, t) in enumerate(zip(scores, truths)):
        t = np.asarray(t, dtype=bool)
        if len(s) != len(t):
            raise ClipBenchError(f"instance {i}: {len(s)} candidate scores but {len(t)} candidates.")
        if not np.isfinite(np.asarray(s, dtype=np.float64)).all():
            raise ClipBenchError(f"instance {i}: its candidate scores contain NaN or infinite values.")
        out[i] = jaccard(t, pick_top(s, int(t.sum())))
    return out


def jaccard_means(jaccards: np.ndarray, n_candidates: np.ndarray) -> dict[str, float]:
    """Each group's mean Jaccard in percent (:data:`GROUPS`), the main one first; a group without instances
    is left out."""
    out: dict[str, float] = {}
    for metric in GROUPS:
        mask = group_mask(metric, n_candidates)
        if mask.any():
            out[metric] = 100.0 * float(np.mean(np.asarray(jaccards)[mask]))
    return out
