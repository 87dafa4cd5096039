"""Result rows: one flat record per (model, pretrained, task, protocol, metric), with provenance.

Rows are appended to ``<output-dir>/results.jsonl`` under a file lock, so concurrent runs lose
nothing; ``leaderboard.csv`` is rebuilt from the *standard* rows after each run.

Each row carries ``result_id``, a hash of every input that determines its value (see
:func:`result_id`), and ``standard``: True only for the full evaluation of a built-in task
definition with its own class names and templates (no ``--limit``, no override, no skipped image).
Other rows stay in results.jsonl, labelled, and never reach the leaderboard.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_bench.cache.identity import numeric_identity
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import file_lock, sha256_json
from clip_bench.util.version import __version__

if TYPE_CHECKING:
    import pandas as pd

RESULTS_FILE = "results.jsonl"
LEADERBOARD_FILE = "leaderboard.csv"

#: Columns every row has. ``value`` is in percent (0-100) for every metric, as the paper prints them.
ROW_FIELDS = (
    "model", "pretrained", "model_fingerprint", "task", "task_version", "source", "split", "protocol",
    "metric", "value", "is_main", "subset", "n", "templates_hash", "classnames_hash", "feature_kind",
    "clip_bench_version", "torch_version", "open_clip_version", "device", "precision", "date", "extra",
    "result_id", "standard",
)

#: Row fields (top level or in ``extra``) that determine a row's value: its identity.
IDENTITY_FIELDS = (
    "model_fingerprint", "task", "task_version", "task_hash", "source", "source_config", "split", "protocol",
    "metric", "subset", "limit", "subset_rule", "classnames_hash", "templates_hash", "feature_kind", "precision",
)
#: Protocol settings (in ``extra``) that are part of the identity when a row has them: probe settings, and the
#: caption template of retrieval rows.
SETTING_IDENTITY_FIELDS = (
    "solver", "seed", "k", "aggregate", "seeds", "val_fraction", "allow_fewer", "probe_config", "caption_template",
    "probe_rule",  # the probe method's version (clip_bench.probe.PROBE_RULE)
    "run",  # one of a task's several linear probes (an STL-10 fold, a UCF101 split): see probe_runs
)
#: The content fingerprints of the data a row was scored on and, for probes, learned from (train and val
#: splits); see ``clip_bench.cache.data_fingerprint``. Part of the identity when a row has them.
DATA_IDENTITY_FIELDS = ("data_fingerprint", "train_data_fingerprint")
#: The row's 95% interval (percent, like ``value``), how it was computed, and where its per-sample
#: outcomes are (relative to the output folder); see ``clip_bench.results.outcomes``.
EVIDENCE_FIELDS = ("ci_low", "ci_high", "ci_method", "outcomes")
ROW_FIELDS = ROW_FIELDS + EVIDENCE_FIELDS


def versions() -> dict[str, str]:
    """Versions of clip-bench, torch and open_clip, for provenance."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        open_clip_version = version("open_clip_torch")
    except PackageNotFoundError:  # pragma: no cover - a source checkout of open_clip
        open_clip_version = "unknown"
    return {
        "clip_bench_version": __version__,
        "torch_version": torch.__version__,
        "open_clip_version": open_clip_version,
        "python_version": platform.python_version(),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def field_of(row: dict[str, Any], key: str) -> Any:
    """A row field from the top level, else (older rows) from ``extra``."""
    if row.get(key) is not None:
        return row[key]
    extra = row.get("extra")
    return extra.get(key) if isinstance(extra, dict) else None


def result_id(row: dict[str, Any]) -> str:
    """Hash of everything that determines a row's value.

    Model fingerprint, task name, version and definition hash, source and its config hash, split,
    protocol, metric, class subset, ``--limit`` (and its sampling rule), class-name and template
    hashes, feature kind, precision (and, below fp32, the device type), and protocol settings
    (probe solver, seed, k, ...; a retrieval caption template), the content fingerprints of the data
    (scored, and for probes learned from), and the number of images ``--skip-bad-images`` left out when
    there were any. Two rows with the same id are the same measurement.
    """
    ident: dict[str, Any] = {k: field_of(row, k) for k in IDENTITY_FIELDS}
    ident.update({k: field_of(row, k) for k in DATA_IDENTITY_FIELDS if field_of(row, k) is not None})
    ident.update(numeric_identity(field_of(row, "precision"), field_of(row, "device")))
    ident["settings"] = {k: field_of(row, k) for k in SETTING_IDENTITY_FIELDS if field_of(row, k) is not None}
    # --skip-bad-images left images out: another measurement (ids of clean rows unchanged)
    if field_of(row, "skipped_images"):
        ident["skipped_images"] = int(field_of(row, "skipped_images"))
    return sha256_json(ident)[:24]


#: How a ``standard`` field may be written (a results file is data from elsewhere: JSON true/false, 0/1, or text).
_STANDARD_TEXT = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def standard_flag(value: Any) -> bool | None:
    """A ``standard`` field as True or False: a bool, 0 or 1, or "true"/"false"/"1"/"0"/"yes"/"no" in any case;
    None for anything else (``"maybe"``, 2, a list), which no reader can take as either."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _STANDARD_TEXT.get(value.strip().lower())
    return None


def is_standard(row: dict[str, Any]) -> bool:
    """Whether a row is the full, standard evaluation: the only rows the leaderboard, the report, ``compare``'s
    first choice and the sweep's "already done" use.

    ``standard`` is read by :func:`standard_flag`; a value it cannot read is not standard. A row that records a
    ``--limit`` is a subset, never standard, whatever its ``standard`` says (clip-bench never writes both; a
    results file from elsewhere may). Rows written before rows carried ``standard`` (None) count as standard
    unless they record a ``--limit`` or a class-name/template override file.
    """
    if field_of(row, "limit") is not None:
        return False
    value = row.get("standard")
    if value is not None:
        return standard_flag(value) is True
    return not any(field_of(row, k) for k in ("limit", "templates_file", "classnames_file"))


def make_row(**fields: Any) -> dict[str, Any]:
    """A result row with every ROW_FIELDS key present (missing ones are None) and its ``result_id``.

    A non-finite ``value`` is an error naming the row, never a row.
    """
    row = {k: fields.pop(k, None) for k in ROW_FIELDS}
    row["extra"] = {**(row["extra"] or {}), **fields}
    value = row["value"]
    if isinstance(value, float | int) and not math.isfinite(value):
        raise ClipBenchError(f"{describe_row(row)} is {value}: a non-finite metric is never a result. The features "
                             "or scores behind it hold NaN or inf (a NaN checkpoint, too few samples, or --seeds 0?).")
    row["result_id"] = result_id(row)
    return row


def describe_row(row: dict[str, Any]) -> str:
    """``metric top1 of model M on task T (protocol P)``, for messages."""
    what = f"metric {row.get('metric')} of model {row.get('model')} on task {row.get('task')} ({row.get('protocol')})"
    return what + (f" [{row['subset']} classes]" if row.get("subset") else "")


def _row_json(row: dict[str, Any]) -> str:
    try:
        return json.dumps(row, sort_keys=True, default=str, allow_nan=False)
    except ValueError:
        bad = sorted(k for k, v in {**row, **(row.get("extra") or {})}.items()
                     if isinstance(v, float) and not math.isfinite(v))
        raise ClipBenchError(f"refusing to write a row with non-finite fields ({', '.join(bad) or '?'}) for "
                             f"{describe_row(row)}; NaN is not valid JSON and never a result.") from None


def append_rows(output_dir: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Append rows to results.jsonl under an exclusive lock, one fsync'd write per call.

    Rows with a non-finite number are refused (an error, nothing written). If the file does not
    end with a newline (a writer killed mid-line), the torn line is reported once on stderr and the
    new rows start on a fresh line, so they never merge with it.
    """
    path = Path(output_dir) / RESULTS_FILE
    payload = "".join(_row_json(r) + "\n" for r in rows)
    if not payload:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(RESULTS_FILE + ".lock")):
            with open(path, "a+b") as fh:
                if fh.seek(0, os.SEEK_END) > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        print(f"clip-bench: warning: {path} ends with a torn line (a writer was killed mid-row); "
                              "it is skipped when reading, and new rows start on a fresh line.", file=sys.stderr)
                        payload = "\n" + payload
                fh.write(payload.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        raise ClipBenchError(
            f"cannot write results to {path} ({exc.strerror or type(exc).__name__}); make the folder writable "
            "or pass --output-dir to another folder."
        ) from None
    return path


def check_writable(output_dir: str | Path) -> None:
    """A clear error now (before any work) when results could not be written to `output_dir`."""
    path = Path(output_dir) / RESULTS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(RESULTS_FILE + ".lock")), open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ClipBenchError(
            f"cannot write results to {path} ({exc.strerror or type(exc).__name__}); make the folder writable "
            "or pass --output-dir to another folder."
        ) from None


