"""The ``clip-bench`` command: a thin layer that parses flags, calls the Python API and prints."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_bench.util.errors import ClipBenchError
from clip_bench.util.version import __version__

if TYPE_CHECKING:  # imported where used, so `clip-bench --version` stays light
    from clip_bench.config import EvalConfig
    from clip_bench.probe.protocol import ProbeConfig


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (what was wrong, and where to read more)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse ``type=`` for integers >= `low`; the message says what is expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer (1 or more)")
non_negative_int = _int_at_least(0, "an integer >= 0")


def open_fraction(text: str) -> float:
    """An argparse ``type=`` for a fraction strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (exclusive), e.g. 0.2, got {text!r}")
    return value


_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


def device_name(text: str) -> str:
    """An argparse ``type=`` for a torch device: cpu, cuda, cuda:N or mps."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N (a GPU index) or mps, got {text!r}")
    return text


def display_label(text: str) -> str:
    """An argparse ``type=`` for ``--name``: one line of text."""
    if not text.strip() or "\n" in text:
        raise argparse.ArgumentTypeError(f"expected a short name on one line, e.g. --name run-a, got {text!r}")
    return text.strip()


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="open_clip architecture, OpenAI name (ViT-B/32), hf-hub:org/repo, "
                   "an architecture .json, a transformers CLIP/SigLIP folder, transformers:org/repo, or "
                   "tiny-clip-digits")
    p.add_argument("--pretrained", default=None, help="pretrained tag or local .pt/.bin/.safetensors checkpoint")
    p.add_argument("--revision", default=None,
                   help="hub models: branch, tag or commit (default main; the commit is recorded)")
    p.add_argument("--device", type=device_name, default=None,
                   help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--name", type=display_label, default=None, help="a short name for this model in tables and figures "
                   "(recorded in the rows; default: the model reference, with local paths shortened)")


def _add_eval_args(p: argparse.ArgumentParser, with_task: bool = True) -> None:
    if with_task:
        p.add_argument("--task", nargs="+", required=True,
                       help="task names, collections (clip27, imagenet_shifts, all) or task .yaml files")
    p.add_argument("--data-root", type=Path, default=None,
                   help="where datasets live (default: $CLIP_BENCH_DATA or ~/.cache/clip_bench/data)")
    p.add_argument("--source", default=None, help="which of a task's data sources to read (see `clip-bench tasks`)")
    p.add_argument("--download", action="store_true", help="download data that a source can fetch by itself")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--workers", type=non_negative_int, default=2, help="DataLoader worker processes (0: in-process)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature/text cache (default: $CLIP_BENCH_CACHE or ~/.cache/clip_bench)")
    p.add_argument("--no-cache", action="store_true", help="compute everything afresh and write no cache")
    p.add_argument("--output-dir", type=Path, default=Path("results"), help="results.jsonl and leaderboard.csv go here")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="evaluate a fixed random subset of N samples (recorded in the rows)")
    p.add_argument("--shard-size", type=positive_int, default=2048,
                   help="images per feature-cache shard (the unit of resuming)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the image tower (GPU; the first batch compiles)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (counted in the rows) instead of stopping")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="json prints exactly this run's rows on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(prog="clip-bench", description="Evaluate CLIP-style models the way the CLIP paper did.")
    parser.add_argument("--version", action="version", version=f"clip-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    zs = sub.add_parser("zeroshot", help="zero-shot classification with prompt ensembles")
    _add_model_args(zs)
    _add_eval_args(zs)
    zs.add_argument("--templates", default=None,
                    help="templates file (JSON list, .txt, or CuPL JSON class -> sentences)")
    zs.add_argument("--classnames", default=None,
                    help="class-names file (JSON list or .txt), in the task's label order")
    zs.add_argument("--caption-template", default=None, help="retrieval tasks: put each caption in this text at {} "
                    "(e.g. 'a photo of {}'); recorded in the rows")
    zs.set_defaults(func=cmd_zeroshot)

    tasks = sub.add_parser("tasks", help="list tasks: classes, templates, metric, sources, data present")
    tasks.add_argument("names", nargs="*", help="only these tasks or collections")
    tasks.add_argument("--data-root", type=Path, default=None)
    tasks.add_argument("--format", choices=["table", "json"], default="table")
    tasks.set_defaults(func=cmd_tasks)

    models = sub.add_parser("models", help="list model names and pretrained tags")
    models.add_argument("--filter", default=None, help="only names containing this text")
    models.set_defaults(func=cmd_models)

    rep = sub.add_parser("report", help="leaderboard, effective robustness and few-shot plots from result rows")
    rep.add_argument("--results", type=Path, default=Path("results"), help="folder with results.jsonl")
    rep.add_argument("--out", type=Path, default=Path("report"), help="where to write the report (default: ./report)")
    rep.add_argument("--reference", action="store_true", help="print only the comparison with published numbers")
    rep.add_argument("--quiet", action="store_true")
    rep.set_defaults(func=cmd_report)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


def _eval_config(args: argparse.Namespace) -> EvalConfig:
    from clip_bench.config import EvalConfig, ExtractConfig
    from clip_bench.util.resources import default_cache_dir, default_data_root

    return EvalConfig(
        data_root=args.data_root or default_data_root(),
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        output_dir=args.output_dir,
        source=args.source,
        templates=getattr(args, "templates", None),
        classnames=getattr(args, "classnames", None),
        caption_template=getattr(args, "caption_template", None),
        label=getattr(args, "name", None),
        limit=args.limit,
        download=args.download,
        feature_kind=getattr(args, "features", None) or "auto",
        extract=ExtractConfig(
            batch_size=args.batch_size, workers=args.workers, quiet=args.quiet, skip_bad_images=args.skip_bad_images,
            shard_size=args.shard_size, compile=args.compile,
        ),
    )


def print_rows(rows: list[dict[str, Any]], fmt: str, out: Any = None) -> None:
    """Print result rows as JSON (exactly the rows) or as a readable table."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    if not rows:
        out.write("no results\n")
        return
    from clip_bench.results.rows import labelled, model_label
    from clip_bench.util.text_table import text_table

    header = ("model", "task", "protocol", "metric", "value", "95% CI", "n", "notes")
    lines = [header]
    for r in labelled(rows):
        label = model_label(r)  # short: a local checkpoint is named by its file, not its whole path
        task = r["task"] + (f" [{r['subset']} classes]" if r.get("subset") else "")
        metric = r["metric"] + (" *" if r.get("is_main") else "")
        ci = f"{r['ci_low']:.1f}-{r['ci_high']:.1f}" if r.get("ci_low") is not None else ""
        lines.append((label, task, r["protocol"], metric, f"{r['value']:.2f}", ci, str(r["n"]),
                      _notes(r.get("extra") or {})))
    has_ci = any(row[5] for row in lines[1:])
    keep = [j for j in range(len(header)) if (j != 5 or has_ci) and (j != 7 or any(row[7] for row in lines[1:]))]
    lines = [tuple(row[j] for j in keep) for row in lines]  # columns no row fills (CI, notes) are left out
    for line in text_table(lines, right=[i for i, j in enumerate(keep) if j in (4, 5, 6)]):
        out.write(line + "\n")
    ci_note = "; 95% CI as in the rows' ci_method" if has_ci else ""
    out.write(f"* main metric of the task; values in percent{ci_note}\n")


