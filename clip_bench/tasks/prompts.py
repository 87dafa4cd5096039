"""Class names and prompt templates as data: load, validate, render and hash them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import sha256_json
from clip_bench.util.resources import data_dir

#: A class is one name or a list of synonyms (FER2013), averaged like templates.
ClassName = str | list[str]

#: The files of a data folder that give its own class names and templates (CLIP_benchmark's WebDataset layout),
#: read for a source with ``prompts_from_data: true``.
DATA_CLASSNAMES = "classnames.txt"
DATA_TEMPLATES = "zeroshot_classification_templates.txt"


@dataclass(frozen=True)
class PromptSet:
    """Class names plus either shared templates or per-class prompt lists (CuPL style)."""

    classnames: tuple[ClassName, ...]
    templates: tuple[str, ...] = ()
    per_class: dict[str, tuple[str, ...]] | None = None

    def prompts_for(self, index: int) -> list[str]:
        """All prompt strings whose embeddings are averaged into class `index`'s embedding."""
        entry = self.classnames[index]
        names = [entry] if isinstance(entry, str) else list(entry)
        prompts: list[str] = []
        if self.per_class is not None:
            for name in names:
                if name not in self.per_class:
                    raise ClipBenchError(
                        f"the per-class prompt file has no entry for class {name!r}; "
                        "it must map every class name to a list of sentences."
                    )
                prompts.extend(self.per_class[name])
        for name in names:
            prompts.extend(render(t, name) for t in self.templates)
        if not prompts:
            raise ClipBenchError(f"class {names[0]!r} has no prompts: give templates or a per-class prompt list.")
        return prompts

    def all_prompts(self) -> list[list[str]]:
        return [self.prompts_for(i) for i in range(len(self.classnames))]

    @property
    def classnames_hash(self) -> str:
        return sha256_json(list(self.classnames))[:16]

    @property
    def templates_hash(self) -> str:
        return sha256_json({"templates": list(self.templates), "per_class": self.per_class})[:16]

    def display_names(self) -> list[str]:
        """One readable name per class (the first synonym)."""
        return [c if isinstance(c, str) else c[0] for c in self.classnames]


def render(template: str, name: str) -> str:
    """Fill a template's ``{}`` or ``{c}`` placeholder with a class name (no other brace is interpreted)."""
    if "{c}" in template:
        return template.replace("{c}", name)
    if "{}" in template:
        return template.replace("{}", name)
    raise ClipBenchError(f"template {template!r} has no '{{}}' or '{{c}}' placeholder for the class name.")


