"""Replay from the caches: the per-sample outcomes of zero-shot, retrieval and WinoGAViL rows, without the model.

The logits are rebuilt from the cached image features and the cached text embeddings of the row's
prompts; no model is loaded and no image is opened. The rebuilt outcomes must reproduce the row's
value exactly, or nothing is written. When a cache is missing, the error says what to run.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.cache.features import FeatureCache, Features, cached_group_codes, feature_key
from clip_bench.cache.identity import task_hash
from clip_bench.cache.text import find_cached_embeddings
from clip_bench.metrics.retrieval import RetrievalRanks, flatten_captions, l2_normalize, retrieval_ranks
from clip_bench.protocols.retrieval import apply_template
from clip_bench.protocols.winogavil import score_winogavil
from clip_bench.protocols.zeroshot import subset_scores
from clip_bench.protocols.zeroshot_head import ensemble, zeroshot_logits
from clip_bench.results.outcomes import (
    OutcomeError,
    Outcomes,
    attach_outcomes,
    attach_retrieval_outcomes,
    attach_winogavil_outcomes,
    collect_unwritten,
    has_outcomes,
    load_for_row,
    outcome_id,
    outcome_relpath,
    outcomes_for,
    retrieval_outcomes,
    retrieval_sample_hash,
    winogavil_outcomes,
)
from clip_bench.results.rows import field_of
from clip_bench.tasks.catalog import get_task
from clip_bench.tasks.class_groups import apply_class_groups
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import sha256_json


def rerun_command(row: dict[str, Any], output_dir: str | Path) -> str:
    """The command that (re)computes `row` and writes its outcomes (it reuses whatever is cached)."""
    extra = row.get("extra") or {}
    protocol = row.get("protocol") or "zeroshot"
    cmd = ["clip-bench", "linprobe" if protocol == "linear_probe" else
           "fewshot" if protocol.startswith("fewshot") else "zeroshot", "--model", row["model"]]
    if row.get("pretrained") and row["pretrained"] != "builtin":
        cmd += ["--pretrained", row["pretrained"]]
    cmd += ["--task", row["task"]]
    if row.get("source"):
        cmd += ["--source", row["source"]]
    for flag, key in (("--limit", "limit"), ("--templates", "templates_file"), ("--classnames", "classnames_file"),
                      ("--caption-template", "caption_template")):
        if extra.get(key) is not None:
            cmd += [flag, str(extra[key])]
    if row.get("precision") and row["precision"] != "fp32":
        cmd += ["--precision", row["precision"]]
    cmd += ["--output-dir", str(output_dir)]
    return shlex.join(cmd)


def cached_features(row: dict[str, Any], task: TaskSpec, cache_dir: str | Path, data_root: str | Path,
                    ) -> Features | None:
    """The complete feature-cache entry `row` was scored on (keyed by the row's own fields, its data
    fingerprint included, so no data is read and `data_root` is not needed), or None."""
    extra = row.get("extra") or {}
    fingerprint = field_of(row, "data_fingerprint")
    if fingerprint is None:  # a row from before data fingerprints: no entry of this cache format is its
        return None
    for skip_bad in (False, True):  # an entry that skipped unreadable images is keyed apart
        key = feature_key(row["model_fingerprint"], task, task.source(row.get("source")), row["split"],
                          row.get("feature_kind") or "embed", extra.get("limit"), fingerprint,
                          precision=row.get("precision") or "fp32", device=row.get("device"), skip_bad_images=skip_bad)
        if (feats := FeatureCache(Path(cache_dir), key).load()) is not None:
            return feats
    return None


def zeroshot_scores_from_cache(
    row: dict[str, Any], cache_dir: str | Path, data_root: str | Path, output_dir: str | Path = "results",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(logits, labels, group codes or None) the zero-shot `row` was scored on, rebuilt from the feature and text
    caches (group codes for a task with ``group_by``, from the feature cache)."""
    cache_dir = Path(cache_dir)
    extra = row.get("extra") or {}
    task = get_task(row["task"]).bind_data(data_root, row.get("source"))  # prompts_from_data: read from the data
    redo = f"run `{rerun_command(row, output_dir)}` (it reuses what is cached and stores the outcomes)"
    if task.version != row.get("task_version"):
        raise ClipBenchError(f"{row['model']} on {row['task']}: the row was computed with task version "
                             f"{row.get('task_version')}, the task file is now version {task.version}; {redo}.")
    prompt_set = task.prompt_set(extra.get("classnames_file"), extra.get("templates_file"))
    if (prompt_set.templates_hash, prompt_set.classnames_hash) != (row.get("templates_hash"),
                                                                   row.get("classnames_hash")):
        raise ClipBenchError(f"{row['model']} on {row['task']}: the row's prompts (templates/class names) are not the "
                             f"ones the task or its files give now; {redo}.")
    feats = cached_features(row, task, cache_dir, data_root)
    if feats is None:
        raise ClipBenchError(f"{row['model']} on {row['task']}: no per-sample outcomes, and its image features are "
                             f"not in the cache {cache_dir} (or the row records no data fingerprint, being older); "
                             f"{redo}.")
    per_class = prompt_set.all_prompts()
    table = find_cached_embeddings(cache_dir, row["model_fingerprint"],
                             list(dict.fromkeys(p for ps in per_class for p in ps)),
                             row.get("precision"), row.get("device"))
    if table is None:
        raise ClipBenchError(f"{row['model']} on {row['task']}: no per-sample outcomes, and its prompt embeddings "
                             f"are not in the text cache under {cache_dir}; {redo}.")
    classifier = ensemble([np.stack([table[p] for p in prompts]) for prompts in per_class])
    logits = apply_class_groups(task, zeroshot_logits(feats.features, classifier))
    labels = np.asarray(feats.labels)
    if row.get("subset"):
        subsets = subset_scores(task, logits, labels)
        if row["subset"] not in subsets:
            raise ClipBenchError(f"{row['model']} on {row['task']}: class subset {row['subset']!r} is unknown; {redo}.")
        logits, labels = subsets[row["subset"]]
        return logits, labels, None
    return logits, labels, cached_group_codes(task, feats)


