"""Linear-probe and few-shot protocols over cached features: rows in the same results as zero-shot.

Features come from the feature cache (extracting only what is missing); once they exist, the model
is never loaded. They stay float16 and memory-mapped (``probe_features``). Which probes a task runs
(one, one per fold, one per official split) is data in its task file (``probe_runs``). The probe
maths lives in ``clip_bench.probe``.
"""

from __future__ import annotations

import functools
from dataclasses import fields, replace
from typing import Any

import numpy as np

from clip_bench.cache.data_fingerprint import combine
from clip_bench.cache.features import Features
from clip_bench.config import EvalConfig
from clip_bench.loaders.subset import subset_indices
from clip_bench.metrics.classification import main_metric, main_metric_key
from clip_bench.models.resolve import ModelHandle, ModelRef
from clip_bench.probe import PROBE_RULE
from clip_bench.probe.protocol import ProbeConfig, run_fewshot, run_linear_probe
from clip_bench.probe.representation import normalized_rows, resolve_feature_kind
from clip_bench.protocols.runner import (
    check_same_data,
    data_fingerprint,
    get_features,
    provenance,
    run_protocol,
)
from clip_bench.results.outcomes import attach_outcomes, attach_seed_mean_interval
from clip_bench.results.rows import make_row
from clip_bench.tasks.catalog import TaskRefs
from clip_bench.tasks.probe_plan import Folds, ProbeRun, check_fold_source, probe_plan, read_folds
from clip_bench.tasks.spec import TaskSpec
from clip_bench.util import distributed as ddp
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.progress import progress_bar