#: Row fields that, when set, must be text (a results file is data from elsewhere).
_TEXT_FIELDS = ("task", "protocol", "metric", "pretrained", "subset", "result_id")
#: Row fields that, when set, must be JSON true or false.
_FLAG_FIELDS = ("is_main",)  # ``standard`` is read by standard_flag (text spellings too)
_warned_files: set[str] = set()


def row_problem(row: Any) -> str | None:
    """Why a parsed line of results.jsonl is not a usable result row, or None if it is one."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not a row"
    if not isinstance(row.get("model"), str) or not row["model"]:
        return "no model name"
    bad = [k for k in _TEXT_FIELDS if row.get(k) is not None and not isinstance(row[k], str)]
    if bad:
        return f"{bad[0]} is not text"
    value = row.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"value {value!r} is not a number"
    if not math.isfinite(value):
        return f"value {value} is not finite"
    if row.get("extra") is not None and not isinstance(row["extra"], dict):
        return "extra is not a mapping"
    skipped = field_of(row, "skipped_images")  # part of the row's identity (see result_id)
    if skipped and (isinstance(skipped, bool) or not isinstance(skipped, int | float)
                    or not float(skipped).is_integer()):
        return f"skipped_images {str(skipped)[:40]!r} is not a count"
    if row.get("standard") is not None and standard_flag(row["standard"]) is None:
        return f"standard {str(row['standard'])[:40]!r} is neither true nor false"
    flag = next((k for k in _FLAG_FIELDS if row.get(k) is not None and not isinstance(row[k], bool)), None)
    if flag is not None:  # "false" as text would count as true: which row is the main one is ambiguous
        return f"{flag} {row[flag]!r} is not true or false"
    n = row.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        return f"n {n!r} is not a sample count (an integer >= 0)"
    return None


def results_path(output_dir: str | Path) -> Path:
    """The results file named by `output_dir`: a ``.jsonl`` file itself, else ``results.jsonl`` in that folder."""
    given = Path(output_dir)
    # a results file is named as such; anything else is an output directory, which may not exist yet
    # (deciding by is_dir() raced with a concurrent run creating it: "cannot read out (Is a directory)")
    return given if given.suffix == ".jsonl" or given.is_file() else given / RESULTS_FILE


def scan_rows(output_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, problems) of results.jsonl: every usable row, and ``"line N: why"`` for each other line.

    A line that is not JSON (a torn line: a writer killed mid-row) and a JSON line that is not a usable
    row (not a mapping, no model name, a value that is not a finite number, ...) are problems, never rows.
    """
    path = results_path(output_dir)
    if not path.exists():
        return [], []
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ClipBenchError(f"cannot read {path} ({exc.strerror or type(exc).__name__}).") from None
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            torn = "a torn last line" if number == len(lines) else "a torn line"
            problems.append(f"line {number}: not JSON ({torn}: a writer was killed mid-row, or the file was edited)")
            continue
        problem = row_problem(row)
        if problem is None:
            rows.append(row)
        else:
            problems.append(f"line {number}: {problem}")
    return rows, problems