def backfill(
    row: dict[str, Any], output_dir: str | Path, cache_dir: str | Path, data_root: str | Path,
) -> Outcomes:
    """Write the outcomes file of a zero-shot `row` (under `output_dir`) from the caches, and return it.

    Raises ClipBenchError naming the command to run when the caches do not have what is needed, or
    when the rebuilt scores do not reproduce the row's value.
    """
    if row.get("protocol") == "retrieval":
        return _backfill_retrieval(row, output_dir, cache_dir, data_root)
    if row.get("protocol") == "winogavil":
        return _backfill_winogavil(row, output_dir, cache_dir, data_root)
    if not has_outcomes(row.get("metric")):
        raise ClipBenchError(f"{row['model']} on {row['task']}: metric {row.get('metric')!r} has no per-sample "
                             "outcomes (a registered metric has none), so there are none to rebuild.")
    if row.get("protocol") != "zeroshot":
        raise ClipBenchError(
            f"{row['model']} on {row['task']} ({row.get('protocol')}): the row has no per-sample outcomes (it was "
            f"computed before clip-bench stored them); run `{rerun_command(row, output_dir)}` "
            "(features come from the cache)."
        )
    copy = _with_outcomes_path(row)
    logits, labels, groups = zeroshot_scores_from_cache(row, cache_dir, data_root, output_dir)
    try:
        with collect_unwritten() as unwritten:
            attach_outcomes([copy], logits, labels, output_dir, groups=groups)
        out = (outcomes_for(row["metric"], logits, labels, row["value"], groups=groups,
                            data_fingerprint=field_of(row, "data_fingerprint"))
               if _in_memory(unwritten) else load_for_row(copy, output_dir))
    except OutcomeError as exc:
        raise ClipBenchError(
            f"{row['model']} on {row['task']}: the cached features do not reproduce the row's {row['metric']} "
            f"({exc}); run `{rerun_command(row, output_dir)}`."
        ) from None
    assert out is not None  # just written
    return out