def _notes(extra: dict[str, Any]) -> str:
    """Short per-row details for the table: probe C, seed, spread across seeds, skipped images."""
    parts = []
    if extra.get("over"):  # a linear probe averaged over folds or official splits
        parts.append(f"mean of {extra.get('n_runs')} {extra['over']}, std {extra.get('std', 0):.2f}")
    elif extra.get("aggregate"):
        parts.append(f"mean of {extra.get('seeds')} seeds, std {extra.get('std', 0):.2f}")
    elif extra.get("run"):
        parts.append(str(extra["run"]))
    elif "seed" in extra and "k" in extra:
        parts.append(f"seed {extra['seed']}")
    if extra.get("C") is not None:
        parts.append(f"C={extra['C']:.3g}")
    if extra.get("C_at_grid_edge"):
        parts.append(f"C at the {extra['C_at_grid_edge']} end of the grid")
    if extra.get("converged") is False or extra.get("sweep_converged") is False:
        parts.append("not converged")
    if extra.get("skipped_images"):
        n_bad = extra["skipped_images"]
        parts.append(f"{n_bad} bad image{'' if n_bad == 1 else 's'} skipped")
    if extra.get("limit"):
        parts.append(f"--limit {extra['limit']}")
    return ", ".join(parts)


def cmd_zeroshot(args: argparse.Namespace) -> int:
    from clip_bench.protocols.zeroshot import zeroshot
    from clip_bench.util import distributed as ddp

    cfg = _eval_config(args)
    rows = zeroshot(args.model, args.task, cfg, pretrained=args.pretrained, device=args.device,
                    precision=args.precision)
    if not ddp.is_main():
        return 0  # under torchrun, rank 0 prints
    print_rows(rows, args.format)
    if args.format == "table" and cfg.output_dir is not None:
        print(f"rows appended to {cfg.output_dir / 'results.jsonl'}; leaderboard in "
              f"{cfg.output_dir / 'leaderboard.csv'}",
              file=sys.stderr)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from clip_bench.cli.catalog_view import describe_tasks, format_task_table
    from clip_bench.tasks.catalog import catalogue_problems

    def warn(msg: str) -> None:
        print(f"clip-bench: warning: {msg}", file=sys.stderr)

    if not args.names:
        for problem in catalogue_problems():
            warn(problem)
    infos = describe_tasks(args.names or None, args.data_root, on_error=warn)
    if args.format == "json":
        print(json.dumps(infos, indent=2))
    else:
        print(format_task_table(infos, details=bool(args.names)))  # named tasks: with their descriptions
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from clip_bench.models.resolve import BUILTIN_MODELS, OPENAI_ALIASES, list_pretrained

    flt = (args.filter or "").lower()
    sections = [
        ("built-in (offline):", [f"  {name}" for name in BUILTIN_MODELS if flt in name.lower()]),
        ("OpenAI names (--pretrained defaults to openai):",
         [f"  {name:16s} -> {arch}" for name, arch in OPENAI_ALIASES.items()
          if flt in name.lower() or flt in arch.lower()]),
        ("open_clip architecture / pretrained tag:",
         [f"  {arch:40s} --pretrained {tag}" for arch, tag in list_pretrained()
          if flt in arch.lower() or flt in tag.lower()]),
    ]
    if not any(lines for _, lines in sections):
        raise ClipBenchError(f"no model name or pretrained tag contains {args.filter!r}; `clip-bench models` lists "
                             "them all (local checkpoints, folders and hub references are accepted too, see "
                             "docs/models.md).")
    for title, lines in sections:
        if lines:
            print(title)
            print("\n".join(lines))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from clip_bench.report import build_report
    from clip_bench.report.summary import ReportWriteError

    try:
        summary = build_report(args.results, args.out, reference_only=args.reference, quiet=args.quiet)
    except ReportWriteError as exc:  # what was computed before a file could not be written is still printed
        for line in exc.lines:
            print(line)
        raise
    for line in summary.lines:
        print(line)
    return 0


