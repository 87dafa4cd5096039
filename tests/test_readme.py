"""The README stays true: every task, subcommand and set-up/test command it promises exists."""

from __future__ import annotations

import re
from pathlib import Path

from clip_bench.cli import build_parser
from clip_bench.tasks import list_collections, list_tasks

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_task_and_collection_is_documented():
    for name in list_tasks():
        assert f"`{name}`" in README, name
    for name in list_collections():
        assert f"`{name}`" in README, name


def test_every_subcommand_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"clip-bench {name}" in README, name


def test_ci_runs_the_readme_commands():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    setup, test = blocks[0].strip(), blocks[1].strip()
    assert setup in ci.splitlines() and test in ci.splitlines()


def test_changelog_names_the_current_probe_rule():
    """A new PROBE_RULE recomputes every probe row, so the changelog must name it."""
    from clip_bench.probe import PROBE_RULE

    changelog = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    assert f"`{PROBE_RULE}`" in changelog
