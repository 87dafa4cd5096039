"""The shared runner of every protocol: model x tasks -> rows, written as each task finishes.

It resolves the model and tasks, fingerprints each split's data, gets image features through the
feature cache (extracting only what is missing), records the provenance every row carries, and
appends rows and rebuilds the leaderboard. The protocols (zero-shot, retrieval, probes) plug in a
per-task function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from clip_bench.cache.data_fingerprint import run_scope, split_fingerprint
from clip_bench.cache.extract import extract
from clip_bench.cache.features import FeatureCache, Features, feature_key, group_codes_meta
from clip_bench.cache.identity import is_builtin_definition, task_hash
from clip_bench.config import EvalConfig
from clip_bench.loaders.subset import SUBSET_RULE
from clip_bench.models.resolve import ModelHandle, ModelRef
from clip_bench.results.leaderboard import write_leaderboard
from clip_bench.results.outcomes import OutcomesWriteError, collect_unwritten
from clip_bench.results.outcomes import check_writable as check_outcomes_writable
from clip_bench.results.rows import (
    LEADERBOARD_FILE,
    RESULTS_FILE,
    append_rows,
    check_writable,
    now_iso,
    versions,
)
from clip_bench.tasks.catalog import TaskRefs, expand_tasks, get_task
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util import distributed as ddp
from clip_bench.util.errors import ClipBenchError


def data_fingerprint(task: TaskSpec, split: str, cfg: EvalConfig) -> str:
    """The content fingerprint of `split` of `task` from the configured source and data root
    (``clip_bench.cache.data_fingerprint``; computed once per run)."""
    return split_fingerprint(task, cfg.source, split, cfg.data_root, cfg.cache_dir, cfg.download)[0]


def get_features(handle: ModelHandle, task: TaskSpec, split: str, cfg: EvalConfig, kind: str | None = None) -> Features:
    """Features of one task split, from the cache when complete; extraction loads the model only if needed.

    The split is loaded (loaders only index files) and fingerprinted first: the cache entry is the one of
    this data's content, wherever it lies. The features' ``meta`` records the ``data_fingerprint`` (and, for a
    task with ``group_by``, each image's group code: ``clip_bench.cache.features.cached_group_codes``).
    """
    from clip_bench.loaders import load_split

    kind = kind or cfg.feature_kind
    # "auto" is the probes' default (resolved in linprobe); else the embedding
    kind = "embed" if kind == "auto" else kind
    source = task.source(cfg.source)
    fingerprint, data = split_fingerprint(task, source.name, split, cfg.data_root, cfg.cache_dir, cfg.download)
    key = feature_key(handle.fingerprint, task, source, split, kind, cfg.limit, fingerprint,
                      precision=handle.precision, device=handle.device, skip_bad_images=cfg.extract.skip_bad_images)
    cache = FeatureCache(cfg.cache_dir, key) if cfg.cache_dir is not None else None
    if cache is not None and (hit := cache.load()) is not None:
        hit.meta.setdefault("data_fingerprint", fingerprint)
        return hit
    if data is None:
        data = load_split(task, source.name, split, cfg.data_root, cfg.download)
    indices = data.limit_indices(cfg.limit)  # subset_indices, or a data kind's own rule
    return extract(
        handle, data, indices, cache, kind, cfg.extract,
        provenance={"dataset_size": len(data), "data_fingerprint": fingerprint,
                    **(data.cache_provenance() if hasattr(data, "cache_provenance") else {}),
                    **(group_codes_meta(task, data, indices) if split == task.eval_split else {})},
        desc=f"{task.name}/{split}",
    )


def check_same_data(feats: Features, fingerprint: str, task: TaskSpec, split: str) -> None:
    """The features must be those of the data a row names (they differ only if the data changed mid-run)."""
    if feats.meta.get("data_fingerprint") != fingerprint:
        raise ClipBenchError(f"task {task.name!r}: the data of split {split!r} changed while it was evaluated; "
                             "run again once the data is in place.")


def provenance(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> dict[str, Any]:
    """The row fields every protocol records: model, weights, task version and definition hash, source and its
    config hash, split and the content fingerprint of its data, versions, date, ``--limit``, and whether
    these inputs are the standard ones."""
    source = task.source(cfg.source)
    return dict(
        data_fingerprint=data_fingerprint(task, task.eval_split, cfg),
        model=handle.spec.name, pretrained=handle.spec.pretrained, model_fingerprint=handle.fingerprint,
        task=task.name, task_version=task.version, source=source.name, split=task.eval_split,
        feature_kind="embed" if cfg.feature_kind == "auto" else cfg.feature_kind,  # probes record theirs (linprobe)
        device=str(handle.device), precision=handle.precision, date=now_iso(),
        **versions(), **handle.spec.provenance(), limit=cfg.limit,
        subset_rule=SUBSET_RULE if cfg.limit is not None else None,
        task_hash=task_hash(task), source_config=source.config_hash,
        standard=cfg.limit is None and is_builtin_definition(task),
        **({"label": cfg.label} if cfg.label else {}),
    )


def run_protocol(
    model: ModelRef, tasks: TaskRefs, config: EvalConfig | None,
    pretrained: str | None,
    device: str | None,
    precision: str,
    overrides: dict[str, Any],
    per_task: Callable[[ModelHandle, TaskSpec, EvalConfig], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Run `per_task` on every task; rank 0 appends each task's rows as it finishes, then the leaderboard."""
    cfg = replace(config or EvalConfig(), **overrides)
    ddp.init_from_env()
    handle = ModelHandle.of(model, pretrained, device or ddp.local_device(), precision)
    specs = [get_task(n) for n in expand_tasks([tasks] if isinstance(tasks, str) else list(tasks))]  # fail early
    writing = cfg.output_dir is not None and ddp.is_main()
    if writing:
        check_writable(cfg.output_dir)  # a read-only output dir fails now, before any work
        check_outcomes_writable(cfg.output_dir)
    rows: list[dict[str, Any]] = []
    unwritten: list[str] = []  # outcomes files that could not be written (a full disk): their rows are kept
    for task in specs:
        task = task.bind_data(cfg.data_root, cfg.source)  # prompts_from_data: the class names of this data folder
        with run_scope(), collect_unwritten() as reasons:  # each split's data is fingerprinted once per task
            if cfg.download and task.prompt_folder is not None:
                data_fingerprint(task, task.eval_split, cfg)  # fetches the data (and its prompts) before they are read
            task_rows = per_task(handle, task, cfg)
        unwritten += reasons
        rows.extend(task_rows)
        if writing:
            try:
                append_rows(cfg.output_dir, task_rows)
            except ClipBenchError:
                _dump_rows(rows)
                raise
    if writing and rows:
        try:
            write_leaderboard(cfg.output_dir)
        except OSError as exc:
            raise ClipBenchError(f"cannot write {cfg.output_dir / LEADERBOARD_FILE} ({exc.strerror}); the rows are in "
                                 f"{cfg.output_dir / RESULTS_FILE}. Run `clip-bench report` once it is "
                                 "writable.") from None
    if unwritten:
        more = f" (and {len(unwritten) - 1} more)" if len(unwritten) > 1 else ""
        raise OutcomesWriteError(
            f"{unwritten[0]}{more}; the rows are in {cfg.output_dir / RESULTS_FILE} with their intervals but without "
            "those files. Free some space or make the folder writable and run again (`clip-bench compare` rebuilds "
            "zero-shot outcomes from the caches).")
    return rows


def _dump_rows(rows: list[dict[str, Any]]) -> None:
    """Keep what was computed when results cannot be written: every row on stderr, one JSON per line."""
    import json
    import sys

    print(f"clip-bench: the {len(rows)} result rows of this run could not be written; here they are "
          "(one JSON object per line, append them to results.jsonl):", file=sys.stderr)
    for r in rows:
        print(json.dumps(r, sort_keys=True, default=str), file=sys.stderr)