def read_prompt_text(path: Path) -> str:
    """A prompt file's text (UTF-8, a leading byte-order mark dropped); anything unreadable is one clear error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ClipBenchError(f"prompt file {path} does not exist.") from None
    except IsADirectoryError:
        raise ClipBenchError(f"prompt file {path} is a directory; expected a .json or .txt file.") from None
    except UnicodeDecodeError as exc:
        raise ClipBenchError(
            f"prompt file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ClipBenchError(f"prompt file {path} cannot be read: {exc.strerror or exc}.") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_prompt_text(path))
    except json.JSONDecodeError as exc:
        raise ClipBenchError(f"prompt file {path} is not valid JSON: {exc}") from None


def resolve_prompt_file(ref: str) -> Path:
    """A task's prompt reference (``imagenet`` -> ``prompts/imagenet.json``) or a user's file path."""
    path = Path(ref).expanduser()
    if path.suffix in (".json", ".txt") and path.exists():
        return path
    shipped = data_dir("prompts") / (ref if ref.endswith((".json", ".txt")) else ref + ".json")
    if shipped.exists():
        return shipped
    if path.is_dir():
        raise ClipBenchError(f"prompt file {path} is a directory; expected a .json or .txt file.")
    if path.exists():
        raise ClipBenchError(f"prompt file {path} is neither .json nor .txt; rename it to say which it is.")
    places = " and ".join(dict.fromkeys(str(p) for p in (path, shipped)))  # an absolute ref is both
    raise ClipBenchError(f"no prompt file {ref!r}: looked for {places}.")


def load_classnames(ref: str) -> tuple[ClassName, ...]:
    """Class names from a prompts JSON (its ``classnames`` key), a JSON list, or a text file (one per line)."""
    path = resolve_prompt_file(ref)
    if path.suffix == ".txt":
        names: list[Any] = [ln.strip() for ln in read_prompt_text(path).splitlines() if ln.strip()]
    else:
        data = _read_json(path)
        names = data["classnames"] if isinstance(data, dict) and "classnames" in data else data
    if not isinstance(names, list) or not names:
        raise ClipBenchError(f"{path} holds no class-name list (expected a list or a 'classnames' key).")
    for n in names:
        if not (isinstance(n, str) or (isinstance(n, list) and n and all(isinstance(s, str) for s in n))):
            raise ClipBenchError(f"{path}: class entry {n!r} must be a string or a list of synonyms.")
    return tuple(n if isinstance(n, str) else list(n) for n in names)


def load_templates(ref: str) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]] | None]:
    """Templates from a prompts JSON (``templates`` key), a JSON list, a text file, or a CuPL dict.

    Returns (templates, per_class): a CuPL-style file (class name -> list of sentences) gives
    per-class prompts and no templates.
    """
    path = resolve_prompt_file(ref)
    if path.suffix == ".txt":
        return tuple(ln.strip() for ln in read_prompt_text(path).splitlines() if ln.strip()), None
    data = _read_json(path)
    if isinstance(data, dict) and "templates" in data:
        data = data["templates"]
    if isinstance(data, list) and data and all(isinstance(t, str) for t in data):
        for t in data:
            render(t, "x")  # validates the placeholder
        return tuple(data), None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        return (), {k: tuple(v) for k, v in data.items()}
    raise ClipBenchError(
        f"{path} holds no templates: expected a list of strings with '{{}}', a 'templates' key, "
        "or a CuPL-style object mapping class names to lists of sentences."
    )


def read_data_lines(path: Path) -> list[str]:
    """A data folder's class-name or template file as CLIP_benchmark reads it: every line, stripped, blank lines
    kept (a blank line is a class whose name is empty, as class 3 of CLEVR Distance)."""
    return [ln.strip() for ln in read_prompt_text(path).splitlines()]


def load_data_prompt_set(folder: Path, classnames_ref: str | None = None, templates_ref: str | None = None,
                         missing_hint: str = "") -> PromptSet:
    """The class names and templates a data folder gives itself (:data:`DATA_CLASSNAMES`, :data:`DATA_TEMPLATES`),
    either replaced by a user's file (`classnames_ref`, `templates_ref`). A missing file is one error line ending
    with `missing_hint` (how to get it)."""
    for name, override in ((DATA_CLASSNAMES, classnames_ref), (DATA_TEMPLATES, templates_ref)):
        if override is None and not (folder / name).is_file():
            raise ClipBenchError(f"the class names and templates come from the data's own {DATA_CLASSNAMES} and "
                                 f"{DATA_TEMPLATES}, but {folder / name} does not exist{missing_hint}.")
    classnames = load_classnames(classnames_ref) if classnames_ref else tuple(read_data_lines(folder / DATA_CLASSNAMES))
    if not classnames:
        raise ClipBenchError(f"{folder / DATA_CLASSNAMES} lists no class names.")
    if templates_ref:
        templates, per_class = load_templates(templates_ref)
    else:
        templates, per_class = tuple(read_data_lines(folder / DATA_TEMPLATES)), None
        if not templates:
            raise ClipBenchError(f"{folder / DATA_TEMPLATES} lists no templates.")
        for t in templates:
            try:
                render(t, "x")
            except ClipBenchError as exc:
                raise ClipBenchError(f"{folder / DATA_TEMPLATES}: {str(exc).rstrip('.')}; a blank line is no "
                                     "template.") from None
    return PromptSet(classnames=classnames, templates=templates, per_class=per_class)


def load_prompt_set(classnames_ref: str, templates_ref: str) -> PromptSet:
    """Build a PromptSet from two references (they may name the same file)."""
    templates, per_class = load_templates(templates_ref)
    return PromptSet(classnames=load_classnames(classnames_ref), templates=templates, per_class=per_class)