def _add_sweep(sub: Any) -> None:
    sw = sub.add_parser("sweep", help="run models x tasks x protocols, skipping jobs already in the results")
    sw.add_argument("--models", required=True, type=Path,
                    help="YAML list or text file: one 'name [pretrained]' per line")
    sw.add_argument("--tasks", nargs="+", required=True, help="tasks or collections (clip27, imagenet_shifts, all)")
    sw.add_argument("--protocols", nargs="+", default=["zeroshot"], help="zeroshot and/or linprobe")
    sw.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N or mps")
    sw.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    _add_eval_args(sw, with_task=False)
    sw.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from clip_bench.protocols.sweep import read_models_file, run_sweep
    from clip_bench.util import distributed as ddp

    rows: list[dict[str, Any]] | None = [] if args.format == "json" else None
    counts = run_sweep(read_models_file(args.models), args.tasks, args.protocols, _eval_config(args),
                       device=args.device, precision=args.precision, rows_out=rows,
                       echo=print if rows is None else (lambda msg: print(msg, file=sys.stderr)))
    if rows is not None and ddp.is_main():
        print_rows(rows, "json")  # exactly the rows of the jobs this sweep ran
    return 1 if counts["failed"] else 0


def _add_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", choices=["auto", "embed", "pre-proj"], default="auto",
                   help="auto (default): for ViT towers the representation before the image projection (the "
                   "paper's choice), else the embedding; embed: the image embedding; pre-proj: force the former")
    p.add_argument("--normalize", action="store_true", help="L2-normalise features before the probe")
    p.add_argument("--solver", choices=["torch", "sklearn"], default="torch",
                   help="torch: fast full-batch L-BFGS (CPU/GPU); sklearn: LogisticRegression(lbfgs), the reference")
    p.add_argument("--probe-device", type=device_name, default=None,
                   help="device for the torch solver (default: the model's)")


