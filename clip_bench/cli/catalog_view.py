"""What `clip-bench tasks` shows: each task's classes, templates, metric, sources and data status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clip_bench.tasks.catalog import expand_tasks, get_task, list_tasks
from clip_bench.tasks.class_groups import num_task_classes
from clip_bench.tasks.spec import task_kind
from clip_bench.tasks.status import task_status
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import default_data_root
from clip_bench.util.text_table import text_table


def describe_tasks(
    names: list[str] | None = None, data_root: Path | None = None, on_error: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One dict per task with its catalogue facts and whether its data is present under `data_root`.

    With `on_error`, a task file that fails to load is reported through it (one line) and left out, unless
    the task was named explicitly in `names` (then its error is raised).
    """
    data_root = data_root or default_data_root()
    out = []
    for name in expand_tasks(names) if names else list_tasks():
        try:
            task = get_task(name).bind_data(data_root)  # prompts_from_data: counted from the data's own files
        except ClipBenchError as exc:
            if on_error is None or (names and name in names):
                raise
            on_error(str(exc))
            continue
        kind = task_kind(task)
        try:
            ps = task.prompt_set() if kind == "classification" else None  # retrieval: captions, no classes
            n_classes, n_templates = (num_task_classes(task),
                                      len(ps.templates) or len(ps.per_class or {})) if ps else (0, 0)
        except ClipBenchError as exc:
            n_classes, n_templates = None, None  # unknown
            status_note = str(exc)
        else:
            status_note = ""
        present, detail = task_status(task, data_root)
        if status_note and task.prompt_folder is not None and not present:
            status_note = ""  # the class names are the data's own, and the data is not there: the status says so
        out.append({
            "name": task.name, "kind": kind, "version": task.version, "classes": n_classes, "templates": n_templates,
            "metric": task.metric, "sources": list(task.sources), "default_source": task.default_source,
            "size": task.source().expected.get(task.eval_split),
            "data_present": present, "detail": status_note or detail, "description": task.description,
        })
    return out


def format_task_table(infos: list[dict[str, Any]], details: bool = False) -> str:
    """A readable fixed-width table of `describe_tasks` output; `details` adds each task's description
    (its protocol choices: splits, folds, what is ignored)."""
    header = ("task", "classes", "templates", "metric", "size", "sources", "data")
    rows = [header] + [
        (
            i["name"], "?" if i["classes"] is None else str(i["classes"]),
            "?" if i["templates"] is None else str(i["templates"]), i["metric"],
            f"{i['size']:,}" if i.get("size") else "-",
            ",".join(s + ("*" if s == i["default_source"] else "") for s in i["sources"]),
            ("yes" if i["data_present"] else "no") + (f" ({i['detail']})" if i["detail"] else ""),
        )
        for i in infos
    ]
    lines = text_table(rows, right={4}, rule=False)
    lines.insert(1, "-" * min(120, len(lines[0]) + 10))
    lines.append("* default source; --source picks another; --data-root sets where data is looked for; size: "
                 "samples in the evaluation split")
    if details:
        import textwrap

        for i in infos:
            if i.get("description"):
                lines += ["", textwrap.fill(f"{i['name']}: {i['description']}", width=100, subsequent_indent="  ",
                                           break_on_hyphens=False)]
    return "\n".join(lines)
