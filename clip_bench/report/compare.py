"""``compare``: is model A better than model B, task by task and overall, beyond test-sample noise?

For each task both models were evaluated on (same protocol, same test samples, checked by the rows'
data fingerprints and the hash of the test labels in sample order: rows measured on other images are
refused), the difference A - B of the task's main metric with a 95% interval and a paired test:

- accuracy (top-1 / top-5): the exact McNemar test on the discordant images, and Newcombe's paired
  score interval for the difference;
- mean per-class recall, the Kinetics mean, 11-point mAP, ROC AUC: a paired bootstrap (the same
  resampled images for both models, class-stratified except for multi-label mAP), B = 1000, seed 0,
  with the percentile interval and the centred bootstrap p-value;
- retrieval (zero-shot protocol; the retrieval tasks' rows): exact McNemar on the image queries for
  image→text recall@k; a paired cluster bootstrap over images (each with all its caption queries)
  for text→image recall@k, mean_recall and mean_recall@1;
- macro F1: a class-stratified paired bootstrap; worst-group accuracy: a group-stratified paired bootstrap,
  refused (with the reason) when a group that can be the worst is too small or all one outcome for a model
  (``clip_bench.metrics.groups.paired_worst_group_unsupported``).
- WinoGAViL's Jaccard means (zero-shot protocol): a paired bootstrap over instances.

Across tasks, p-values are corrected with Holm's step-down method; a task is a win (A significantly
better), a loss, or a tie. The mean difference over tasks gets a percentile interval from the
per-task paired replicates (tasks are independent test sets; the interval is conditional on this
set of tasks).
"""

from __future__ import annotations

import re
import sys
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clip_bench.metrics import groups as grouped
from clip_bench.metrics import intervals as stats
from clip_bench.metrics.classification import GROUP_METRICS
from clip_bench.metrics.winogavil import is_jaccard_metric
from clip_bench.results.outcomes import (
    DamagedOutcomesError,
    OutcomeError,
    Outcomes,
    has_outcomes,
    load_for_row,
    paired_retrieval_bootstrap,
)
from clip_bench.results.rows import (
    LEADERBOARD_PROTOCOLS,
    RESULTS_FILE,
    display_name,
    field_of,
    is_standard,
    model_key,
    model_labels,
    read_rows,
    variant_name,
)
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import default_data_root
from clip_bench.util.text_table import text_table

ACCURACY_METRICS = ("top1", "top5")


@dataclass
class TaskComparison:
    """A versus B on one task."""

    task: str
    subset: str | None
    metric: str
    n: int
    value_a: float
    value_b: float
    diff: float  # A - B, points
    ci_low: float
    ci_high: float
    test: str
    p_value: float
    p_holm: float = float("nan")
    significant: bool = False
    result: str = "tie"  # "A better", "B better" or "tie"
    discordant: list[int] | None = None  # McNemar: [A right & B wrong, A wrong & B right]


@dataclass
class Comparison:
    """Everything `clip-bench compare` prints."""

    model_a: str
    model_b: str
    protocol: str
    alpha: float
    B: int
    tasks: list[TaskComparison] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. other variants both models have, left out
    wins: int = 0
    losses: int = 0
    ties: int = 0
    mean_diff: float = float("nan")
    mean_ci_low: float = float("nan")
    mean_ci_high: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Rows


def _load_rows(results_dir: str | Path) -> list[tuple[dict[str, Any], Path]]:
    """(row, folder of its results.jsonl) for every row under `results_dir` (or one .jsonl file)."""
    root = Path(results_dir)
    files = [root] if root.is_file() else sorted(root.rglob(RESULTS_FILE)) if root.is_dir() else []
    return [(row, path.parent) for path in files for row in read_rows(path)]


