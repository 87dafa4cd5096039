"""Sweeps: a grid of models x tasks x protocols that skips finished jobs, so it can be restarted."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clip_bench.cache.data_fingerprint import run_scope
from clip_bench.config import EvalConfig
from clip_bench.models.resolve import ModelHandle, resolve_model
from clip_bench.results.rows import is_standard, make_row, read_rows
from clip_bench.tasks.catalog import expand_tasks, get_task
from clip_bench.tasks.spec import task_kind
from clip_bench.util import distributed as ddp
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.progress import progress_bar
from clip_bench.util.registry import Registry

#: protocol name -> (function(model_handle, task_name, cfg) -> rows, the protocol name its rows carry)
PROTOCOLS: Registry = Registry("protocol")
PROTOCOLS.register("zeroshot", "clip_bench.protocols.zeroshot:zeroshot")
PROTOCOLS.register("linprobe", "clip_bench.protocols.linprobe:linprobe")
ROW_PROTOCOL = {"zeroshot": "zeroshot", "linprobe": "linear_probe"}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    pretrained: str | None = None


@dataclass(frozen=True)
class Job:
    model: ModelEntry
    task: str
    protocol: str

    def label(self) -> str:
        m = self.model.name + (f":{self.model.pretrained}" if self.model.pretrained else "")
        return f"{m} / {self.task} / {self.protocol}"


MODEL_KEYS = ("name", "pretrained")


def read_models_file(path: str | Path) -> list[ModelEntry]:
    """Models to sweep: YAML (a list of names or {name, pretrained} maps) or text lines ``name [pretrained]``.

    Anything else (unknown keys, names that are not strings, an empty list) is a one-line error.
    """
    import difflib

    from clip_bench.tasks.loader import read_yaml

    path = Path(path)
    if not path.is_file():
        raise ClipBenchError(f"models file {path} {'is a directory' if path.is_dir() else 'does not exist'}.")
    out: list[ModelEntry] = []
    if path.suffix in (".yaml", ".yml"):
        items = read_yaml(path, "models file")
        if not isinstance(items, list):
            raise ClipBenchError(
                f"models file {path} must hold a YAML list of model names or {{name, pretrained}} mappings, "
                f"got {type(items).__name__ if items is not None else 'nothing'}."
            )
        for it in items:
            if isinstance(it, dict):
                unknown = [k for k in it if k not in MODEL_KEYS]
                if unknown:
                    close = difflib.get_close_matches(str(unknown[0]), MODEL_KEYS, n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(MODEL_KEYS)}."
                    raise ClipBenchError(f"models file {path}: unknown key {unknown[0]!r} in {it!r}; {hint}")
                name, pretrained = it.get("name"), it.get("pretrained")
            else:
                name, pretrained = it, None
            if not isinstance(name, str) or not name.strip():
                raise ClipBenchError(
                    f"models file {path}: each entry must be a model name (a string) or a mapping with 'name', "
                    f"got {it!r}."
                )
            if pretrained is not None and not isinstance(pretrained, str):
                raise ClipBenchError(f"models file {path}: 'pretrained' must be a string (a tag or a file), "
                                     f"got {it!r}.")
            out.append(ModelEntry(name.strip(), pretrained))
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ClipBenchError(f"models file {path} is not UTF-8 text.") from None
        for number, line in enumerate(text.splitlines(), 1):
            parts = line.split("#", 1)[0].split()
            if len(parts) > 2:
                raise ClipBenchError(
                    f"models file {path}, line {number}: expected 'name [pretrained]', got {len(parts)} words: "
                    f"{line.strip()!r}."
                )
            if parts:
                out.append(ModelEntry(parts[0], parts[1] if len(parts) > 1 else None))
    if not out:
        raise ClipBenchError(f"models file {path} lists no models (one 'name [pretrained]' per line, or a YAML list).")
    return out


def plan(models: list[ModelEntry], tasks: list[str], protocols: list[str]) -> list[Job]:
    """Every (model, task, protocol) job, after checking every name."""
    for p in protocols:
        PROTOCOLS.get(p)
    names = expand_tasks(tasks)
    for n in names:
        get_task(n)
    # retrieval and WinoGAViL tasks have no classes to probe: only their zero-shot job exists
    return [Job(m, t, p) for m in models for t in names for p in protocols
            if p == "zeroshot" or task_kind(get_task(t)) == "classification"]


def _finished(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """result_id -> whether a standard row holds it, for every main-metric row in the results."""
    done: dict[str, bool] = {}
    for r in rows:
        if r.get("is_main") and not r.get("subset") and r.get("result_id"):
            done[r["result_id"]] = done.get(r["result_id"], False) or is_standard(r)
    return done


def expected_main_row(handle: ModelHandle, task_name: str, protocol: str, cfg: EvalConfig) -> dict[str, Any]:
    """The identity fields of the main-metric row `protocol` would write for this model, task and config.

    Built by the same code as the real rows (:func:`clip_bench.protocols.runner.provenance`), so its
    ``result_id`` is the real row's.
    """
    from clip_bench.metrics.classification import main_metric_key
    from clip_bench.protocols.runner import provenance
    from clip_bench.protocols.zeroshot import zeroshot_identity

    task = get_task(task_name).bind_data(cfg.data_root, cfg.source)
    metric = main_metric_key(task.metric)
    if protocol == "zeroshot" and task_kind(task) == "retrieval":
        from clip_bench.protocols.retrieval import PROTOCOL

        prov = provenance(handle, task, cfg)
        own = task.extra.get("caption_template")
        template = getattr(cfg, "caption_template", None) or own
        prov["standard"] = prov["standard"] and template == own
        return make_row(**prov, protocol=PROTOCOL, metric=task.metric, is_main=True, subset=None,
                        caption_template=template)
    if protocol == "zeroshot" and task_kind(task) == "winogavil":
        from clip_bench.protocols.winogavil import winogavil_identity

        return make_row(**winogavil_identity(handle, task, cfg), metric=task.metric, is_main=True, subset=None)
    if protocol == "zeroshot":
        return make_row(**zeroshot_identity(handle, task, cfg), metric=metric, is_main=True, subset=None)
    if protocol == "linprobe":
        from clip_bench.probe.protocol import ProbeConfig
        from clip_bench.protocols.linprobe import probe_provenance  # the feature kind --features auto resolves

        return make_row(**probe_provenance(handle, task, cfg), protocol=ROW_PROTOCOL[protocol], metric=metric,
                        is_main=True, subset=None, solver=ProbeConfig().solver, seed=0)
    raise ClipBenchError(f"sweep: no identity rule for protocol {protocol!r}.")


def is_done(job: Job, finished: dict[str, bool], cfg: EvalConfig, handle: ModelHandle | None = None) -> bool:
    """A job is done when the results hold a main-metric row with the identity this job would write.

    A standard job (no --limit, the task's own definition and prompts) only counts standard rows,
    so a ``--limit`` row never stands in for the full evaluation.
    """
    handle = handle or ModelHandle(resolve_model(job.model.name, job.model.pretrained))
    row = expected_main_row(handle, job.task, job.protocol, cfg)
    if row["result_id"] not in finished:
        return False
    return finished[row["result_id"]] or not row["standard"]


def _read_finished(cfg: EvalConfig) -> dict[str, bool]:
    """The finished identities in ``cfg.output_dir`` as rank 0 reads them (the same on every rank)."""
    if cfg.output_dir is None:
        return {}
    return ddp.broadcast_object(_finished(read_rows(cfg.output_dir)) if ddp.is_main() else None)


def _safe_is_done(job: Job, finished: dict[str, bool], cfg: EvalConfig, handle: ModelHandle) -> bool:
    """is_done, where a job whose identity cannot be built (a bad source name, say) is not done: running
    it reports the error on the job's own line."""
    try:
        return bool(finished) and is_done(job, finished, cfg, handle)
    except ClipBenchError:
        return False


def _model_handle(model: ModelEntry, device: str | None, precision: str) -> ModelHandle | ClipBenchError:
    """The model's handle, or the error resolving it gave (an unknown name, a missing checkpoint): its jobs
    fail with it and the sweep goes on. A device or precision no model can use stops the sweep."""
    try:
        spec = resolve_model(model.name, model.pretrained)
    except ClipBenchError as exc:
        return exc
    return ModelHandle(spec, device, precision)


def sweep(
    models: str | Path | list[str | tuple[str, str | None] | ModelEntry],
    tasks: str | list[str],
    protocols: str | list[str] = "zeroshot",
    config: EvalConfig | None = None,
    device: str | None = None,
    precision: str = "fp32",
    echo: Callable[[str], None] = print,
) -> dict[str, int]:
    """Run every job of models x tasks x protocols not already in the results, as ``clip-bench sweep`` does:
    a job counts as done when the output folder holds its standard main row with the identity it would
    write. A failing job is reported and the sweep goes on. Returns the counts (``ran``, ``done_before``,
    ``failed``).

    Args:
        models: Model names, ``(name, pretrained)`` pairs or ModelEntry items; or the path of a models file
            (YAML list, or ``name [pretrained]`` lines).
        tasks: Task names, collections or task YAML files; one string or a list.
        protocols: ``"zeroshot"`` and/or ``"linprobe"``.
        config: Data root, caches, output folder and the other shared options (default ``EvalConfig()``).
        device: ``"cpu"``, ``"cuda"``, ...; default: the GPU if there is one.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        echo: Where the per-job lines and the summary go.
    """
    if isinstance(models, str | Path):
        entries = read_models_file(models)
    else:
        entries = [m if isinstance(m, ModelEntry) else ModelEntry(m) if isinstance(m, str) else ModelEntry(*m)
                   for m in models]
    if config is None:
        config = EvalConfig()
    return run_sweep(entries, [tasks] if isinstance(tasks, str) else list(tasks),
                     [protocols] if isinstance(protocols, str) else list(protocols), config, device, precision, echo)


def run_sweep(
    models: list[ModelEntry], tasks: list[str], protocols: list[str], cfg: EvalConfig,
    device: str | None = None, precision: str = "fp32", echo: Callable[[str], None] = print,
    rows_out: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Run every unfinished job; a failing job is reported and the sweep goes on. Returns counts.

    With `rows_out`, the rows of the jobs that ran are appended to it and the per-job lines go to
    stderr (``--format json`` prints those rows, and nothing else, on stdout).
    """
    ddp.init_from_env()
    jobs = plan(models, tasks, protocols)
    with run_scope():  # each split's data is fingerprinted once for the whole sweep (identities and runs)
        counts = _run_jobs(jobs, cfg, device, precision, rows_out)
    if ddp.is_main():
        echo(f"sweep: {counts['ran']} ran, {counts['done_before']} already in the results, {counts['failed']} failed "
             f"({len(jobs)} jobs)")
    return counts


def _run_jobs(
    jobs: list[Job], cfg: EvalConfig, device: str | None, precision: str, rows_out: list[dict[str, Any]] | None,
) -> dict[str, int]:
    """Run every unfinished job of the sweep; returns the counts."""
    finished = _read_finished(cfg)
    counts = {"done_before": 0, "ran": 0, "failed": 0}
    quiet_job = replace(cfg, extract=replace(cfg.extract, quiet=True))
    handles: dict[ModelEntry, ModelHandle | ClipBenchError] = {}
    with progress_bar(total=len(jobs), desc="sweep", unit="job", quiet=cfg.quiet or not ddp.is_main()) as bar:
        job_lines = sys.stderr if rows_out is not None else None

        def say(msg: str) -> None:
            if ddp.is_main():
                bar.write(msg, file=job_lines)

        for job in jobs:
            if job.model not in handles:
                handles[job.model] = _model_handle(job.model, device or ddp.local_device(), precision)
            handle = handles[job.model]
            if isinstance(handle, ClipBenchError):  # an unknown name or a missing checkpoint fails each of its jobs
                counts["failed"] += 1
                say(f"FAILED  {job.label()}: {handle}")
                bar.update(1)
                continue
            if not _safe_is_done(job, finished, cfg, handle):
                finished = _read_finished(cfg)  # another sweep sharing the output dir may have finished it meanwhile
            if _safe_is_done(job, finished, cfg, handle):
                counts["done_before"] += 1
                bar.update(1)
                continue
            try:
                rows = PROTOCOLS.get(job.protocol)(handle, [job.task], quiet_job)
            except ClipBenchError as exc:
                counts["failed"] += 1
                say(f"FAILED  {job.label()}: {exc}")
            else:
                counts["ran"] += 1
                if rows_out is not None:
                    rows_out.extend(rows)
                main = next((r for r in rows if r.get("is_main") and not r.get("subset")), None)
                value = f"{main['metric']} {main['value']:.2f} (n={main['n']})" if main else "no main metric"
                say(f"done    {job.label()}: {value}")
            bar.update(1)
    return counts