def _probe_config(args: argparse.Namespace) -> ProbeConfig:
    from clip_bench.probe.protocol import ProbeConfig

    return ProbeConfig(solver=args.solver, device=args.probe_device, **(
        {"val_fraction": args.val_fraction} if getattr(args, "val_fraction", None) is not None else {}))


def _add_linprobe(sub: Any) -> None:
    lp = sub.add_parser("linprobe", help="the paper's L-BFGS logistic-regression probe on cached features")
    _add_model_args(lp)
    _add_eval_args(lp)
    _add_probe_args(lp)
    lp.add_argument("--seed", type=non_negative_int, default=0,
                    help="seed of the held-out validation split (tasks without val)")
    lp.add_argument("--val-fraction", type=open_fraction, default=None,
                    help="share of train held out as val when a task has no val split (default 0.2)")
    lp.set_defaults(func=cmd_linprobe)
    fs = sub.add_parser("fewshot", help="k-shot linear probes, with zero-shot alongside")
    _add_model_args(fs)
    _add_eval_args(fs)
    _add_probe_args(fs)
    fs.add_argument("--shots", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16])
    fs.add_argument("--seeds", type=positive_int, default=3, help="number of random draws of the shots per k")
    fs.add_argument("--allow-fewer", action="store_true", help="allow classes with fewer than k training examples")
    fs.add_argument("--no-zeroshot", action="store_true", help="skip the zero-shot rows for comparison")
    fs.set_defaults(func=cmd_fewshot)


def _add_compare(sub: Any) -> None:
    cp = sub.add_parser("compare", help="is model A better than model B? paired tests per task, Holm across tasks")
    cp.add_argument("model_a", metavar="MODEL_A", help="a model as the leaderboard names it (e.g. run1/epoch_32.pt, "
                    "or with its variant: 'M [features=embed]'), its full name, name:pretrained, or its fingerprint")
    cp.add_argument("model_b", metavar="MODEL_B", help="the model to compare against (differences are A - B)")
    cp.add_argument("--results", type=Path, default=Path("results"), help="folder with results.jsonl (and outcomes/)")
    cp.add_argument("--task", nargs="+", default=None,
                    help="only these tasks or collections (default: every shared task)")
    cp.add_argument("--protocol", default="zeroshot", help="zeroshot (default), linear_probe or fewshot_kK")
    cp.add_argument("--metric", default=None, help="compare this metric's rows instead of each task's main metric")
    cp.add_argument("--seed", type=non_negative_int, default=None,
                    help="the few-shot draw to compare (fewshot_kK protocols)")
    cp.add_argument("--variant", default=None,
                    help="compare this variant on both sides (default, bf16, features=embed, "
                    "as the leaderboard labels them); without it, the variant both models have")
    cp.add_argument("--alpha", type=open_fraction, default=0.05,
                    help="significance level after Holm's correction (0.05)")
    cp.add_argument("--bootstrap", type=positive_int, default=1000,
                    help="bootstrap replicates for non-accuracy metrics (1000)")
    cp.add_argument("--cache-dir", type=Path, default=None, help="rebuild missing outcomes of older zero-shot rows "
                    "from this feature/text cache (default: $CLIP_BENCH_CACHE or ~/.cache/clip_bench)")
    cp.add_argument("--data-root", type=Path, default=None, help="the --data-root the rows were evaluated with")
    cp.add_argument("--format", choices=["table", "json"], default="table")
    cp.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from clip_bench.report.compare import compare, format_comparison
    from clip_bench.util.resources import default_cache_dir

    if not 0 < args.alpha < 1 or args.bootstrap < 100:
        raise ClipBenchError("--alpha must be in (0, 1) and --bootstrap at least 100.")
    result = compare(args.model_a, args.model_b, args.results, tasks=args.task, protocol=args.protocol,
                     metric=args.metric, seed=args.seed, alpha=args.alpha, B=args.bootstrap,
                     cache_dir=args.cache_dir or default_cache_dir(), data_root=args.data_root, variant=args.variant)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        sys.stdout.write(format_comparison(result))
    return 0