def _resolve_model(
    rows: list[tuple[dict[str, Any], Path]], labels: dict[str, tuple[str, str]], name: str,
) -> tuple[str, str | None]:
    """(model key, variant or None) that `name` names: the label tables show (``run1/epoch_32.pt``, with or
    without a variant suffix such as ``[features=embed]``), the model name, ``name:pretrained``, ``name
    (pretrained)``, or the model fingerprint. A name that fits models with different fingerprints is an error
    listing their labels: results of two checkpoints that share a name are never mixed."""

    def matches(text: str) -> set[str]:
        found = set()
        for r, _ in rows:
            key, model, tag = model_key(r), str(r["model"]), str(r.get("pretrained") or "")
            short_model, short_tag = labels[key]
            if text in (key, model, f"{model}:{tag}", display_name(model, tag), display_name(short_model, short_tag),
                        f"{short_model}:{short_tag}"):
                found.add(key)
        return found

    keys, chosen = matches(name), None
    for suffix in reversed(list(re.finditer(r" \[([^\[\]]*)\]", name)) if not keys else []):
        keys = matches(name[:suffix.start()] + name[suffix.end():])  # "M [bf16] (tag)" or "M [bf16]"
        if keys:
            chosen = _variant_arg(suffix.group(1))
            break
    if len(keys) == 1:
        return keys.pop(), chosen
    if keys:
        raise ClipBenchError(f"{name!r} names {len(keys)} different models in the results (different fingerprints): "
                             f"{'; '.join(sorted(display_name(*labels[k]) for k in keys))}; name one by its label.")
    known = "; ".join(sorted({display_name(*v) for v in labels.values()})) or "none"
    raise ClipBenchError(f"no result rows for model {name!r}; models in the results: {known}.")


def _variant_arg(text: str) -> str:
    """A variant as the user names it (``default``, ``bf16``, ``[features=embed]``) as :func:`variant_name`
    spells it."""
    text = text.strip().removeprefix("[").removesuffix("]").strip()
    return "" if text in ("", "default") else ", ".join(p.strip() for p in text.split(","))


def _variant_text(v: str) -> str:
    return f"[{v}]" if v else "default"


def _shown(labels: dict[str, tuple[str, str]], key: str, v: str | None) -> str:
    """A model's label as the leaderboard shows it, with its variant."""
    model, tag = labels[key]
    return display_name(model + (f" [{v}]" if v else ""), tag)


Picked = dict[tuple[str, str | None], dict[str, tuple[dict[str, Any], Path]]]


def _pick_rows(
    rows: list[tuple[dict[str, Any], Path]], model: str, protocol: str, metric: str | None, seed: int | None,
) -> Picked:
    """Latest row per (task, subset) and variant of `model` (a :func:`model_key`) and `protocol`: main metric
    unless `metric` is given.

    The full, standard evaluation is preferred: a later ``--limit`` or class-name/template override row
    never displaces it. A task with only non-standard rows uses the latest of those (and a pair with
    different test samples is then refused by the sample check)."""
    chosen: dict[tuple[str, str | None, str], tuple[dict[str, Any], Path]] = {}
    fallback: dict[tuple[str, str | None, str], tuple[dict[str, Any], Path]] = {}  # --limit / override rows
    seeds_seen: set[Any] = set()
    protocols = LEADERBOARD_PROTOCOLS.get(protocol, (protocol,))  # zero-shot includes the retrieval tasks
    for row, folder in sorted(rows, key=lambda rf: str(rf[0].get("date") or "")):
        extra = row.get("extra") or {}
        if model_key(row) != model or row.get("protocol") not in protocols:
            continue
        if extra.get("aggregate") or row.get("subset") or row.get("value") is None:
            continue
        if (row.get("metric") != metric) if metric else not row.get("is_main"):
            continue
        if protocol.startswith("fewshot"):
            seeds_seen.add(extra.get("seed"))
            if seed is None or extra.get("seed") != seed:
                continue
        (chosen if is_standard(row) else fallback)[(row["task"], row.get("subset"), variant_name(row))] = (row, folder)
    if protocol.startswith("fewshot") and seed is None and seeds_seen:
        raise ClipBenchError(f"{protocol} rows are per seed; pass --seed (seeds in the results: "
                             f"{', '.join(str(s) for s in sorted(seeds_seen, key=str))}).")
    out: Picked = {}
    for (task, subset, v), picked in {**fallback, **chosen}.items():
        out.setdefault((task, subset), {})[v] = picked
    return out