class _ProbeData:
    """One task's probe inputs: features per split (loaded once, float16), labels, the feature kind."""

    def __init__(self, handle: ModelHandle, task: TaskSpec, cfg: EvalConfig, normalize: bool) -> None:
        self.handle, self.task, self.cfg, self.normalize = handle, task, cfg, normalize
        self.kind = resolve_feature_kind(handle.spec.arch_config, cfg.feature_kind)
        self._cache: dict[str, tuple[Features, np.ndarray]] = {}

    def split(self, split: str) -> tuple[Features, np.ndarray]:
        """(features, probe-ready X) of a split; X is the cache's float16 memmap unless normalised."""
        if split not in self._cache:
            f = get_features(self.handle, self.task, split, self.cfg, kind=self.kind)
            check_same_data(f, data_fingerprint(self.task, split, self.cfg), self.task, split)  # the rows name it
            X = normalized_rows(f.features) if self.normalize else f.features
            self._cache[split] = (f, X)
        return self._cache[split]

    def xy(self, split: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Features and targets of a split. Multi-label targets may hold -1 (ignore: VOC's "difficult"):
        the probe protocol trains with them as negatives, while the validation and test metrics skip
        them (``probe.protocol.fit_targets``)."""
        if split is None:
            return None, None
        f, X = self.split(split)
        return X, np.asarray(f.labels)

    @property
    def skipped_images(self) -> int:
        """Images ``--skip-bad-images`` left out of the splits read so far (train, val and test)."""
        return sum(int(f.meta.get("skipped_images", 0) or 0) for f, _ in self._cache.values())

    @property
    def dim(self) -> int:
        return int(next(iter(self._cache.values()))[1].shape[1]) if self._cache else 0


def _metric(task: TaskSpec, bar: Any = None) -> Any:
    """The task's main metric; each call (one fitted C scored) ticks the progress bar if given."""
    fn = main_metric(task.metric)

    @functools.wraps(fn)  # carries fn.per_example, which the C search's paired tie band reads (probe/c_search.py)
    def scored(scores: np.ndarray, targets: np.ndarray) -> float:
        if bar is not None:
            bar.update(1)
        scored.last = (scores, targets)  # the final call scores the test split: its evidence (outcomes)
        return fn(scores, targets)

    return scored


def probe_provenance(
    handle: ModelHandle, task: TaskSpec, cfg: EvalConfig, normalize: bool = False,
    fit_splits: list[str] | None = None, test_splits: list[str] | None = None,
) -> dict[str, Any]:
    """``evaluate.provenance`` with the feature kind a probe really uses (``auto`` resolved; ``+l2`` if normalised):
    the fields a probe row's identity is built from (the sweep predicts rows with it).

    ``train_data_fingerprint`` is the content fingerprint of the splits the probe learns from
    (`fit_splits`: train and val), ``data_fingerprint`` that of the splits it is scored on (`test_splits`);
    by default those of the task's linear-probe runs (``probe_runs``)."""
    if fit_splits is None or test_splits is None:
        runs = probe_plan(task).runs
        fit_splits = list(dict.fromkeys(s for r in runs for s in (r.train, r.val) if s is not None))
        test_splits = list(dict.fromkeys(r.test for r in runs))
    kind = resolve_feature_kind(handle.spec.arch_config, cfg.feature_kind)
    row = provenance(handle, task, replace(cfg, feature_kind=kind))
    row["feature_kind"] = kind + ("+l2" if normalize else "")
    row["probe_rule"] = PROBE_RULE  # a row of an earlier C rule or solver is another measurement
    row.update(_split_fingerprints(task, cfg, fit_splits, test_splits))
    return row


def _split_fingerprints(task: TaskSpec, cfg: EvalConfig, fit_splits: list[str],
                        test_splits: list[str]) -> dict[str, str]:
    """``train_data_fingerprint`` (the splits learned from) and ``data_fingerprint`` (the splits scored)."""
    return {"train_data_fingerprint": combine({s: data_fingerprint(task, s, cfg) for s in fit_splits}),
            "data_fingerprint": combine({s: data_fingerprint(task, s, cfg) for s in test_splits})}


#: ProbeConfig fields that cannot move a probe's number beyond the solver's tolerance (or have their own row field).
_NOT_IDENTITY = ("solver", "device", "n_threads", "val_fraction")


def probe_settings(probe: ProbeConfig, held_out: bool = False) -> dict[str, Any]:
    """Identity settings of a non-default probe configuration: ``probe_config`` (the changed knobs: C grid,
    tie rule, prior, ...) and ``val_fraction`` when a validation split was held out at a non-default
    fraction. Rows of the default configuration get neither, so their ``result_id`` is unchanged."""
    default = ProbeConfig()
    changed = {f.name: getattr(probe, f.name) for f in fields(ProbeConfig)
               if f.name not in _NOT_IDENTITY and getattr(probe, f.name) != getattr(default, f.name)}
    out: dict[str, Any] = {"probe_config": changed} if changed else {}
    if held_out and probe.val_fraction != default.val_fraction:
        out["val_fraction"] = probe.val_fraction
    return out


def _with_settings(common: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Row fields ``common`` plus non-default probe settings (:func:`probe_settings`): a row made with any
    is another measurement than the paper's protocol, so it is not standard (never the leaderboard's)."""
    return {**common, **settings, "standard": common["standard"] and not settings}


def _common(
    handle: ModelHandle, task: TaskSpec, cfg: EvalConfig, data: _ProbeData,
    fit_splits: list[str] | None = None, test_splits: list[str] | None = None,
) -> dict[str, Any]:
    row = {**probe_provenance(handle, task, cfg, data.normalize, fit_splits, test_splits),
           "metric": main_metric_key(task.metric),
           "is_main": True, "subset": None, "features_requested": cfg.feature_kind, "feature_dim": data.dim}
    skipped = data.skipped_images  # a probe on features with images left out is another measurement (result_id)
    row.update(skipped_images=skipped, standard=row["standard"] and skipped == 0)
    return row


def _fold_rows(data: _ProbeData, run: ProbeRun, folds: Folds) -> np.ndarray:
    """Rows of the split's features that make up fold `run.fold`.

    Fold files index the whole split. Under ``--limit`` the features hold a subset: its dataset indices
    are drawn again by the same rule (which needs the split's labels) and checked against the cached
    labels, so a mismatch is an error, never a wrong fold."""
    f, _ = data.split(run.train)
    if f.meta.get("skipped_images"):
        raise ClipBenchError(
            f"task {data.task.name!r}: {f.meta['skipped_images']} unreadable images were skipped in the "
            f"{run.train} split, so its features no longer line up with the fold file; fix those images."
        )
    fold = folds.indices[run.fold]
    if data.cfg.limit is None:
        return fold
    from clip_bench.loaders import load_split

    full = load_split(data.task, data.cfg.source, run.train, data.cfg.data_root, data.cfg.download)
    labels = np.asarray(full.targets)
    positions = subset_indices(len(labels), data.cfg.limit, labels=labels)
    if not np.array_equal(labels[positions], np.asarray(f.labels)):
        raise ClipBenchError(
            f"task {data.task.name!r}: the cached --limit features of split {run.train!r} are not the subset "
            "this version draws; run again with --no-cache (or without --limit)."
        )
    return np.flatnonzero(np.isin(positions, fold))


def linprobe(
    model: ModelRef, tasks: TaskRefs, config: EvalConfig | None = None,
    pretrained: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    probe: ProbeConfig | None = None,
    seed: int = 0,
    normalize: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """The paper's linear probe on each task: C chosen on val, refit on train+val, test main metric.

    Tasks whose protocol runs several probes (STL-10's 10 folds, UCF101's 3 splits) give one row per
    run (``is_main`` false) and a mean row with the spread (the main value). Returns the result rows,
    written as :func:`clip_bench.zeroshot` writes them.

    Args:
        model: A model reference or a loaded model (as for :func:`clip_bench.zeroshot`).
        tasks: Task names, collections or task YAML files; one string or a list.
        config: The shared options: data root, caches, output folder (default ``EvalConfig()``).
        pretrained: The pretrained tag or checkpoint file of an open_clip architecture.
        device: ``"cpu"``, ``"cuda"``, ...; default: the GPU if there is one.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (part of each row's identity).
        probe: Solver and C-search settings (default ``ProbeConfig()``, the paper's protocol).
        seed: Seed of the held-out validation split, where a task has no val split of its own.
        normalize: L2-normalise the features before the probe.
        **overrides: EvalConfig fields to set for this call (``feature_kind="pre-proj"``, ...).
    """
    probe = probe or ProbeConfig()

    def body(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
        plan = probe_plan(task)
        check_fold_source(plan, task.source(cfg.source))
        data = _ProbeData(handle, task, cfg, normalize)
        folds = None
        if plan.aggregate == "folds":
            f, _ = data.split(plan.runs[0].train)
            folds = read_folds(plan, task.source(cfg.source), cfg.data_root, int(f.meta.get("dataset_size", len(f))))
        n_classes = len(task.prompt_set().classnames)
        results = []
        for run in plan.runs:
            train_X, train_y = data.xy(run.train)
            if run.fold is not None:
                rows = _fold_rows(data, run, folds)
                train_X, train_y = train_X[rows], train_y[rows]
            val_X, val_y = data.xy(run.val)
            test_X, test_y = data.xy(run.test)
            desc = f"{task.name}{f' {run.name}' if run.name else ''}: C search"
            with progress_bar(desc=desc, unit="fit", quiet=cfg.quiet or not ddp.is_main()) as bar:
                metric = _metric(task, bar)
                res = run_linear_probe(train_X, train_y, val_X, val_y, test_X, test_y, metric, seed=seed,
                                       config=probe, multilabel=task.multilabel, n_classes=n_classes)
            results.append((run, res, metric.last))
        common = _common(handle, task, cfg, data)
        rows = []
        for run, res, evidence in results:
            where = {} if plan.aggregate is None else {
                "run": run.name, "train_split": run.train, "val_split": run.val, "test_split": run.test,
                **({"fold": run.fold, "folds_sha256": folds.sha256} if folds is not None else {}),
            }
            own_data = {} if plan.aggregate is None else _split_fingerprints(  # this run's own splits
                task, cfg, [s for s in (run.train, run.val) if s is not None], [run.test])
            rows.extend(attach_outcomes([make_row(
                **_with_settings({**common, "is_main": plan.aggregate is None, **own_data},
                                 probe_settings(probe, res["val_source"] == "held_out")),
                protocol="linear_probe", value=res["test_score"],
                n=res["n_test"], C=res["C"], solver=res["solver"], seed=seed, val_score=res["val_score"],
                val_source=res["val_source"], n_train=res["n_train"], n_val=res["n_val"], n_refit=res["n_refit"],
                n_iter=res["n_iter"], converged=res["converged"], wall_time_s=round(res["wall_time_s"], 3),
                sweep=res["sweep"], C_at_grid_edge=res.get("C_at_grid_edge"), C_tie_band=res.get("C_tie_band"),
                sweep_converged=res.get("sweep_converged"), sweep_n_fits=res.get("sweep_n_fits"),
                val_log_loss=res.get("val_log_loss"), **where,
            )], *evidence, cfg.output_dir))
        if plan.aggregate is not None:
            # The task's result: the mean over its runs. Its identity is the task's (the runs are part of the
            # task definition), so it carries no ``aggregate`` setting; ``over`` says what it averages.
            values = [res["test_score"] for _, res, _ in results]
            tests = {run.test: res["n_test"] for run, res, _ in results}
            mean = attach_seed_mean_interval(make_row(
                **_with_settings(common,
                                 probe_settings(probe, any(res["val_source"] == "held_out" for _, res, _ in results))),
                protocol="linear_probe", value=float(np.mean(values)), n=int(sum(tests.values())),
                over=plan.aggregate, n_runs=len(values), runs=[r.name for r, _, _ in results],
                run_values=values, std=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                min=float(np.min(values)), max=float(np.max(values)), seed=seed, solver=probe.solver,
                **({"folds_sha256": folds.sha256} if folds is not None else {}),
            ), rows)
            if mean.get("ci_method"):  # combined like few-shot seeds (the runs' test errors taken as correlated)
                mean["ci_method"] = mean["ci_method"].replace("seeds+", f"{plan.aggregate}+", 1)
            rows.append(mean)
        return rows

    return run_protocol(model, tasks, config, pretrained, device, precision, overrides, body)


def fewshot(
    model: ModelRef, tasks: TaskRefs, config: EvalConfig | None = None,
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
    """k-shot probes per (k, seed) plus mean/std rows, and the zero-shot rows for the same model and task.

    Shots are drawn from the task's train split and scored on its eval split (for UCF101: split 1).
    Returns the result rows, written as :func:`clip_bench.zeroshot` writes them.

    Args:
        model: A model reference or a loaded model (as for :func:`clip_bench.zeroshot`).
        tasks: Task names, collections or task YAML files; one string or a list.
        config: Data root, caches, output folder and the other shared options (default ``EvalConfig()``).
        shots: The k values (examples per class).
        seeds: How many draws of the k examples per k (seeds 0 .. seeds-1).
        pretrained: The pretrained tag or checkpoint file of an open_clip architecture.
        device: ``"cpu"``, ``"cuda"``, ...; default: the GPU if there is one.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        probe: Solver settings (default ``ProbeConfig()``).
        allow_fewer: Let a class with fewer than k training examples use all it has (else an error).
        normalize: L2-normalise the features before the probe.
        with_zeroshot: Also return (and write) the zero-shot rows, the curve's k = 0 point.
        **overrides: EvalConfig fields to set for this call.
    """
    from clip_bench.protocols.zeroshot import evaluate_zeroshot_task

    probe = probe or ProbeConfig()

    def body(handle: ModelHandle, task: TaskSpec, cfg: EvalConfig) -> list[dict[str, Any]]:
        if task.multilabel:
            raise ClipBenchError(f"task {task.name!r} is multi-label; k-shot sampling per class is not defined for it.")
        if task.train_split is None:
            raise ClipBenchError(
                f"task {task.name!r} has no train split, so it cannot be probed (splits: {', '.join(task.splits)})."
            )
        data = _ProbeData(handle, task, cfg, normalize)
        train_X, train_y = data.xy(task.train_split)
        test_X, test_y = data.xy(task.eval_split)
        n_classes = len(task.prompt_set().classnames)
        common = _with_settings(_common(handle, task, cfg, data, [task.train_split], [task.eval_split]),
                                probe_settings(probe))
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
                    C=res["C"], C_rule=res["C_rule"], C_cv=res.get("C_cv"), C_prior=res.get("C_prior"),
                    C_prior_refuted=res.get("C_prior_refuted"),
                    solver=res["solver"], n_train=res["n_shots"],
                    shots_sha1=res["shots_sha1"], n_iter=res["n_iter"], converged=res.get("converged"),
                    C_at_grid_edge=res.get("C_at_grid_edge"), C_tie_band=res.get("C_tie_band"),
                    sweep_converged=res.get("sweep_converged"),
                )], *metric.last, cfg.output_dir))
            rows.append(attach_seed_mean_interval(make_row(
                **common, protocol=f"fewshot_k{k}", value=float(np.mean(scores)), n=int(len(test_y)), k=k,
                aggregate="mean", std=float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0, seeds=seeds,
            ), rows[-seeds:]))
        bar.close()
        if with_zeroshot:  # zero-shot always scores the image embedding, whatever the probe used
            rows.extend(evaluate_zeroshot_task(handle, task, replace(cfg, feature_kind="embed")))
        return rows

    return run_protocol(model, tasks, config, pretrained, device, precision, overrides, body)
