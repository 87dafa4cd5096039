"""The README and docs/ stay true: every task, subcommand and set-up/test command they promise exists, every
relative link they hold leads to an existing file and heading, the imports they show import and the output
they show is what the command prints."""

from __future__ import annotations

import re
from pathlib import Path

from clip_bench.cli.app import build_parser
from clip_bench.tasks.catalog import list_collections, list_tasks

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = "\n".join(page.read_text() for page in DOC_PAGES)


def _without_code(markdown: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    markdown = re.sub(r"^```.*?^```[ \t]*$", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", markdown)


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown` (lower case, punctuation dropped, spaces to '-')."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.sub(r"^```.*?^```", "", markdown,
                                                                           flags=re.S | re.M), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _relative_links(markdown: str) -> list[str]:
    targets = re.findall(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", _without_code(markdown))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t, flags=re.I)]


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in _relative_links(page.read_text()):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_file():
            broken.append(f"{target}: no file {dest}")
        elif anchor and (dest.suffix != ".md" or anchor not in _anchors(dest.read_text())):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.name}")
    return broken


def test_every_task_and_collection_is_in_a_task_table():
    for name in [*list_tasks(), *list_collections()]:
        assert re.search(rf"^\| `{re.escape(name)}`", DOCS, flags=re.M), name  # the first cell of a table row


def test_every_subcommand_is_in_the_readme_table_and_documented_in_docs():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"| `clip-bench {name}` |" in README, name
        assert f"clip-bench {name}" in DOCS, name


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    setup, test = blocks[0].strip(), blocks[1].strip()
    assert setup in ci.splitlines() and test in ci.splitlines()


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file_and_heading():
    pages = [ROOT / "README.md", *DOC_PAGES]
    assert sum(len(_relative_links(p.read_text())) for p in pages) > 10
    assert {p.name: _broken_links(p) for p in pages} == {p.name: [] for p in pages}


def test_the_readme_is_short_and_links_every_docs_page():
    assert DOC_PAGES, "docs/ holds the reference pages"
    links = _relative_links(README)
    for page in DOC_PAGES:
        assert f"docs/{page.name}" in links, page.name
    assert len(README.splitlines()) <= 250


def test_link_check_sees_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Some `code` heading: here\n\n```bash\n# not a heading\n```\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#some-code-heading-here) [ok](a.md) [web](https://example.org/x.md) `[no](x.md)`\n"
                    "[gone](missing.md) [bad](a.md#not-a-heading) [self](#b)\n\n# B\n")
    assert _broken_links(page) == [f"missing.md: no file {(tmp_path / 'missing.md').resolve()}",
                                   "a.md#not-a-heading: no heading '#not-a-heading' in a.md"]


def test_changelog_names_the_current_probe_rule():
    """A new PROBE_RULE recomputes every probe row, so the changelog must name it."""
    from clip_bench.probe import PROBE_RULE

    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"`{PROBE_RULE}`" in changelog


def test_readme_python_imports_exist():
    """Every `from clip_bench... import X` the README and docs/ show imports (the compare example used a moved
    name)."""
    readme = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    lines = sorted(set(re.findall(r"^\s*(from clip_bench[\w.]* import [\w, ]+|import clip_bench[\w.]*)\s*$", readme,
                                  flags=re.M)))
    assert lines
    exec("\n".join(lines), {})


def _readme_console(command: str) -> str:
    """The output the README shows under `$ <command>` in a console block."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split(f"$ {command}\n", 1)[1]
    return block.split("```", 1)[0]


def test_readme_quickstart_table_is_what_zeroshot_prints(eval_config, capsys):
    from dataclasses import replace

    from clip_bench import zeroshot
    from clip_bench.cli.app import print_rows

    rows = zeroshot("tiny-clip-digits", "digits", replace(eval_config, output_dir=None), device="cpu")
    print_rows(rows, "table")
    assert capsys.readouterr().out == _readme_console("clip-bench zeroshot --model tiny-clip-digits --task digits")


#: A package path (``clip_bench/probe/c_search.py``, ``clip_bench/assets/tiny_clip/``) and a dotted name
#: (``clip_bench.models.backends.register_backend``, ``clip_bench.x.y:Attr``) as the docs write them; a path
#: inside another one (``~/.cache/clip_bench/data``) is not the package's.
_PACKAGE_PATH = re.compile(r"(?<![\w/.~$-])clip_bench/[\w./*-]*")
_DOTTED_NAME = re.compile(r"(?<![\w/.~$-])clip_bench(?:\.\w+)+(?::\w+)?")


def _missing_name(name: str) -> str | None:
    """Why a dotted name is not a module, package or attribute of the package (None when it is one)."""
    import importlib

    dotted, _, attr = name.partition(":")
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                return f"importing {module_name} fails: {exc}"
            continue
        for part in [*parts[i:], *([attr] if attr else [])]:
            if not hasattr(obj, part):
                return f"{'.'.join(parts[:i])} has no {part!r}"
            obj = getattr(obj, part)
        return None
    return "no such module"


def package_references(text: str) -> tuple[set[str], set[str]]:
    """The package paths and the dotted names written in a Markdown page (code included)."""
    return ({m.rstrip(".") for m in _PACKAGE_PATH.findall(text)}, set(_DOTTED_NAME.findall(text)))


def stale_references(text: str, root: Path = ROOT) -> list[str]:
    """Package paths that name no file or folder and dotted names that name nothing importable."""
    paths, names = package_references(text)
    stale = [f"{p}: no such file or folder" for p in sorted(paths)
             if not (any(root.glob(p)) if "*" in p else (root / p).exists())]
    stale += [f"{n}: {why}" for n in sorted(names) if (why := _missing_name(n)) is not None]
    return stale


def test_every_package_path_and_name_in_the_readme_and_docs_exists():
    """A module split or a renamed function shows here: every ``clip_bench/...`` path and every dotted
    ``clip_bench.x.y`` name in README.md and docs/*.md is a file, folder, module or attribute."""
    pages = [ROOT / "README.md", *DOC_PAGES]
    assert sum(len(n) for p in pages for n in package_references(p.read_text())) > 20
    assert {p.name: stale_references(p.read_text()) for p in pages} == {p.name: [] for p in pages}


def test_reference_check_sees_a_missing_module_attribute_and_file():
    text = ("`clip_bench/metrics/classification.py`, `clip_bench/nowhere.py`, `~/.cache/clip_bench/data`, "
            "`clip_bench.metrics.classification.top1`, `clip_bench.metrics.nowhere`, "
            "`clip_bench.metrics.classification.nothing_here`, `clip_bench.config.EvalConfig`. "
            "`clip_bench.util.registry:lazy`, `clip_bench.util.registry:absent`")
    assert stale_references(text) == [
        "clip_bench/nowhere.py: no such file or folder",
        "clip_bench.metrics.classification.nothing_here: clip_bench.metrics.classification has no 'nothing_here'",
        "clip_bench.metrics.nowhere: clip_bench.metrics has no 'nowhere'",
        "clip_bench.util.registry:absent: clip_bench.util.registry has no 'absent'",
    ]
