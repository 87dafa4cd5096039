"""Shared fixtures: the tiny CLIP (loaded once per test run), isolated cache/output folders, and the
tiny CLIP's zero-shot, linear-probe and few-shot runs on digits.

Layout of tests/: one folder per subpackage of clip_bench (``tests/cache/`` tests ``clip_bench/cache/``, and so
on), each file named after the code it tests (``test_<subject>.py``); ``e2e/`` and ``golden/`` run whole
commands end to end; the files at the top test the project as a whole (layering, packaging, public API, docs).
A module the tests import is named ``<subject>_<kind>.py``, where ``*_fixtures.py`` write fixtures in real
on-disk formats (dataset_fixtures, task_fixtures, hf_fixtures, retrieval_fixtures, winogavil_fixtures),
``figure_checks.py`` judges Figure objects, ``toy_backend.py`` is a model backend plug-in and
``e2e/slow_child.py`` holds child-process scripts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CLIP_BENCH_CACHE", str(Path(__file__).parent / ".cache-should-not-be-used"))

from clip_bench.config import (
    EvalConfig,  # noqa: E402
    ExtractConfig,  # noqa: E402
)
from clip_bench.protocols.linprobe import fewshot, linprobe  # noqa: E402
from clip_bench.protocols.zeroshot import zeroshot  # noqa: E402

TINY = "tiny-clip-digits"


@pytest.fixture(scope="session")
def tiny_model():
    """The shipped tiny CLIP trained on digits, on the CPU."""
    from clip_bench.models.resolve import load_model

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


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory, tiny_model):
    """Zero-shot, linear-probe and few-shot rows of the tiny CLIP on digits, sharing one feature cache."""
    tmp = tmp_path_factory.mktemp("outcomes")
    cfg = EvalConfig(data_root=tmp / "data", cache_dir=tmp / "cache", output_dir=tmp / "results",
                     extract=ExtractConfig(batch_size=128, workers=0, quiet=True))
    zs = zeroshot(tiny_model, "digits", cfg)
    lp = linprobe(tiny_model, "digits", cfg)
    fs = fewshot(tiny_model, "digits", cfg, shots=(2,), seeds=2, with_zeroshot=False)
    return cfg, zs, lp, fs


@pytest.fixture(scope="module")
def digit_set():
    """50 digit images with 1-3 captions each (99 captions), for the retrieval tests."""
    from retrieval_fixtures import digit_retrieval_set

    return digit_retrieval_set(per_class=5)