def _with_outcomes_path(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of `row` with the path of its outcomes file; a row whose id or path is not clip-bench's is an error."""
    try:
        copy = {**row, "outcomes": outcome_relpath(row)}
        outcome_id(copy)  # the file is written under this name
    except OutcomeError as exc:
        raise ClipBenchError(str(exc)) from None
    return copy


def _in_memory(unwritten: list[str]) -> bool:
    """Whether the rebuilt outcomes could not be written (said on stderr): they are then used from memory."""
    if unwritten:
        print(f"clip-bench: warning: {unwritten[0]}; using the rebuilt outcomes without storing them.", file=sys.stderr)
    return bool(unwritten)


def _backfill_retrieval(row: dict[str, Any], output_dir: str | Path, cache_dir: str | Path,
                        data_root: str | Path) -> Outcomes:
    """:func:`backfill` for a retrieval row: ranks rebuilt from the cached image features, captions and caption
    embeddings."""

    redo = f"run `{rerun_command(row, output_dir)}` (it reuses what is cached and stores the outcomes)"
    copy = _with_outcomes_path(row)
    ranks, text_image, sample = ranks_from_cache(row, cache_dir, data_root, redo)
    try:
        with collect_unwritten() as unwritten:
            attach_retrieval_outcomes([copy], ranks, text_image, sample, output_dir)
        out = (retrieval_outcomes(row["metric"], ranks, text_image, row["value"], sample) if _in_memory(unwritten)
               else load_for_row(copy, output_dir))
    except OutcomeError as exc:
        raise ClipBenchError(f"{row['model']} on {row['task']}: the cached features do not reproduce the row's "
                             f"{row['metric']} ({exc}); {redo}.") from None
    assert out is not None  # just written
    return out


def _backfill_winogavil(row: dict[str, Any], output_dir: str | Path, cache_dir: str | Path,
                        data_root: str | Path) -> Outcomes:
    """:func:`backfill` for a WinoGAViL row: Jaccard indices rebuilt from the cached candidate-image features,
    instances and prompt embeddings."""
    redo = f"run `{rerun_command(row, output_dir)}` (it reuses what is cached and stores the outcomes)"
    who = f"{row['model']} on {row['task']}"
    copy = _with_outcomes_path(row)
    task = _same_task(row, redo)
    feats = cached_features(row, task, cache_dir, data_root)
    if feats is None or feats.meta.get("winogavil") is None:
        raise ClipBenchError(f"{who}: no per-instance outcomes, and its image features and instances are not in the "
                             f"cache {cache_dir} (or the row records no data fingerprint, being older); {redo}.")

    def embed(prompts: list[str]) -> np.ndarray:
        table = find_cached_embeddings(Path(cache_dir), row["model_fingerprint"], list(dict.fromkeys(prompts)),
                                       row.get("precision"), row.get("device"))
        if table is None:
            raise ClipBenchError(f"{who}: no per-instance outcomes, and its prompt embeddings are not in the text "
                                 f"cache under {cache_dir}; {redo}.")
        return np.stack([table[p] for p in prompts])

    scored = score_winogavil(feats, field_of(row, "data_fingerprint"), embed, field_of(row, "limit"))
    try:
        with collect_unwritten() as unwritten:
            attach_winogavil_outcomes([copy], scored.jaccards, scored.n_candidates, scored.sample, output_dir)
        out = (winogavil_outcomes(row["metric"], scored.jaccards, scored.n_candidates, row["value"], scored.sample)
               if _in_memory(unwritten) else load_for_row(copy, output_dir))
    except OutcomeError as exc:
        raise ClipBenchError(f"{who}: the cached features do not reproduce the row's {row['metric']} ({exc}); "
                             f"{redo}.") from None
    assert out is not None  # just written
    return out


def _same_task(row: dict[str, Any], redo: str) -> TaskSpec:
    """The task `row` names, checked to be the definition (version and hash) the row was computed with."""
    who = f"{row['model']} on {row['task']}"
    task = get_task(row["task"])
    if task.version != row.get("task_version"):
        raise ClipBenchError(f"{who}: the row was computed with task version {row.get('task_version')}, "
                             f"the task file is now version {task.version}; {redo}.")
    recorded = field_of(row, "task_hash")
    if recorded and recorded != task_hash(task):
        raise ClipBenchError(f"{who}: the row was computed from another definition of task {row['task']!r} (a task "
                             f"file?) than {task.file}; {redo}.")
    return task


def ranks_from_cache(
    row: dict[str, Any], cache_dir: str | Path, data_root: str | Path, redo: str,
) -> tuple[RetrievalRanks, np.ndarray, str]:
    """(ranks, caption→image indices, test-set hash) of the retrieval `row`, rebuilt from the feature
    cache (image features and captions) and the text cache (caption embeddings), without a model.

    `redo` is the advice appended to every error (the command that recomputes the row).
    """
    extra = row.get("extra") or {}
    who = f"{row['model']} on {row['task']}"
    task = _same_task(row, redo)
    feats = cached_features(row, task, cache_dir, data_root)
    if feats is None or feats.meta.get("captions") is None:
        raise ClipBenchError(f"{who}: no per-query outcomes, and its image features and captions are not in the "
                             f"cache {cache_dir} (or the row records no data fingerprint, being older); {redo}.")
    raw_texts, text_image = flatten_captions(feats.meta["captions"], feats.labels)
    if sha256_json(raw_texts)[:16] != extra.get("captions_hash"):
        raise ClipBenchError(f"{who}: the cached captions are not the ones the row was scored on; {redo}.")
    texts = apply_template(raw_texts, extra.get("caption_template"))
    table = find_cached_embeddings(Path(cache_dir), row["model_fingerprint"], list(dict.fromkeys(texts)),
                             row.get("precision"), row.get("device"))
    if table is None:
        raise ClipBenchError(f"{who}: no per-query outcomes, and its caption embeddings are not in the text cache "
                             f"under {cache_dir}; {redo}.")
    text_emb = np.stack([table[t] for t in texts]).astype(np.float32)
    ranks = retrieval_ranks(l2_normalize(feats.features), text_emb, text_image)
    fingerprint = row.get("data_fingerprint") or extra.get("data_fingerprint")
    return ranks, text_image, retrieval_sample_hash(feats.labels, raw_texts, text_image, fingerprint)
