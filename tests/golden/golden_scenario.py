"""The golden run: one fixed scenario through the public API and the CLI, reduced to what must not change.

The scenario evaluates the shipped tiny CLIP (``tiny-clip-digits``), a second open_clip checkpoint (the tiny
CLIP with noise on its image projection) and the tiny CLIP converted to a transformers ``CLIPModel``, on the
``digits`` task and on a small retrieval WebDataset, with every protocol (zero-shot, ``--limit``, linear
probe, few-shot, retrieval), then ``compare`` and ``report``. :func:`run_scenario` returns the record:

- every result row (value, ``result_id``, fingerprints, identity fields, evidence, probe details), with the
  values that legitimately vary (dates, versions, run times, the temp folder) replaced by placeholders;
- each per-sample outcomes file (what ``compare`` reads): its scalars, and its arrays by content hash;
- the feature- and text-cache keys (the folder names under the cache dir: old caches stay hits), with each
  entry's metadata (its key fields, the prompts of the text cache, the content hashes of the stored arrays);
- each CLI command's exit status and stdout (normalised the same way);
- the report's summary lines, the files it writes and the contents of its CSV and Markdown tables.

``tests/golden/record_golden.py`` writes the record to ``golden_run.json``; ``test_golden_run.py`` runs the
scenario again and compares with :func:`differences` (floats to 1e-9 absolute, everything else exactly).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GOLDEN_FILE = Path(__file__).with_name("golden_run.json")
RECORD_COMMAND = "python tests/golden/record_golden.py"
#: Floats (result values, intervals, probe C, losses) may differ by this much; anything else must be equal.
FLOAT_TOLERANCE = 1e-9

TINY = "tiny-clip-digits"
#: The scenario's relative folders under its root (it runs with the root as working folder, so model
#: references and tables hold no absolute path).
DATA, CACHE, RESULTS, REPORT = "data", "cache", "results", "report"
SECOND = "run2"  # the second open_clip checkpoint: run2/tiny.json + run2/epoch_32.safetensors
HF = "hf-tiny"  # the tiny CLIP in the transformers format

#: Row fields whose values vary between runs or environments without changing any number.
VERSION_KEYS = frozenset({"clip_bench_version", "torch_version", "open_clip_version", "python_version",
                          "backend_version", "transformers_version"})
DATE_KEYS = frozenset({"date"})
_TIME_KEY = re.compile(r"(^|_)(time|seconds|elapsed)(_s)?$")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?")
_DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_INT = re.compile(r"-?\d+")
_DURATION = re.compile(r"\b\d+(\.\d+)?\s?(s|ms|sec|seconds)\b")


# ---------------------------------------------------------------- normalisation

class Normaliser:
    """Replaces what legitimately varies (the temp root, dates, versions, run times) by placeholders."""

    def __init__(self, root: Path) -> None:
        roots = {str(root), str(root.resolve())}
        self.roots = sorted(roots, key=len, reverse=True)  # longest first: one may contain the other
        from clip_bench.results.rows import versions

        self.versions = {v for k, v in versions().items() if v}
        self.versions.add(_transformers_version())
        self.versions.discard("")

    def text(self, text: str) -> str:
        """A text (stdout, a path) with the temp root, dates and durations replaced."""
        for r in self.roots:
            text = text.replace(r, "<TMP>")
        text = _ISO_DATE.sub("<DATE>", text)
        text = _DAY.sub("<DATE>", text)
        return _DURATION.sub("<DURATION>", text)

    def value(self, key: str | None, value: Any) -> Any:
        """A JSON value found under `key` (a row field, a CSV column), normalised recursively."""
        if key in VERSION_KEYS:
            return "<VERSION>"
        if key in DATE_KEYS:
            return "<DATE>"
        if key is not None and _TIME_KEY.search(key):
            return "<TIME>"
        if isinstance(value, dict):
            return {k: self.value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(None, v) for v in value]
        if isinstance(value, str):
            return "<VERSION>" if value in self.versions else self.text(value)
        return value

    def csv_cell(self, column: str, cell: str) -> Any:
        """A CSV cell as what it holds: an int, a float (compared with the float tolerance), a JSON object (a
        row's ``extra``, normalised field by field) or normalised text."""
        if column in VERSION_KEYS or column in DATE_KEYS or _TIME_KEY.search(column):
            return self.value(column, cell)
        if _INT.fullmatch(cell):
            return int(cell)
        try:
            number = float(cell)
        except ValueError:
            pass
        else:
            return number if math.isfinite(number) else cell
        if cell.startswith(("{", "[")):
            try:
                return {"json": self.value(column, json.loads(cell))}
            except ValueError:
                pass
        return self.value(column, cell)


def _transformers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:  # not installed: nothing to normalise
        return ""


# ---------------------------------------------------------------- the scenario

@contextlib.contextmanager
def _isolated(root: Path) -> Iterator[None]:
    """Run inside `root` with its own cache and data folders, offline, single-threaded (the arithmetic's
    reduction order, and so every float, does not depend on the machine's core count)."""
    import torch
    from threadpoolctl import threadpool_limits

    saved_env = {k: os.environ.get(k) for k in ("CLIP_BENCH_CACHE", "CLIP_BENCH_DATA", "HF_HUB_OFFLINE")}
    saved_cwd, saved_threads = os.getcwd(), torch.get_num_threads()
    os.environ.update(CLIP_BENCH_CACHE=str(root / CACHE), CLIP_BENCH_DATA=str(root / DATA),
                      HF_HUB_OFFLINE="1")
    os.chdir(root)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(saved_threads)
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``clip_bench.cli.app.main(argv)``: (exit status, stdout, stderr)."""
    from clip_bench.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _eval_flags() -> list[str]:
    return ["--data-root", DATA, "--cache-dir", CACHE, "--output-dir", RESULTS, "--workers", "0", "--quiet",
            "--device", "cpu"]


def _write_fixtures(root: Path) -> str:
    """The second checkpoint, the transformers checkpoint and the retrieval WebDataset; returns the retrieval
    task file (relative to `root`)."""
    from dataset_fixtures import fixture_task
    from hf_fixtures import convert_tiny_open_clip
    from model_fixtures import checkpoint_folder
    from retrieval_fixtures import digit_retrieval_set, write_retrieval_wds

    checkpoint_folder(root / SECOND, perturb=True)
    convert_tiny_open_clip(root / HF)
    # without what save_pretrained stamps from the process (its version; whether the hub was offline when the
    # tokenizer was loaded), the checkpoint's fingerprint follows its content only
    for name, stamp in (("config.json", "transformers_version"), ("tokenizer_config.json", "local_files_only")):
        path = root / HF / name
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items()
                                    if k != stamp}, indent=2), encoding="utf-8")
    images, _, captions = digit_retrieval_set(per_class=5)  # 50 images, 99 captions
    write_retrieval_wds(root / DATA / "wds_flickr30k", "test", images, captions, shard_size=20)
    return Path(fixture_task("flickr30k", root)).name


def _config(root: Path, **overrides: Any) -> Any:
    from clip_bench.config import EvalConfig, ExtractConfig

    return EvalConfig(data_root=root / DATA, cache_dir=root / CACHE, output_dir=root / RESULTS,
                      extract=ExtractConfig(batch_size=128, workers=0, quiet=True), **overrides)


def _steps(root: Path, commands: dict[str, Any]) -> None:
    """Every evaluation, in a fixed order; CLI results go into `commands`."""
    import clip_bench
    from clip_bench.protocols.linprobe import linprobe

    def cli(name: str, argv: list[str]) -> None:
        code, out, err = _cli(argv)
        if code != 0:
            raise RuntimeError(f"`clip-bench {' '.join(argv)}` exited with {code}: {err.strip()}")
        commands[name] = {"argv": argv, "exit": code, "stdout": out}

    with contextlib.redirect_stderr(io.StringIO()):  # transformers' progress bar while it saves a checkpoint
        retrieval_task = _write_fixtures(root)
    flags = _eval_flags()
    cli("zeroshot", ["zeroshot", "--model", TINY, "--task", "digits", *flags])
    cli("zeroshot_limit", ["zeroshot", "--model", TINY, "--task", "digits", "--limit", "50", *flags])
    cli("zeroshot_second", ["zeroshot", "--model", f"{SECOND}/tiny.json", "--pretrained",
                            f"{SECOND}/epoch_32.safetensors", "--task", "digits", *flags])
    cli("retrieval", ["zeroshot", "--model", TINY, "--task", retrieval_task, *flags])
    cli("fewshot", ["fewshot", "--model", TINY, "--task", "digits", "--shots", "1", "2", "--seeds", "2",
                    *flags])
    # the public Python API: a linear probe, and the transformers checkpoint on a fixed subset
    linprobe(TINY, "digits", _config(root), device="cpu")
    clip_bench.zeroshot(HF, "digits", _config(root, limit=100), device="cpu")
    cli("compare", ["compare", TINY, f"{SECOND}/tiny.json", "--results", RESULTS, "--cache-dir", CACHE,
                    "--data-root", DATA])
    cli("report", ["report", "--results", RESULTS, "--out", REPORT, "--quiet"])


def _row_label(i: int, row: dict[str, Any]) -> str:
    extra = row.get("extra") or {}
    what = [row.get("model"), row.get("task"), row.get("protocol"), row.get("metric")]
    what += [f"{k}={extra[k]}" for k in ("limit", "k", "seed", "aggregate") if extra.get(k) is not None]
    return f"{i:02d} " + " ".join(str(w) for w in what)


def _report_files(out: Path, norm: Normaliser) -> tuple[list[str], dict[str, Any]]:
    """The report's files (relative paths) and its tables: CSVs as rows of cells, Markdown as lines."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    tables: dict[str, Any] = {}
    for name in files:
        path = out / name
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                rows = [{c: norm.csv_cell(c, v) for c, v in zip(header, row)} for row in reader]
                tables[name] = {"columns": header, "rows": rows}
        elif path.suffix == ".md":
            tables[name] = norm.text(path.read_text(encoding="utf-8")).splitlines()
    return files, tables


def _caches(cache: Path, norm: Normaliser) -> dict[str, Any]:
    """The feature cache's keys (folder names) with each entry's ``meta.json`` (its key fields and the content
    hashes of the stored arrays), and the text cache's keys (folder names) with each folder's shards (their
    prompts, the keys within a folder, and content hashes; the shard files' names are random, so left out)."""
    def entries(kind: str) -> list[Path]:
        return sorted(p for p in (cache / kind).iterdir() if p.is_dir()) if (cache / kind).is_dir() else []

    def meta(path: Path) -> Any:
        return norm.value(None, json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None

    return {
        "features": {d.name: meta(d / "meta.json") for d in entries("features")},
        "text": {d.name: sorted((meta(f) for f in d.glob("*.json")), key=_canonical)
                 for d in entries("text")},
    }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _outcomes(folder: Path) -> dict[str, Any]:
    """Each per-sample outcomes file (the evidence ``compare`` reads): scalars as they are, arrays by dtype,
    shape and content hash."""
    import hashlib

    import numpy as np

    def described(a: np.ndarray) -> Any:
        if a.ndim == 0:
            return a.item()
        return f"{a.dtype}{list(a.shape)} sha256:{hashlib.sha256(np.ascontiguousarray(a)).hexdigest()[:16]}"

    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        with np.load(path, allow_pickle=False) as npz:
            out[path.name] = {k: described(npz[k]) for k in sorted(npz.files)}
    return out


def run_scenario(root: Path) -> dict[str, Any]:
    """Run the golden scenario in the empty folder `root`; return its normalised record."""
    from clip_bench.results.rows import read_rows

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    commands: dict[str, Any] = {}
    with _isolated(root):
        _steps(root, commands)
    norm = Normaliser(root)
    rows = read_rows(root / RESULTS)
    files, tables = _report_files(root / REPORT, norm)
    return {
        "rows": {_row_label(i, r): norm.value(None, r) for i, r in enumerate(rows)},
        "outcomes": _outcomes(root / RESULTS / "outcomes"),
        "caches": _caches(root / CACHE, norm),
        "commands": {name: {**c, "stdout": norm.text(c["stdout"]).splitlines()}
                     for name, c in commands.items()},
        "report": {"files": files, "tables": tables},
    }


#: What the recorded floats and content hashes depend on beyond clip-bench's own code: the numeric libraries,
#: the image encoder that writes the fixtures, and the processor whose kernels the arithmetic runs on.
NUMERIC_ENVIRONMENT = ("torch_version", "numpy_version", "pillow_version", "transformers_version",
                       "open_clip_version", "scikit_learn_version", "cpu")


def _cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """The versions and processor the golden file was recorded with (see :data:`NUMERIC_ENVIRONMENT`)."""
    import platform
    from importlib.metadata import version

    from clip_bench.results.rows import versions

    return {**versions(), "transformers_version": _transformers_version(), "platform": platform.platform(),
            "numpy_version": version("numpy"), "pillow_version": version("pillow"),
            "scikit_learn_version": version("scikit-learn"), "cpu": _cpu_model()}


def environment_changes(recorded: dict[str, str]) -> list[str]:
    """The parts of :data:`NUMERIC_ENVIRONMENT` that differ from `recorded`, as ``name old -> new``."""
    now = environment()
    return [f"{k} {recorded.get(k)} -> {now.get(k)}" for k in NUMERIC_ENVIRONMENT if recorded.get(k) != now.get(k)]


# ---------------------------------------------------------------- comparison

#: The record's parts, in the order a failure lists them (the rows say most, the report's tables least).
SECTIONS = ("rows", "outcomes", "caches", "commands", "report")


def differences(old: Any, new: Any, where: str = "", limit: int = 10_000) -> list[str]:
    """Readable differences of two records: ``<key path>: recorded <old>, now <new>`` (at most `limit`)."""
    out: list[str] = []
    _diff(old, new, where, out, limit)
    return out


def summarise(diffs: list[str], per_section: int = 12) -> list[str]:
    """At most `per_section` differences of each part of the record, rows first, with a count of the rest."""
    by_section: dict[str, list[str]] = {}
    for d in diffs:
        by_section.setdefault(re.match(r"[^.\[:]*", d).group(), []).append(d)
    out = []
    for section in sorted(by_section, key=lambda k: SECTIONS.index(k) if k in SECTIONS else len(SECTIONS)):
        out += by_section[section][:per_section]
        if len(by_section[section]) > per_section:
            out.append(f"... and {len(by_section[section]) - per_section} more differences in {section}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def _diff(old: Any, new: Any, where: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            path = f"{where}.{k}" if where else str(k)
            if k not in new:
                out.append(f"{path}: recorded {_short(old[k])}, now missing")
            elif k not in old:
                out.append(f"{path}: not recorded, now {_short(new[k])}")
            else:
                _diff(old[k], new[k], path, out, limit)
            if len(out) >= limit:
                return
        return
    if isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new)):
            _diff(a, b, f"{where}[{i}]", out, limit)
        if len(old) != len(new):
            extra = old[len(new):] if len(old) > len(new) else new[len(old):]
            side = "recorded only" if len(old) > len(new) else "new only"
            out.append(f"{where}: {len(old)} items recorded, now {len(new)} ({side}: {_short(extra)})")
        return
    if isinstance(old, float) and isinstance(new, float):
        if not math.isclose(old, new, rel_tol=0.0, abs_tol=FLOAT_TOLERANCE):
            out.append(f"{where}: recorded {old!r}, now {new!r}")
        return
    if old != new or type(old) is not type(new):
        out.append(f"{where}: recorded {_short(old)}, now {_short(new)}")


def dump(record: dict[str, Any]) -> str:
    """The golden file's text: sorted keys, one stable layout."""
    return json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