def _choose_variants(
    ra: Picked, rb: Picked, va: str | None, vb: str | None, shown: tuple[Callable[[str | None], str], ...],
    protocol: str,
) -> tuple[str, str, list[str]]:
    """The variant compared on each side, like with like unless the user named them; notes on variants left out.

    Neither named: the one variant both models have, or the default when both have several; anything else
    is an error saying which variants exist and how to choose. One named: the other side takes the same.
    Variants left out are named in a note."""
    have_a, have_b = ({v for per in r.values() for v in per} for r in (ra, rb))
    listed = (lambda vs: ", ".join(_variant_text(v) for v in sorted(vs)))  # noqa: E731
    names = (shown[0](None), shown[1](None))
    common = have_a & have_b
    if common:
        how = f"pass --variant {sorted(common)[0] or 'default'} (or another) to compare like with like"
    else:
        how = (f"no variant is in both; to compare them anyway name each with its variant as the leaderboard "
               f"shows it, the default as [default] ('{shown[0](sorted(have_a)[0] or 'default')}' "
               f"'{shown[1](sorted(have_b)[0] or 'default')}')") if have_a and have_b else ""
    notes: list[str] = []
    if not have_a or not have_b:
        return va or "", vb or "", notes  # nothing to pair: the caller says so
    if va is None and vb is None:
        if len(common) == 1 or "" in common:
            va = vb = next(iter(common)) if len(common) == 1 else ""
        else:
            raise ClipBenchError(
                f"model A ({names[0]}) has {protocol} rows as {listed(have_a)} and model B ({names[1]}) as "
                f"{listed(have_b)}" + (": several variants in common" if common else "") + f"; {how}.")
    va = vb if va is None else va
    vb = va if vb is None else vb
    for side, v, have, name in (("A", va, have_a, names[0]), ("B", vb, have_b, names[1])):
        if v not in have:
            raise ClipBenchError(f"model {side} ({name}) has no {protocol} rows as {_variant_text(v)}, only as "
                                 f"{listed(have)}; {how}.")
    others = [f"{side} also has {listed(have - {v})}" for side, v, have in (("A", va, have_a), ("B", vb, have_b))
              if have - {v}]
    if others:
        notes.append(f"compared {_variant_text(va)} rows" + (f" with {_variant_text(vb)}" if vb != va else "") +
                     f" ({'; '.join(others)}): choose another with --variant, or name a model with its variant")
    return va, vb, notes


def _outcomes(row: dict[str, Any], folder: Path, cache_dir: Path | None, data_root: Path | None) -> Outcomes:
    """The row's stored outcomes; missing or damaged ones are rebuilt from `cache_dir` (ClipBenchError if they
    cannot be)."""
    if not has_outcomes(row.get("metric")):
        raise ClipBenchError(f"{row['model']} on {row['task']}: compare has no paired test for metric "
                             f"{row.get('metric')!r} (a registered metric has no per-sample outcomes)")
    try:
        out = load_for_row(row, folder)
    except DamagedOutcomesError as exc:
        if cache_dir is None:
            raise ClipBenchError(str(exc)) from None
        print(f"clip-bench: warning: {exc}; rebuilding it from the caches.", file=sys.stderr)
        out = None
    except OutcomeError as exc:
        raise ClipBenchError(str(exc)) from None
    if out is not None:
        return out
    from clip_bench.protocols.replay import backfill, rerun_command

    if cache_dir is None:
        raise ClipBenchError(f"{row['model']} on {row['task']}: the row has no per-sample outcomes; pass --cache-dir "
                             f"to rebuild them from the caches, or run `{rerun_command(row, folder)}`.")
    return backfill(row, folder, cache_dir, data_root or default_data_root())


def _short(fingerprint: Any) -> str:
    return str(fingerprint)[:12] if fingerprint else "none (an older row)"


