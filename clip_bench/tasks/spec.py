"""What a task is once read: the :class:`TaskSpec` and :class:`SourceSpec` dataclasses, and a task's kind."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clip_bench.tasks.prompts import DATA_CLASSNAMES, DATA_TEMPLATES, PromptSet, load_data_prompt_set, load_prompt_set
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import sha256_json


@dataclass(frozen=True)
class SourceSpec:
    """One place a task's data can come from: a loader, its arguments, and its label order."""

    name: str
    loader: str
    path: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    #: How the source's label indices map to the task's class indices. None means identical order.
    label_map: tuple[int, ...] | None = None
    download: str | None = None  # how to get the data, shown when it is missing
    splits: dict[str, str] = field(default_factory=dict)  # task split -> the source's own split name
    #: Samples each complete split holds; a loaded split of another size is an error (never a silent subset).
    expected: dict[str, int] = field(default_factory=dict)
    #: Per split, files (relative to the source's root) whose presence means the split is there; checked
    #: by ``clip-bench tasks`` without opening the dataset.
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The class names and templates are the data folder's own ``classnames.txt`` and
    #: ``zeroshot_classification_templates.txt`` (read when the task is bound to a data root: TaskSpec.bind_data).
    prompts_from_data: bool = False

    def source_split(self, split: str) -> str:
        """The source's own name for task split `split`."""
        return self.splits.get(split, split)

    @property
    def config_hash(self) -> str:
        """A short hash of the settings that decide which samples and labels the source yields."""
        return sha256_json(
            {"loader": self.loader, "path": self.path, "args": self.args, "label_map": self.label_map,
             "splits": self.splits}
        )[:16]


@dataclass(frozen=True)
class TaskSpec:
    """A declarative evaluation task, read from ``tasks/<name>.yaml``."""

    name: str
    version: int
    classnames_ref: str
    templates_ref: str
    metric: str
    splits: tuple[str, ...]
    eval_split: str
    sources: dict[str, SourceSpec]
    default_source: str
    description: str = ""
    multilabel: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    #: (source name, data root) when the task is bound to the data folder its prompts come from
    #: (:meth:`bind_data`); where data lies is no part of the task's definition.
    data_binding: tuple[str, str] | None = None

    def bind_data(self, data_root: str | Path, source: str | None = None) -> TaskSpec:
        """This task as read from `data_root` through `source` (default: its default source). For a source with
        ``prompts_from_data``, :meth:`prompt_set` then reads that source's data folder; other sources leave the
        task as it is. An unknown source is left for :meth:`source` to report where it is used."""
        src = self.sources.get(source or self.default_source)
        binding = (src.name, str(Path(data_root).expanduser())) if src is not None and src.prompts_from_data else None
        return self if binding == self.data_binding else replace(self, data_binding=binding)

    @property
    def prompt_folder(self) -> Path | None:
        """The data folder whose own class-name and template files are the task's prompts, if it is bound to one."""
        if self.data_binding is None:
            return None
        name, root = self.data_binding
        return Path(root) / (self.sources[name].path or "")

    def prompt_set(self, classnames: str | None = None, templates: str | None = None) -> PromptSet:
        """The task's class names and templates, optionally overridden by user files.

        A task bound to a data folder whose source has ``prompts_from_data`` reads them from that folder.
        """
        if (folder := self.prompt_folder) is not None:
            src = self.sources[self.data_binding[0]]  # type: ignore[index]
            how = src.download.strip().rstrip(".") if src.download else "run again with --download"
            hint = f" (task {self.name!r}, source {src.name!r}); to get it: {how}"
            return load_data_prompt_set(folder, classnames, templates, missing_hint=hint)
        if not (classnames or self.classnames_ref) or not (templates or self.templates_ref):
            from_data = [s.name for s in self.sources.values() if s.prompts_from_data]
            raise ClipBenchError(
                f"task {self.name!r} has no class names or templates of its own: they are the data's own "
                f"{DATA_CLASSNAMES} and {DATA_TEMPLATES} of source {', '.join(from_data)}, read once "
                "the task is bound to a data root (the command line does it; in Python: task.bind_data(data_root))."
            )
        return load_prompt_set(classnames or self.classnames_ref, templates or self.templates_ref)

    def source(self, name: str | None = None) -> SourceSpec:
        """The source called `name` (default: the task's default source); an unknown name is a clear error."""
        name = name or self.default_source
        if name not in self.sources:
            close = difflib.get_close_matches(name, list(self.sources), n=1, cutoff=0.6)
            raise ClipBenchError(
                f"task {self.name!r} has no source {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                f"its sources are: {', '.join(self.sources)} (--source picks one; default {self.default_source})."
            )
        return self.sources[name]

    @property
    def train_split(self) -> str | None:
        """``train`` if the task has that split, else None."""
        return "train" if "train" in self.splits else None


def task_kind(task: TaskSpec) -> str:
    """``classification`` (default), ``retrieval`` or ``winogavil``: the task file's ``kind``, which picks the
    protocol."""
    kind = getattr(task, "kind", None) or (getattr(task, "extra", None) or {}).get("kind") or "classification"
    return str(kind)
