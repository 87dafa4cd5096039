"""Helpers for the catalogue's loader tests: task files whose expected counts fit a tiny fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from clip_bench.util.resources import data_dir

#: Digit class names and templates (one with the ``{c}`` placeholder) for the prompt-engine tests.
TEMPLATES = ['a photo of the number: "{}".', "a handwritten {}.", "the digit {}", "{c}, drawn by hand"]
NAMES = [str(i) for i in range(10)]



def fixture_task(
    tmp_path: Path, name: str, expected: dict[str, dict[str, int]], args: dict[str, dict[str, Any]] | None = None
) -> str:
    """A copy of ``tasks/<name>.yaml`` in `tmp_path` whose sources expect the fixture's sample counts.

    `expected` maps source name -> {split: count}; `args` updates a source's loader arguments (e.g. smaller
    per-class samples). Everything else (loader, label_map, splits) is the shipped task's, so the test
    exercises the real task definition.
    """
    raw = yaml.safe_load((data_dir("tasks") / f"{name}.yaml").read_text())
    for source, counts in expected.items():
        raw["sources"][source]["expected"] = counts
    for source, values in (args or {}).items():
        raw["sources"][source].setdefault("args", {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def main_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The result row of the task's main metric."""
    (row,) = [r for r in rows if r["is_main"] and r["subset"] is None]
    return row


def save_images(paths: list[Path], size: int = 16, seed: int = 0) -> None:
    """Write a small random RGB image at each path (format from the suffix)."""
    rng = np.random.default_rng(seed)
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