def skipped_lines_text(problems: list[str], shown: int = 3) -> str:
    """``"2 line(s) that are not result rows (line 4: ...; line 9: ...)"`` for messages."""
    more = f" (+{len(problems) - shown} more)" if len(problems) > shown else ""
    return f"{len(problems)} line(s) that are not result rows ({'; '.join(problems[:shown])}{more})"


def read_rows(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of results.jsonl (see :func:`scan_rows`).

    Lines that are not rows (torn or malformed, wherever they are in the file) are skipped, and said
    once per file on stderr with their line numbers: such a line never becomes a number in a table.
    """
    rows, skipped = scan_rows(output_dir)
    warn_skipped(results_path(output_dir), skipped)
    return rows


def warn_skipped(path: Path, problems: list[str]) -> None:
    """Say on stderr, once per file, which lines of results file `path` were skipped (see :func:`scan_rows`)."""
    if problems and str(path) not in _warned_files:
        _warned_files.add(str(path))
        print(f"clip-bench: warning: {path}: skipped {skipped_lines_text(problems)}.", file=sys.stderr)


def model_key(row: dict[str, Any]) -> str:
    """Which model a row measures: its ``model_fingerprint``, so two checkpoints under one name (two
    ``epoch_32.pt`` in two folders) are two models and one checkpoint under two names is one. Rows without
    a fingerprint (written by hand) fall back to their name and tag."""
    fingerprint = field_of(row, "model_fingerprint")
    if isinstance(fingerprint, str) and fingerprint:
        return fingerprint
    return "name:" + sha256_json([str(row.get("model")), str(row.get("pretrained") or "")])[:20]


def display_name(model: str, pretrained: str | None) -> str:
    """How every table, legend and message names a model: ``model (pretrained)``, or just ``model``."""
    return f"{model} ({pretrained})" if pretrained else str(model)


#: A file or folder reference in a model name or tag (these are shortened in labels; ``ViT-B/32`` is not one).
_PATH_START = re.compile(r"^(~|\.{1,2}[\\/]|[\\/]|[A-Za-z]:[\\/])")
_PATH_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".json", ".ckpt")
_LOCAL_PREFIX = "local-dir:"


def _path_parts(text: str) -> list[str] | None:
    """The components of a local path reference (without a ``local-dir:`` prefix), else None."""
    body = text.removeprefix(_LOCAL_PREFIX)
    if not (_PATH_START.match(body) or (re.search(r"[\\/]", body) and body.lower().endswith(_PATH_SUFFIXES))
            or text.startswith(_LOCAL_PREFIX)):
        return None
    parts = [p for p in re.split(r"[\\/]+", body) if p]
    return parts or None


def _shorten(text: str, depth: int) -> tuple[str, bool]:
    """`text` with a path cut to its last `depth` components, and whether a longer suffix exists."""
    parts = _path_parts(text)
    if parts is None:
        return text, False
    prefix = _LOCAL_PREFIX if text.startswith(_LOCAL_PREFIX) else ""
    return prefix + "/".join(parts[-depth:]), depth < len(parts)


def model_labels(rows: Iterable[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """:func:`model_key` -> the (model, pretrained) a person reads, unique among the models of `rows`.

    A model is named as its latest row names it: by a user-given ``--name`` (``extra.label``), else by its
    model name and tag, with every local path cut to its shortest suffix that tells the models apart
    (``run1/epoch_32.pt`` and ``run2/epoch_32.pt``; one model alone: ``epoch_32.pt``). Models whose
    names stay equal (the same file name in two working folders, or the same ``--name``) get the start of
    their fingerprint (``#3fa2c1``), and so do models whose names become equal once a variant is appended (a
    ``--name "ViT-B-32 [fp16]"`` beside the fp16 rows of a model named ``ViT-B-32``). The rows keep the full
    reference.
    """
    rows = list(rows)
    latest: dict[str, tuple[str, str]] = {}
    named: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: str(r.get("date") or "")):
        key = model_key(row)
        latest[key] = (str(row.get("model")), str(row.get("pretrained") or ""))
        label = field_of(row, "label")
        if isinstance(label, str) and label.strip():
            named[key] = label.strip()
    depth = {key: [1, 1] for key in latest}  # path components shown, of the name and of the tag

    def shown(key: str) -> tuple[str, str]:
        if key in named:
            return named[key], ""
        model, tag = (_shorten(text, d)[0] for text, d in zip(latest[key], depth[key]))
        return model, tag

    while True:
        groups: dict[tuple[str, str], list[str]] = {}
        for key in latest:
            groups.setdefault(shown(key), []).append(key)
        grew = False
        for keys in (keys for keys in groups.values() if len(keys) > 1):
            for key in (k for k in keys if k not in named):
                for i, text in enumerate(latest[key]):  # lengthen a path only where the models' paths differ
                    if _shorten(text, depth[key][i])[1] and any(latest[k][i] != text for k in keys):
                        depth[key][i] += 1
                        grew = True
        if not grew:
            break
    out: dict[str, tuple[str, str]] = {}
    for (model, tag), keys in groups.items():
        if len(keys) == 1:
            out[keys[0]] = (model, tag)
            continue
        n = next(n for n in range(6, 65) if len({k[-n:] if k.startswith("name:") else k[:n] for k in keys})
                 == len(keys))
        for key in keys:
            out[key] = _marked(model, tag, key, n)
    return _apart_with_variants(out, rows)


def _marked(model: str, tag: str, key: str, n: int) -> tuple[str, str]:
    """(model, tag) with the start (``name:`` keys: the end) of `key`, `n` characters, after the tag."""
    mark = f"#{key[-n:] if key.startswith('name:') else key[:n]}"
    return (model, f"{tag} {mark}") if tag else (f"{model} {mark}", "")


def _apart_with_variants(labels: dict[str, tuple[str, str]], rows: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """`labels`, with the fingerprint mark added to the models whose label and a variant of theirs is another
    model's label and variant (:func:`shown_name`), so that no table line holds two models' rows."""
    variants: dict[str, set[str]] = {}
    for row in rows:
        variants.setdefault(model_key(row), set()).add(variant(row))
    owner: dict[tuple[str, str], str] = {}
    clash: set[str] = set()
    for key, (model, tag) in labels.items():
        for v in variants.get(key, {""}):
            other = owner.setdefault((model + v, tag), key)
            if other != key:
                clash |= {key, other}
    return {key: _marked(*label, key, 12) if key in clash else label for key, label in labels.items()}


#: Row key under which :func:`labelled` keeps a row's shown (model, pretrained); never written to results.jsonl.
SHOWN = "_shown"


def labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (copies) each with its :func:`model_labels` pair under :data:`SHOWN`, labelled among all of
    `rows`. Rows that already carry one keep it, so tables built from a part of a report's rows name the
    models as the whole report does."""
    if all(SHOWN in r for r in rows):
        return rows
    labels = model_labels(rows)
    return [{**r, SHOWN: labels[model_key(r)]} for r in rows]


def shown_name(row: dict[str, Any]) -> tuple[str, str]:
    """The (model, pretrained) a table shows for `row`: its label (see :func:`labelled`) with the row's
    :func:`variant` after the model."""
    model, tag = row[SHOWN] if SHOWN in row else labelled([row])[0][SHOWN]
    return model + variant(row), tag


def model_label(row: dict[str, Any]) -> str:
    """The one line naming `row`'s model in tables, legends, CSVs and ``compare``: see :func:`shown_name`."""
    return display_name(*shown_name(row))


def variant_name(row: dict[str, Any]) -> str:
    """How a standard row's measurement differs from its model's default one: ``""`` for fp32 and the
    default features, else e.g. ``"bf16"`` or ``"features=embed"``."""
    parts = []
    precision = field_of(row, "precision")
    if precision not in (None, "", "fp32"):
        parts.append(str(precision))
    requested, kind = field_of(row, "features_requested"), field_of(row, "feature_kind")
    if requested not in (None, "auto") or (isinstance(kind, str) and kind.endswith("+l2")):
        parts.append(f"features={kind}")
    return ", ".join(parts)


def variant(row: dict[str, Any]) -> str:
    """:func:`variant_name` as a label suffix (``" [bf16]"``, ``" [features=embed]"``, or ``""``). Tables that
    show one line per model append it to the model name, so a bf16 run or a probe on other features is
    shown apart, labelled, and never replaces (or is averaged with) the default measurement."""
    name = variant_name(row)
    return f" [{name}]" if name else ""


def with_variant_labels(df: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``df`` (a DataFrame built from ``rows``, same order) with model and pretrained replaced by each row's
    :func:`shown_name`: one line per model fingerprint and variant, named as a person reads it."""
    names = [shown_name(r) for r in labelled(rows)]
    df["model"] = [m for m, _ in names]
    df["pretrained"] = [p for _, p in names]
    return df


#: Row protocols shown in a protocol's leaderboard: zero-shot retrieval and WinoGAViL tasks sit beside zero-shot
#: classification.
LEADERBOARD_PROTOCOLS = {"zeroshot": ("zeroshot", "retrieval", "winogavil")}