def _different_data(task: str, a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why rows `a` and `b` cannot be paired because they were scored on different data, or (probes) learned
    from different training data, or None."""
    fa, fb = field_of(a, "data_fingerprint"), field_of(b, "data_fingerprint")
    if fa != fb:
        return (f"{task}: refused, A and B were measured on different data (data fingerprint {_short(fa)} vs "
                f"{_short(fb)}: other images or annotation files); evaluate both on the same data")
    ta, tb = field_of(a, "train_data_fingerprint"), field_of(b, "train_data_fingerprint")
    if ta != tb:
        return (f"{task}: refused, A and B were trained on different data (train data fingerprint {_short(ta)} vs "
                f"{_short(tb)}: other training images or labels); probe both on the same data")
    return None


def _why_different(a: dict[str, Any], b: dict[str, Any], oa: Outcomes, ob: Outcomes) -> str:
    parts = [f"{k} {a.get(k)!s} vs {b.get(k)!s}" for k in ("source", "split", "task_version") if a.get(k) != b.get(k)]
    la, lb = (a.get("extra") or {}).get("limit"), (b.get("extra") or {}).get("limit")
    if la != lb:
        parts.append(f"--limit {la} vs {lb}")
    if oa.n != ob.n:
        parts.append(f"{oa.n} vs {ob.n} test samples")
    ca, cb = (a.get("extra") or {}).get("captions_hash"), (b.get("extra") or {}).get("captions_hash")
    if ca != cb:
        parts.append(f"captions {ca} vs {cb}")
    parts.append(f"test-label hash {oa.sample_hash[:12]} vs {ob.sample_hash[:12]}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Statistics


def _task_seed(seed: int, task: str, subset: str | None) -> int:
    """A per-task seed, so tasks get independent bootstrap streams whatever their order."""
    return seed * 1_000_003 + zlib.crc32(f"{task}/{subset or ''}".encode())


def _unsupported_pair(oa: Outcomes, ob: Outcomes) -> str | None:
    """Why no paired interval of the two outcomes' difference can be supported, or None (worst-group rows only)."""
    if oa.metric not in GROUP_METRICS:
        return None
    why = grouped.paired_worst_group_unsupported(oa.correct, ob.correct, oa.groups)
    return None if why is None else (f"no paired interval for {oa.metric}: {why}; --metric top1 compares overall "
                                     "accuracy")


def compare_outcomes(
    oa: Outcomes, ob: Outcomes, B: int = stats.DEFAULT_B, seed: int = stats.DEFAULT_SEED,
) -> tuple[float, float, float, str, float, np.ndarray, list[int] | None]:
    """(diff A-B, ci_low, ci_high, test, p-value, paired bootstrap replicates of A-B, discordant counts)."""
    m = oa.metric
    diff = oa.recompute() - ob.recompute()
    if m in ACCURACY_METRICS or (oa.retrieval or ("",))[0] == "i2t":  # image→text: one query per image
        p, only_a, only_b = stats.mcnemar_exact(oa.correct, ob.correct)
        lo, hi = stats.newcombe_paired_interval(ob.correct, oa.correct)  # accuracy(A) - accuracy(B)
        reps = stats.paired_accuracy_bootstrap(ob.correct, oa.correct, B, seed)
        return diff, 100 * lo, 100 * hi, "McNemar exact", p, reps, [only_a, only_b]
    if m == "mean_per_class_recall":
        reps = stats.paired_mean_per_class_recall_bootstrap(ob.top1, oa.top1, oa.labels, B, seed)
    elif m == "mean_top1_top5":
        reps = stats.paired_mean_top1_top5_bootstrap(ob.top1, ob.top5, oa.top1, oa.top5, oa.labels, B, seed)
    elif m == "map_11point":
        reps = stats.paired_map_11point_bootstrap(ob.scores, oa.scores, oa.labels, B, seed)
    elif m == "roc_auc":
        reps = stats.paired_roc_auc_bootstrap(ob.scores, oa.scores, oa.labels, B, seed)
    elif m == "macro_f1":
        reps = grouped.paired_macro_f1_bootstrap(oa.labels, ob.preds, oa.preds, B, seed)
    elif m in GROUP_METRICS:
        if (why := _unsupported_pair(oa, ob)) is not None:
            raise ClipBenchError(why + ".")
        reps = grouped.paired_worst_group_bootstrap(ob.correct, oa.correct, oa.groups, B, seed)
    elif is_jaccard_metric(m):  # WinoGAViL: the same instances resampled for both models
        reps = paired_retrieval_bootstrap(oa, ob, B, seed)
    elif oa.retrieval is not None:  # text→image recall@k and the summaries: images resampled with their captions
        reps = paired_retrieval_bootstrap(oa, ob, B, seed)
        lo, hi = stats.percentile_interval(reps)
        return diff, lo, hi, f"paired cluster bootstrap ({B})", stats.bootstrap_p_value(reps, diff), reps, None
    else:
        raise ClipBenchError(f"compare has no paired test for metric {m!r}.")
    lo, hi = stats.percentile_interval(reps)
    return diff, lo, hi, f"paired bootstrap ({B})", stats.bootstrap_p_value(reps, diff), reps, None


def compare(
    model_a: str,
    model_b: str,
    results_dir: str | Path = "results",
    tasks: list[str] | None = None,
    protocol: str = "zeroshot",
    metric: str | None = None,
    seed: int | None = None,
    alpha: float = 0.05,
    B: int = stats.DEFAULT_B,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    variant: str | None = None,
) -> Comparison:
    """Compare two models' rows under `results_dir` (see the module docstring).

    A model is a fingerprint, named as tables name it (see :func:`_resolve_model`). `tasks` limits the
    comparison (names or collections); a named task that cannot be compared is an error, while without
    `tasks` such tasks are listed in ``refused`` with the reason. Rows without stored outcomes are rebuilt
    from `cache_dir` (zero-shot) when given. `seed` picks the few-shot draw for ``fewshot_kK`` protocols.
    `variant` (``default``, ``bf16``, ``features=embed``) picks the variant compared on both sides; without it
    (and without a variant in a model's name) like is compared with like (:func:`_choose_variants`).
    :func:`format_comparison` prints the result as ``clip-bench compare`` does.

    Args:
        model_a: Model A: its name, ``name:pretrained``, its label in tables (``"ViT-B-32 (openai)"``, with a
            variant suffix such as ``[bf16]`` if wanted) or its fingerprint.
        model_b: Model B, likewise.
        results_dir: The folder of ``results.jsonl`` (the runs' ``output_dir``), or the file itself.
        tasks: Only these tasks or collections (default: every task both models have).
        protocol: ``"zeroshot"`` (with retrieval), ``"linear_probe"`` or ``"fewshot_kK"``.
        metric: Compare this metric instead of each task's main metric.
        seed: The few-shot draw to compare (``fewshot_kK`` protocols only).
        alpha: Significance level, after Holm's correction over tasks.
        B: Bootstrap replicates.
        cache_dir: Feature/text cache from which missing per-sample outcomes are rebuilt (None: never).
        data_root: Where datasets live, for that rebuild (default ``$CLIP_BENCH_DATA``).
        variant: The variant compared on both sides.
    """
    rows = _load_rows(results_dir)
    if not rows:
        raise ClipBenchError(f"no result rows under {results_dir} (looked for {RESULTS_FILE}); pass --results DIR.")
    labels = model_labels([r for r, _ in rows])
    (a, va), (b, vb) = _resolve_model(rows, labels, model_a), _resolve_model(rows, labels, model_b)
    if variant is not None:
        for given, name in ((va, model_a), (vb, model_b)):
            if given is not None and given != _variant_arg(variant):
                raise ClipBenchError(f"{name!r} names variant {_variant_text(given)} but --variant is {variant!r}; "
                                     "give it once.")
        va = vb = _variant_arg(variant)
    if a == b:
        va, vb = va or "", vb or ""  # one model against itself: another variant of it, else the default
        if va == vb:
            raise ClipBenchError(f"{model_a!r} and {model_b!r} name the same model rows ({_shown(labels, a, va)}); "
                                 "name two models, or two variants of one.")
    ra_all, rb_all = _pick_rows(rows, a, protocol, metric, seed), _pick_rows(rows, b, protocol, metric, seed)
    va, vb, notes = _choose_variants(ra_all, rb_all, va, vb,
                                     (lambda v: _shown(labels, a, v), lambda v: _shown(labels, b, v)),
                                     protocol)
    notes = notes if a != b else []  # one model's own variants: the choice is the point
    ra = {k: per[va] for k, per in ra_all.items() if va in per}
    rb = {k: per[vb] for k, per in rb_all.items() if vb in per}
    name_a, name_b = _shown(labels, a, va), _shown(labels, b, vb)
    wanted = None
    if tasks:
        from clip_bench.tasks.catalog import expand_tasks

        wanted = set(expand_tasks(list(tasks)))
        for side, picked, name in (("A", ra, name_a), ("B", rb, name_b)):
            missing = sorted(wanted - {t for t, _ in picked})
            if missing:
                raise ClipBenchError(f"model {side} ({name}) has no {protocol} {metric or 'main-metric'} row "
                                     f"for {', '.join(missing)} under {results_dir}.")
    cache = Path(cache_dir) if cache_dir is not None else None
    root = Path(data_root) if data_root is not None else None
    result = Comparison(name_a, name_b, protocol, alpha, B, notes=notes)
    all_reps = []
    for key in sorted(set(ra) & set(rb), key=lambda k: (k[0], k[1] or "")):
        task, subset = key
        if wanted is not None and task not in wanted:
            continue
        (row_a, dir_a), (row_b, dir_b) = ra[key], rb[key]
        if row_a["metric"] != row_b["metric"]:
            result.refused.append(f"{task}: A has {row_a['metric']} rows, B has {row_b['metric']}")
            continue
        why = _different_data(task, row_a, row_b)
        if why is None:
            try:
                oa, ob = _outcomes(row_a, dir_a, cache, root), _outcomes(row_b, dir_b, cache, root)
            except ClipBenchError as exc:  # damaged or missing evidence: that task is not compared
                if wanted is not None:
                    raise
                result.refused.append(f"{task}: skipped, {exc}")
                continue
            if oa.sample_hash != ob.sample_hash:
                why = (f"{task}: refused, A and B were not evaluated on the same test samples "
                       f"({_why_different(row_a, row_b, oa, ob)}); evaluate both with the same --source and --limit")
            elif (unsupported := _unsupported_pair(oa, ob)) is not None:
                why = f"{task}: refused, {unsupported}"
        if why is not None:
            if wanted is not None:
                raise ClipBenchError(why + ".")
            result.refused.append(why)
            continue
        diff, lo, hi, test, p, reps, disc = compare_outcomes(oa, ob, B, _task_seed(0, task, subset))
        result.tasks.append(TaskComparison(task, subset, oa.metric, oa.n, float(row_a["value"]), float(row_b["value"]),
                                           diff, lo, hi, test, p, discordant=disc))
        all_reps.append(reps)
    if not result.tasks:
        reasons = "; ".join(result.refused) if result.refused else (
            f"no task has {protocol} rows for both {name_a} and {name_b}")
        raise ClipBenchError(f"nothing to compare: {reasons}.")
    p_values = np.array([t.p_value if np.isfinite(t.p_value) else 1.0 for t in result.tasks])
    adjusted, rejected = stats.holm(p_values, alpha)
    for t, p_adj, sig in zip(result.tasks, adjusted, rejected):
        t.p_holm, t.significant = float(p_adj), bool(sig)
        t.result = ("A better" if t.diff > 0 else "B better") if sig and t.diff != 0 else "tie"
    result.wins = sum(t.result == "A better" for t in result.tasks)
    result.losses = sum(t.result == "B better" for t in result.tasks)
    result.ties = sum(t.result == "tie" for t in result.tasks)
    result.mean_diff = float(np.mean([t.diff for t in result.tasks]))
    if len(result.tasks) == 1:  # the mean is that task's difference: same interval
        result.mean_ci_low, result.mean_ci_high = result.tasks[0].ci_low, result.tasks[0].ci_high
    else:
        result.mean_ci_low, result.mean_ci_high = stats.percentile_interval(np.mean(np.stack(all_reps), axis=0))
    return result


# ---------------------------------------------------------------------------------------------
# Text output


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def format_comparison(c: Comparison) -> str:
    """The comparison as a readable table, with the summary over tasks and any refusals."""
    header = ("task", "metric", "n", "A", "B", "A-B", "95% CI", "test", "p", "p (Holm)", "result")
    lines = [header]
    for t in c.tasks:
        task = t.task + (f" [{t.subset} classes]" if t.subset else "")
        lines.append((task, t.metric, str(t.n), f"{t.value_a:.2f}", f"{t.value_b:.2f}", f"{t.diff:+.2f}",
                      f"[{t.ci_low:+.2f}, {t.ci_high:+.2f}]", t.test, _p(t.p_value), _p(t.p_holm), t.result))
    out = [f"A: {c.model_a}", f"B: {c.model_b}", f"protocol {c.protocol}; values in percent, 95% intervals, "
           f"Holm-corrected over {len(c.tasks)} task(s) at alpha {c.alpha}", ""]
    out += text_table(lines, right={2, 3, 4, 5, 8, 9})  # the numeric columns
    out.append("")
    out.append(f"A better on {c.wins}, B better on {c.losses}, no significant difference on {c.ties} "
               f"(of {len(c.tasks)}); mean A-B over tasks {c.mean_diff:+.2f} "
               f"[{c.mean_ci_low:+.2f}, {c.mean_ci_high:+.2f}]")
    out.extend(c.refused)
    out.extend(c.notes)
    return "\n".join(out) + "\n"
