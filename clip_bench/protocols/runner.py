"""The zero-shot evaluation API: model x tasks -> result rows, with every cache in the loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from clip_bench.cache.data_fingerprint import run_scope, split_fingerprint
from clip_bench.cache.extract import extract
from clip_bench.cache.features import FeatureCache, Features, feature_key
from clip_bench.cache.identity import is_builtin_definition, task_hash
from clip_bench.config import EvalConfig
from clip_bench.loaders.subset import SUBSET_RULE, subset_indices
from clip_bench.metrics.classification import all_metrics, main_metric_key
from clip_bench.models.resolve import LoadedModel, ModelHandle, ModelSpec
from clip_bench.protocols.retrieval import evaluate_retrieval_task
from clip_bench.protocols.zeroshot_head import build_classifier, zeroshot_logits
from clip_bench.results.outcomes import OutcomesWriteError, attach_outcomes, collect_unwritten
from clip_bench.results.outcomes import check_writable as check_outcomes_writable
from clip_bench.results.rows import (
    LEADERBOARD_FILE,
    RESULTS_FILE,
    append_rows,
    check_writable,
    make_row,
    now_iso,
    versions,
    write_leaderboard,
)
from clip_bench.tasks.catalog import TaskSpec, expand_tasks, get_task, task_kind
from clip_bench.tasks.class_groups import apply_class_groups, class_indices, task_class_groups
from clip_bench.util import distributed as ddp
from clip_bench.util.errors import ClipBenchError


def data_fingerprint(task: TaskSpec, split: str, cfg: EvalConfig) -> str:
    """The content fingerprint of `split` of `task` from the configured source and data root
    (``clip_bench.cache.data_fingerprint``; computed once per run)."""
    return split_fingerprint(task, cfg.source, split, cfg.data_root, cfg.cache_dir, cfg.download)[0]


def get_features(handle: ModelHandle, task: TaskSpec, split: str, cfg: EvalConfig, kind: str | None = None) -> Features:
    """Features of one task split, from the cache when complete; extraction loads the model only if needed.

    The split is loaded (loaders only index files) and fingerprinted first: the cache entry is the one of
    this data's content, wherever it lies. The features' ``meta`` records the ``data_fingerprint``.
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
    indices = subset_indices(len(data), cfg.limit, labels=np.asarray(data.targets))
    return extract(
        handle, data, indices, cache, kind, cfg.extract,
        provenance={"dataset_size": len(data), "data_fingerprint": fingerprint,
                    **(data.cache_provenance() if hasattr(data, "cache_provenance") else {})},
        desc=f"{task.name}/{split}",
    )


def check_same_data(feats: Features, fingerprint: str, task: TaskSpec, split: str) -> None:
    """The features must be those of the data a row names (they differ only if the data changed mid-run)."""
    if feats.meta.get("data_fingerprint") != fingerprint:
        raise ClipBenchError(f"task {task.name!r}: the data of split {split!r} changed while it was evaluated; "
                             "run again once the data is in place.")


def _check_labels(task: TaskSpec, labels: np.ndarray, n_classes: int) -> None:
    top = int(labels.max()) if labels.ndim == 1 and labels.size else (labels.shape[1] - 1 if labels.ndim == 2 else -1)
    if top >= n_classes:
        raise ClipBenchError(
            f"task {task.name!r}: the data has label {top} but the class-name list has only {n_classes} names; "
            "the class names do not match this source's labels (check --classnames or the task's label_map)."
        )


def _check_classname_count(task: TaskSpec, given: int, where: str) -> None:
    """A --classnames list must name every class of the task, no more and no fewer."""
    names = task.prompt_set().classnames
    own = len(names)
    groups = task_class_groups(task)
    allowed = {own} | ({len(groups)} if groups is not None else set())
    if given not in allowed:
        want = " or ".join(str(n) for n in sorted(allowed))
        shown = [n if isinstance(n, str) else "/".join(n) for n in names]
        first = ", ".join(repr(n) for n in shown[:3]) + (f", ..., {shown[-1]!r}" if len(shown) > 3 else "")
        raise ClipBenchError(
            f"--classnames {where} gives {given} class names but task {task.name!r} has {want} classes; "
            f"give exactly one name per class, in the task's label order (its own names: {first})."
        )


