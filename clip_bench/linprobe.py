"""Linear-probe and few-shot protocols over cached features: rows in the same results as zero-shot.

Features come from the feature cache (extracting only what is missing); once they exist, the model
is never loaded. The probe maths lives in ``clip_bench.probe``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import distributed as ddp
from .errors import ClipBenchError
from .evaluate import EvalConfig, get_features, provenance, run_protocol
from .metrics import main_metric, main_metric_key
from .models import LoadedModel, ModelHandle, ModelSpec
from .outcomes import attach_outcomes, attach_seed_mean_interval
from .probe.protocol import ProbeConfig, run_fewshot, run_linear_probe
from .progress import progress_bar
from .results import make_row
from .tasks import TaskSpec


def _as_float(x: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _split_features(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig, normalize: bool) -> dict[str, Any]:
    """train / val (if the task has one) / test features and labels."""
    if task.train_split is None:
        raise ClipBenchError(f"task {task.name!r} has no train split, so it cannot be probed (splits: {', '.join(task.splits)}).")
    out: dict[str, Any] = {}
    for role, split in (("train", "train"), ("val", "val" if "val" in task.splits else None), ("test", task.eval_split)):
        if split is None:
            out[role] = (None, None)
            continue
        f = get_features(handle, task, split, cfg)
        out[role] = (_as_float(f.features, normalize), np.asarray(f.labels))
    return out


def _metric(task: TaskSpec, bar: Any = None) -> Any:
    """The task's main metric; each call (one fitted C scored) ticks the progress bar if given."""
    fn = main_metric(task.metric)

    def scored(scores: np.ndarray, targets: np.ndarray) -> float:
        if bar is not None:
            bar.update(1)
        scored.last = (scores, targets)  # the final call scores the test split: its evidence (outcomes)
        return fn(scores, targets)

    return scored


def _common(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig, normalize: bool) -> dict[str, Any]:
    row = provenance(handle, task, cfg)
    row["feature_kind"] += "+l2" if normalize else ""
    return {**row, "metric": main_metric_key(task.metric), "is_main": True, "subset": None}


def linprobe(
    model: str | ModelSpec | LoadedModel | ModelHandle,
    tasks: str | list[str],
    config: EvalConfig | None = None,
    pretrained: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    probe: ProbeConfig | None = None,
    seed: int = 0,
    normalize: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """The paper's linear probe on each task: C chosen on val, refit on train+val, test main metric."""
    probe = probe or ProbeConfig()

    def body(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
        s = _split_features(handle, task, cfg, normalize)
        with progress_bar(desc=f"{task.name}: C search", unit="fit", quiet=cfg.quiet or not ddp.is_main()) as bar:
            metric = _metric(task, bar)
            res = run_linear_probe(*s["train"], *s["val"], *s["test"], metric, seed=seed, config=probe,
                                   multilabel=task.multilabel, n_classes=len(task.prompt_set().classnames))
        return attach_outcomes([make_row(
            **_common(handle, task, cfg, normalize), protocol="linear_probe", value=res["test_score"], n=res["n_test"],
            C=res["C"], solver=res["solver"], seed=seed, val_score=res["val_score"], val_source=res["val_source"],
            n_train=res["n_train"], n_val=res["n_val"], n_refit=res["n_refit"], n_iter=res["n_iter"],
            converged=res["converged"], wall_time_s=round(res["wall_time_s"], 3), sweep=res["sweep"],
        )], *metric.last, cfg.output_dir)

    return run_protocol(model, tasks, config, pretrained, device, precision, overrides, body)


def fewshot(
    model: str | ModelSpec | LoadedModel | ModelHandle,
    tasks: str | list[str],
    config: EvalConfig | None = None,
    shots: tuple[int, ...] = (1, 2, 4, 8, 16),
    seeds: int = 3,
    pretrained: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    probe: ProbeConfig | None = None,
    allow_fewer: bool = False,
    normalize: bool = False,
    with_zeroshot: bool = True,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """k-shot probes per (k, seed) plus mean/std rows, and the zero-shot rows for the same model and task."""
    from .evaluate import evaluate_zeroshot_task

    probe = probe or ProbeConfig()

    def body(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
        if task.multilabel:
            raise ClipBenchError(f"task {task.name!r} is multi-label; k-shot sampling per class is not defined for it.")
        s = _split_features(handle, task, cfg, normalize)
        train_X, train_y = s["train"]
        test_X, test_y = s["test"]
        n_classes = len(task.prompt_set().classnames)
        common = _common(handle, task, cfg, normalize)
        rows = []
        bar = progress_bar(total=len(shots) * seeds, desc=f"{task.name}: k-shot probes", unit="probe",
                           quiet=cfg.quiet or not ddp.is_main())
        for k in shots:
            scores = []
            for seed in range(seeds):
                metric = _metric(task)
                res = run_fewshot(train_X, train_y, test_X, test_y, metric, k, seed, config=probe,
                                  n_classes=n_classes, allow_fewer=allow_fewer)
                scores.append(res["test_score"])
                bar.update(1)
                rows.extend(attach_outcomes([make_row(
                    **common, protocol=f"fewshot_k{k}", value=res["test_score"], n=res["n_test"], k=k, seed=seed,
                    C=res["C"], C_rule=res["C_rule"], solver=res["solver"], n_train=res["n_shots"],
                    shots_sha1=res["shots_sha1"], n_iter=res["n_iter"],
                )], *metric.last, cfg.output_dir))
            rows.append(attach_seed_mean_interval(make_row(
                **common, protocol=f"fewshot_k{k}", value=float(np.mean(scores)), n=int(len(test_y)), k=k,
                aggregate="mean", std=float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0, seeds=seeds,
            ), rows[-seeds:]))
        bar.close()
        if with_zeroshot:
            rows.extend(evaluate_zeroshot_task(handle, task, cfg))
        return rows

    return run_protocol(model, tasks, config, pretrained, device, precision, overrides, body)
