"""docs/extending.md stays true: every worked example (a task, a loader, a model backend, a metric) runs as
written, in an empty folder, and prints what the page shows.

Each example runs in this process in its own tmp folder (the current directory), with the caches, the data
root and the results there; what an example registers (a loader, a backend, a metric) is removed after it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from clip_bench.cli.app import main
from clip_bench.loaders import LOADERS
from clip_bench.metrics.classification import main_metric_names, unregister_metric
from clip_bench.models.backends import list_backends, unregister_backend

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "extending.md").read_text()
EXAMPLES = ["Add a task", "Add a loader", "Add a model backend", "Add a metric"]


def sections(markdown: str) -> dict[str, list[tuple[str, str]]]:
    """Each ``## `` section's fenced code blocks, as (language, code), in page order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for part in re.split(r"^## ", markdown, flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        out[title.strip()] = re.findall(r"^```(\w*)\n(.*?)^```[ \t]*$", body, flags=re.S | re.M)
    return out


SECTIONS = sections(PAGE)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty current folder holding the caches, the data root and the results; registries restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIP_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIP_BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CLIP_BENCH_TASKS", raising=False)
    loaders, backends, metrics = set(LOADERS.names()), set(list_backends()), set(main_metric_names())
    yield tmp_path
    for name in set(LOADERS.names()) - loaders:
        del LOADERS._entries[name]
    for name in set(list_backends()) - backends:
        unregister_backend(name)
    for name in set(main_metric_names()) - metrics:
        unregister_metric(name)


def run_python(code: str, where: str) -> None:
    exec(compile(code, f"docs/extending.md, {where}", "exec"), {"__name__": "__main__"})


def run_console(block: str, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Run each ``$ command`` of a console block (``export`` sets the environment, ``clip-bench`` runs the
    command line in this process) and check that it prints the lines below it."""
    lines = block.splitlines()
    assert lines and lines[0].startswith("$ "), block
    i = 0
    while i < len(lines):
        words = shlex.split(lines[i][2:].replace("$PWD", str(cwd)))
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            monkeypatch.setenv(name, value)
            continue
        assert words[0] == "clip-bench", words
        capsys.readouterr()
        code = main(words[1:])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out == "".join(f"{line}\n" for line in shown)


def test_the_page_holds_the_four_examples():
    assert list(SECTIONS) == EXAMPLES
    assert [lang for lang, _ in SECTIONS["Add a task"]] == ["yaml", "console"]
    for title in EXAMPLES[1:]:
        assert [lang for lang, _ in SECTIONS[title]] == ["python"], title


def test_add_a_task(sandbox, monkeypatch, capsys):
    (_, task_file), (_, console) = SECTIONS["Add a task"]
    path = re.match(r"# (\S+\.yaml)\n", task_file).group(1)  # the first line names the file
    (sandbox / path).parent.mkdir(parents=True, exist_ok=True)
    (sandbox / path).write_text(task_file)
    run_console(console, sandbox, monkeypatch, capsys)
    assert (sandbox / "results" / "results.jsonl").is_file()


@pytest.mark.parametrize("title", EXAMPLES[1:])
def test_python_examples_run_as_written(sandbox, title, capsys):
    ((_, code),) = SECTIONS[title]
    run_python(code, title)
    assert (sandbox / "results" / "results.jsonl").is_file()
    assert not (ROOT / "tests" / ".cache-should-not-be-used").exists()


def test_the_metric_example_prints_what_the_page_shows(sandbox, capsys):
    ((_, code),) = SECTIONS["Add a metric"]
    shown = [line[2:] for line in code.splitlines() if re.match(r"# \S+ \d+\.\d+ \S+$", line)]
    assert len(shown) == 4
    capsys.readouterr()
    run_python(code, "Add a metric")
    assert capsys.readouterr().out.splitlines() == shown


def test_examples_leave_the_registries_as_they_were():
    """The fixture removed what the examples registered: the built-in names remain, nothing else."""
    assert "npz" not in LOADERS and "pixels" not in list_backends() and "top3_accuracy" not in main_metric_names()
