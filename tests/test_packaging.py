"""A built wheel (not only the editable checkout) ships tasks/, prompts/ and the tiny CLIP."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_and_finds_data(tmp_path):
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir),
         str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("clip_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "clip_bench/data/tasks/digits.yaml" in names
    assert "clip_bench/data/prompts/imagenet.json" in names
    assert "clip_bench/assets/tiny_clip/tiny-clip-digits.safetensors" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import clip_bench, clip_bench.util.resources as r, clip_bench.tasks.catalog as t;"
        "print(clip_bench.__file__); print(r.data_dir('tasks')); print(r.data_dir('prompts'));"
        "task = t.get_task('digits'); print(len(task.prompt_set().classnames))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    pkg, tasks, prompts, n = out.stdout.split()
    assert pkg.startswith(str(site)) and tasks.startswith(str(site)) and prompts.startswith(str(site))
    assert n == "10"
    cli = subprocess.run([sys.executable, "-m", "clip_bench", "zeroshot", "--model", "tiny-clip-digits",
                          "--task", "digits", "--quiet", "--workers", "0", "--no-cache", "--format", "json",
                          "--output-dir", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert '"value": 91.6' in cli.stdout
