"""Is a task's data on disk? A cheap check for ``clip-bench tasks``: file existence only, nothing decoded.

Each source may declare, per split, the files whose presence means the split is there (``files:`` in the
task YAML, keyed by task split, relative to the source's folder; ``a|b`` accepts either). Without that list,
the source's folder existing is the test. Sample counts are checked only when a split is loaded.
"""

from __future__ import annotations

from pathlib import Path

from clip_bench.tasks.spec import SourceSpec, TaskSpec


def _present(root: Path, entry: str) -> bool:
    return any((root / alt).exists() for alt in entry.split("|"))


def split_missing(source: SourceSpec, root: Path, split: str) -> str | None:
    """The first declared file of task split `split` that is absent (its first alternative), or None."""
    for entry in source.files.get(split, ()):
        if not _present(root, entry):
            return entry.split("|")[0]
    return None


def task_status(task: TaskSpec, data_root: Path, source: str | None = None) -> tuple[bool, str]:
    """(whether the task's evaluation split is present under `data_root`, a short detail)."""
    src = task.source(source)
    if src.path is None:
        return True, "needs no files"
    root = Path(data_root).expanduser() / src.path
    if not root.exists():
        return False, f"{src.name}: no {root}"
    if not src.files:
        return True, f"{src.name}: {root}"
    missing = {s: split_missing(src, root, s) for s in task.splits if s in src.files}
    have = [s for s, m in missing.items() if m is None]
    eval_missing = missing.get(task.eval_split)
    if task.eval_split in missing and eval_missing is not None:
        return False, f"{src.name}: {task.eval_split} split missing ({root / eval_missing})"
    return True, f"{src.name}: {root} ({', '.join(have) or 'present'})"
