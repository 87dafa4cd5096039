"""The zero-shot classification protocol: a class-embedding head from prompt ensembles, scored on cached
image features; ``kind: retrieval`` tasks go to :mod:`clip_bench.protocols.retrieval`, ``kind: winogavil`` tasks
to :mod:`clip_bench.protocols.winogavil`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from clip_bench.cache.features import cached_group_codes
from clip_bench.config import EvalConfig
from clip_bench.metrics.classification import GROUP_METRICS, all_metrics, group_table, main_metric_key
from clip_bench.models.resolve import ModelHandle, ModelRef
from clip_bench.protocols.retrieval import evaluate_retrieval_task
from clip_bench.protocols.runner import check_same_data, get_features, provenance, run_protocol
from clip_bench.protocols.winogavil import evaluate_winogavil_task
from clip_bench.protocols.zeroshot_head import build_classifier, zeroshot_logits
from clip_bench.results.outcomes import attach_outcomes
from clip_bench.results.rows import make_row
from clip_bench.tasks.catalog import TaskRefs
from clip_bench.tasks.class_groups import apply_class_groups, class_indices, task_class_groups
from clip_bench.tasks.spec import TaskSpec, task_kind
from clip_bench.util.errors import ClipBenchError


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


def subset_scores(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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


def group_fields(
    task: TaskSpec, metric: str, logits: np.ndarray, labels: np.ndarray, groups: np.ndarray | None,
) -> dict[str, Any]:
    """A row's per-group values (``extra.groups``: every group's code, size and value) for a task with ``group_by``
    (top-1, top-5 and worst-group rows), and, for a worst-group row, the code of the group that sets it."""
    table = group_table(metric, logits, labels, groups) if groups is not None else None
    if table is None:
        return {}
    fields: dict[str, Any] = {"group_by": dict(task.extra["group_by"]), "groups": table.records()}
    if metric in GROUP_METRICS:
        fields["worst_group"] = table.worst_code
    return fields


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
    if task_kind(task) == "winogavil":
        return evaluate_winogavil_task(handle, task, cfg)
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
    groups = cached_group_codes(task, feats)  # each image's group code (tasks with group_by), else None
    rows = [
        make_row(**common, metric=m, value=v, is_main=(m == main_key), subset=None, n=int(len(feats)),
                 **group_fields(task, m, logits, feats.labels, groups))
        for m, v in all_metrics(logits, feats.labels, task.metric, groups).items()
    ]
    attach_outcomes(rows, logits, feats.labels, cfg.output_dir, groups=groups)  # intervals + per-sample evidence
    if feats.labels.ndim == 1:
        for name, (sub_logits, sub_labels) in subset_scores(task, logits, feats.labels).items():
            sub_rows = [make_row(**common, metric=m, value=v, is_main=(m == "top1"), subset=name,
                                 n=int(len(sub_labels)))
                        for m, v in all_metrics(sub_logits, sub_labels, "accuracy").items()]
            rows.extend(attach_outcomes(sub_rows, sub_logits, sub_labels, cfg.output_dir))
    return rows


def zeroshot(
    model: ModelRef, tasks: TaskRefs, config: EvalConfig | None = None,
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