def cmd_linprobe(args: argparse.Namespace) -> int:
    from clip_bench.protocols.linprobe import linprobe
    from clip_bench.util import distributed as ddp

    rows = linprobe(args.model, args.task, _eval_config(args), pretrained=args.pretrained, device=args.device,
                    precision=args.precision, probe=_probe_config(args), seed=args.seed, normalize=args.normalize)
    if ddp.is_main():
        print_rows(rows, args.format)
    return 0


def cmd_fewshot(args: argparse.Namespace) -> int:
    from clip_bench.protocols.linprobe import fewshot
    from clip_bench.util import distributed as ddp

    rows = fewshot(args.model, args.task, _eval_config(args), shots=tuple(args.shots), seeds=args.seeds,
                   pretrained=args.pretrained, device=args.device, precision=args.precision, probe=_probe_config(args),
                   allow_fewer=args.allow_fewer, normalize=args.normalize, with_zeroshot=not args.no_zeroshot)
    if ddp.is_main():
        print_rows(rows, args.format)
    return 0


def _add_export(sub: Any) -> None:
    ex = sub.add_parser("export", help="write a model's results in another tool's format (datacomp: DataComp's "
                        "eval_results.jsonl, for its aggregate_scores.py)")
    ex.add_argument("--format", choices=["datacomp"], default="datacomp",
                    help="datacomp: one line per DataComp-protocol task, metrics as fractions")
    ex.add_argument("--results", type=Path, default=Path("results"), help="folder with results.jsonl")
    ex.add_argument("--model", default=None, help="the model as the leaderboard names it (MODEL or "
                    "'MODEL (PRETRAINED)'); may be left out when one model has DataComp-protocol rows")
    ex.add_argument("--out", type=Path, default=Path("eval_results.jsonl"),
                    help="file to write (a folder: eval_results.jsonl in it); default ./eval_results.jsonl")
    ex.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from clip_bench.report.export import export_results

    for line in export_results(args.results, args.out, args.format, model=args.model).messages():
        print(line)
    return 0


_EXTRA_COMMANDS: list[Callable[[Any], None]] = [_add_linprobe, _add_sweep, _add_compare, _add_export]


#: Python keyword arguments that API error messages name, and the flag a command-line user sets instead.
_FLAG_FOR_KWARG = {"allow_fewer=True": "--allow-fewer", "skip_bad_images=True": "--skip-bad-images"}


def error_line(exc: BaseException) -> str:
    """A user error as the one line the CLI prints: CLI flags instead of Python keyword arguments.

    A ``(Python: ...)`` hint beside a flag is for API users and is dropped.
    """
    msg = re.sub(r"\s*\n\s*", " ", str(exc).strip())
    msg = re.sub(r"\s*\(Python: [^()]*\)", "", msg)
    for kwarg, flag in _FLAG_FOR_KWARG.items():
        msg = msg.replace(kwarg, flag)
    return f"clip-bench: error: {msg}"


def _silence_stdout() -> None:
    """After the reader of our stdout went away (``clip-bench models | head``), drop further output quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured): nothing to redirect
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; user errors print one clear line and exit 2."""
    try:
        return _main(argv)
    except BrokenPipeError:
        _silence_stdout()
        return 141  # what a shell reports for a process ended by SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad flag (one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "revision", None) is not None:
            from clip_bench.models.resolve import with_revision

            args.model = with_revision(args.model, args.revision)
        code = int(args.func(args) or 0)
    except ClipBenchError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nclip-bench: interrupted. Finished feature shards and result rows are kept; "
            "run the same command again to resume where it stopped.",
            file=sys.stderr,
        )
        return 130
    sys.stdout.flush()  # a closed pipe shows here, inside main's BrokenPipeError handler
    return code