def _subset_scores(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scores restricted to each declared class subset (e.g. ImageNet on ImageNet-R's 200 classes)."""
    out = {}
    for name, ref in (task.extra.get("subsets") or {}).items():
        idx = class_indices(ref)
        if idx[-1] >= logits.shape[1]:
            raise ClipBenchError(f"task {task.name!r}: its subset {name!r} names class {int(idx[-1])}, but the task "
                                 f"has only {logits.shape[1]} classes (0..{logits.shape[1] - 1}); fix the subset's "
                                 "class indices in the task file.")
        keep = np.isin(labels, idx)
        if not keep.any():  # e.g. a --limit run that saw none of the subset's classes
            continue
        remap = np.full(logits.shape[1], -1, dtype=np.int64)
        remap[idx] = np.arange(len(idx))
        out[name] = (logits[keep][:, idx], remap[labels[keep]])
    return out


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


def zeroshot_identity(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> dict[str, Any]:
    """The fields of a zero-shot row that are known before running (provenance, prompt hashes, standardness)."""
    prompt_set = task.prompt_set(cfg.classnames, cfg.templates)
    prov = provenance(handle, task, cfg)
    own = task.prompt_set() if (cfg.classnames or cfg.templates) else prompt_set
    same_prompts = (prompt_set.classnames_hash, prompt_set.templates_hash) == (own.classnames_hash, own.templates_hash)
    prov.update(
        protocol="zeroshot", templates_hash=prompt_set.templates_hash, classnames_hash=prompt_set.classnames_hash,
        templates_file=cfg.templates, classnames_file=cfg.classnames, standard=prov["standard"] and same_prompts,
    )
    return prov


def evaluate_zeroshot_task(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
    """Zero-shot result rows for one task (main split, plus any class-subset rows); retrieval tasks score recall@k."""
    cfg = replace(cfg, feature_kind="embed")  # zero-shot always scores the image embedding
    if task_kind(task) == "retrieval":
        return evaluate_retrieval_task(handle, task, cfg)
    prompt_set = task.prompt_set(cfg.classnames, cfg.templates)
    if cfg.classnames:
        _check_classname_count(task, len(prompt_set.classnames), cfg.classnames)
    split = task.eval_split
    feats = get_features(handle, task, split, cfg)
    if len(feats) == 0:
        raise ClipBenchError(f"task {task.name!r}: split {split!r} has no samples to evaluate.")
    classifier = build_classifier(handle, prompt_set, cfg.cache_dir, quiet=cfg.quiet)
    logits = apply_class_groups(task, zeroshot_logits(feats.features, classifier))
    _check_labels(task, feats.labels, logits.shape[1])
    common = zeroshot_identity(handle, task, cfg)
    check_same_data(feats, common["data_fingerprint"], task, split)
    skipped = int(feats.meta.get("skipped_images", 0) or 0)
    common.update(skipped_images=skipped, standard=common["standard"] and skipped == 0)
    main_key = main_metric_key(task.metric)
    rows = [
        make_row(**common, metric=m, value=v, is_main=(m == main_key), subset=None, n=int(len(feats)))
        for m, v in all_metrics(logits, feats.labels, task.metric).items()
    ]
    attach_outcomes(rows, logits, feats.labels, cfg.output_dir)  # intervals + per-sample evidence (stats)
    if feats.labels.ndim == 1:
        for name, (sub_logits, sub_labels) in _subset_scores(task, logits, feats.labels).items():
            sub_rows = [make_row(**common, metric=m, value=v, is_main=(m == "top1"), subset=name,
                                 n=int(len(sub_labels)))
                        for m, v in all_metrics(sub_logits, sub_labels, "accuracy").items()]
            rows.extend(attach_outcomes(sub_rows, sub_logits, sub_labels, cfg.output_dir))
    return rows


def zeroshot(
    model: str | ModelSpec | LoadedModel | ModelHandle,
    tasks: str | list[str],
    config: EvalConfig | None = None,
    pretrained: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Zero-shot evaluation of `model` on `tasks` (names, collections or task files); returns the result rows.

    Rows are appended to ``<output_dir>/results.jsonl`` as each task finishes (so a crash loses no
    finished task), and ``leaderboard.csv`` is rebuilt.

    Args:
        model: A model reference (``"tiny-clip-digits"``, ``"ViT-B-32"`` with `pretrained`, ``"hf-hub:org/repo"``,
            a checkpoint ...; see ``clip-bench models``) or an already loaded model.
        tasks: Task names, collections (``"clip27"``) or task YAML files; one string or a list.
        config: Data root, caches, output folder and the other shared options (default ``EvalConfig()``).
        pretrained: The pretrained tag or checkpoint file of an open_clip architecture.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; default: the GPU if there is one.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast; part of each row's identity).
        **overrides: EvalConfig fields to set for this call (``limit=100``, ``output_dir=None``, ...).
    """
    return run_protocol(model, tasks, config, pretrained, device, precision, overrides, evaluate_zeroshot_task)


def run_protocol(
    model: str | ModelSpec | LoadedModel | ModelHandle,
    tasks: str | list[str],
    config: EvalConfig | None,
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
        with run_scope(), collect_unwritten() as reasons:  # each split's data is fingerprinted once per task
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
