"""Shared fixtures: the tiny CLIP (loaded once per test run) and isolated cache/output folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CLIP_BENCH_CACHE", str(Path(__file__).parent / ".cache-should-not-be-used"))

from clip_bench.evaluate import EvalConfig  # noqa: E402
from clip_bench.features import ExtractConfig  # noqa: E402

TINY = "tiny-clip-digits"


@pytest.fixture(scope="session")
def tiny_model():
    """The shipped tiny CLIP trained on digits, on the CPU."""
    from clip_bench.models import load_model

    return load_model(TINY, device="cpu")


@pytest.fixture
def eval_config(tmp_path: Path) -> EvalConfig:
    """An EvalConfig whose caches, outputs and data root all live in this test's tmp dir."""
    return EvalConfig(
        data_root=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "results",
        extract=ExtractConfig(batch_size=128, workers=0, quiet=True),
    )
