"""The WinoGAViL protocol (DataComp's ``eval_utils/wino_eval.py``): a ``kind: winogavil`` task -> Jaccard rows.

Each instance's cue becomes the prompt "A <cue>" or "An <cue>" (:func:`cue_prompt`, DataComp's
``get_clip_prompt``); its candidate images are scored by cosine similarity with the prompt and the top-n
(n = the number of true candidates) are the model's answer, scored by the Jaccard index with the true set
(:mod:`clip_bench.metrics.winogavil`). Candidate images are encoded through the feature cache and prompts
through the text cache, as retrieval's captions are; the rows' intervals and per-instance evidence are
:mod:`clip_bench.results.outcomes`'. Replaying a row from the caches is
:func:`clip_bench.protocols.replay.backfill`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clip_bench.cache.features import Features
from clip_bench.config import EvalConfig
from clip_bench.loaders.winogavil import Instances
from clip_bench.metrics.retrieval import l2_normalize
from clip_bench.metrics.winogavil import group_mask, instance_jaccards, jaccard_means, true_mask
from clip_bench.models.resolve import ModelHandle
from clip_bench.protocols.retrieval import encode_texts
from clip_bench.protocols.runner import check_same_data, get_features, provenance
from clip_bench.results.outcomes import attach_winogavil_outcomes, winogavil_sample_hash
from clip_bench.results.rows import make_row
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import sha256_json

PROTOCOL = "winogavil"
#: How a cue becomes a prompt and how an instance is scored. Its hash is the rows' ``templates_hash`` (part of
#: their identity): change the rule, change the version.
RULE = {
    "prompt": "'An <cue>' when the lower-cased cue starts with a, e, i, o or u, else 'A <cue>', the cue lower-cased",
    "pick": "the n candidates most similar to the prompt (cosine), n = the number of true candidates; "
            "equal scores: the later candidate first",
    "score": "Jaccard index of the picked and the true candidates",
    "version": 1,
}
RULE_HASH = sha256_json(RULE)[:16]


def cue_prompt(cue: str) -> str:
    """DataComp's prompt for a cue: the cue lower-cased, after "An" if it starts with a vowel letter, else "A"."""
    item = cue.lower()
    if not item:
        raise ClipBenchError("a WinoGAViL cue is empty; it needs at least one character.")
    return f"An {item}" if item[0] in "aeiou" else f"A {item}"


@dataclass
class WinoGAViLScores:
    """The instances of one evaluation that were scored, and their Jaccard indices (0-1)."""

    instances: np.ndarray  # indices of the scored instances
    jaccards: np.ndarray
    n_candidates: np.ndarray
    skipped_instances: int  # instances left out because an image of theirs was unreadable (--skip-bad-images)
    sample: str  # the hash of the scored instances (results.outcomes.winogavil_sample_hash)


def score_winogavil(feats: Features, fingerprint: str | None,
                    embed: Callable[[list[str]], np.ndarray], limit: int | None = None) -> WinoGAViLScores:
    """Score every instance whose candidate images all have features; `embed` gives the prompts' embeddings.

    The instances `limit` draws (``--limit``; all without one) that lack the features of an image of theirs (it
    could not be read) are skipped and counted, even when none of their images could be read.
    """
    raw = feats.meta.get("winogavil")
    if raw is None:
        raise ClipBenchError("the cached features carry no WinoGAViL instances; delete that feature-cache entry (or "
                             "pass --no-cache) and run again.")
    inst = Instances.from_dict(raw)
    offsets = inst.offsets
    row_of = np.full(int(offsets[-1]), -1, dtype=np.int64)
    row_of[np.asarray(feats.labels, dtype=np.int64)] = np.arange(len(feats.labels))
    present = np.asarray([np.count_nonzero(row_of[a:b] >= 0) for a, b in zip(offsets[:-1], offsets[1:])])
    complete = np.flatnonzero(present == inst.n_candidates)
    drawn = inst.drawn(limit)
    skipped = int(np.count_nonzero(present[drawn] < inst.n_candidates[drawn]))
    if not len(complete):
        raise ClipBenchError("no WinoGAViL instance has features for all its candidate images.")
    prompts = [cue_prompt(inst.cues[i]) for i in complete]
    text = np.asarray(embed(prompts), dtype=np.float32)
    images = l2_normalize(feats.features)
    scores = [images[row_of[offsets[i]:offsets[i + 1]]] @ text[j] for j, i in enumerate(complete)]
    truths = [true_mask(inst.candidates[i], inst.associations[i]) for i in complete]
    sample = winogavil_sample_hash([inst.cues[i] for i in complete], [inst.candidates[i] for i in complete],
                                   [inst.associations[i] for i in complete], fingerprint)
    return WinoGAViLScores(complete, instance_jaccards(scores, truths), inst.n_candidates[complete], skipped, sample)


def winogavil_identity(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> dict[str, Any]:
    """The fields of a WinoGAViL row known before running: provenance and the prompt-and-scoring rule's hash."""
    prov = provenance(handle, task, cfg)
    prov.update(protocol=PROTOCOL, templates_hash=RULE_HASH, classnames_hash=None)
    return prov


def evaluate_winogavil_task(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
    """WinoGAViL rows for one ``kind: winogavil`` task: the mean Jaccard of each group of instances
    (``jaccard_10_12``, the main metric; ``jaccard_5_6``; ``jaccard_all``)."""
    split = task.eval_split
    feats = get_features(handle, task, split, cfg)
    if len(feats) == 0:
        raise ClipBenchError(f"task {task.name!r}: split {split!r} has no images to evaluate.")
    common = winogavil_identity(handle, task, cfg)
    check_same_data(feats, common["data_fingerprint"], task, split)
    try:
        scored = score_winogavil(feats, common["data_fingerprint"],
                                 lambda prompts: encode_texts(handle, prompts, cfg.cache_dir, quiet=cfg.quiet),
                                 cfg.limit)
    except ClipBenchError as exc:
        raise ClipBenchError(f"task {task.name!r}: {exc}") from None
    means = jaccard_means(scored.jaccards, scored.n_candidates)
    if task.metric not in means:
        raise ClipBenchError(f"task {task.name!r}: none of the {len(scored.jaccards)} scored instances is in the group "
                             f"of its main metric {task.metric} (too small a --limit?); evaluate more instances.")
    skipped_images = int(feats.meta.get("skipped_images", 0) or 0)
    common.update(skipped_images=skipped_images, skipped_instances=scored.skipped_instances,
                  n_instances=len(scored.jaccards), n_images=len(feats),
                  standard=common["standard"] and skipped_images == 0)
    rows = [make_row(**common, metric=m, value=v, is_main=(m == task.metric), subset=None,
                     n=int(np.count_nonzero(group_mask(m, scored.n_candidates))))
            for m, v in means.items()]
    return attach_winogavil_outcomes(rows, scored.jaccards, scored.n_candidates, scored.sample, cfg.output_dir)
