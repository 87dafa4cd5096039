"""Load the published reference tables shipped in ``clip_bench/assets/reference`` (see its README)."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from clip_bench.results.averages import PUBLISHED_COLUMNS as PUBLISHED_COLUMNS  # re-exported: read once, there
from clip_bench.results.averages import published_columns as published_columns
from clip_bench.util.resources import assets_dir

if TYPE_CHECKING:
    import pandas as pd

TESTBED_TOP1 = "imagenet_testbed_robustness_top1s.csv"
TESTBED_TYPES = "imagenet_testbed_model_types.csv"
TESTBED_DERIVED = "imagenet_testbed_logit_fits_DERIVED.csv"
PAPER_TABLES = "paper_tables.json"
OPENCLIP_RESULTS = "openclip_results.csv"
OPENCLIP_CLASSIFICATION = "openclip_classification_results.csv"
#: The column of open_clip's classification table that its 38-dataset table lacks.
OPENCLIP35_AVERAGE = "Average perf. on 35 datasets"
TESTBED_SHIFTS = "testbed_shifts.yaml"


def reference_dir() -> Path:
    """Folder of the shipped reference data."""
    return assets_dir() / "reference"


def reference_file(name: str) -> Path:
    """Path of one reference file; a clear error if the installation lacks it."""
    path = reference_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"reference file {name} is missing from {reference_dir()}")
    return path


@cache
def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load(reference_file(name).read_text(encoding="utf-8"))


def testbed_shifts() -> dict[str, Any]:
    """Per-shift baseline-fit settings of the testbed (``testbed_shifts.yaml``)."""
    return _yaml(TESTBED_SHIFTS)


@lru_cache(maxsize=1)
def paper_tables() -> dict[str, Any]:
    """CLIP paper Tables 11 (zero-shot) and 10 (linear probe) as loaded from ``paper_tables.json``."""
    return json.loads(reference_file(PAPER_TABLES).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def openclip_results() -> pd.DataFrame:
    """open_clip's published zero-shot results (fractions 0-1): its 38-dataset table with the 35-dataset average
    of its classification table beside (both list the same models)."""
    import pandas as pd

    table = pd.read_csv(reference_file(OPENCLIP_RESULTS))
    classification = pd.read_csv(reference_file(OPENCLIP_CLASSIFICATION))
    key = ["name", "pretrained"]
    return table.merge(classification[[*key, OPENCLIP35_AVERAGE]], on=key, how="left", validate="one_to_one")


@lru_cache(maxsize=1)
def testbed_top1() -> pd.DataFrame:
    """imagenet-testbed top-1 accuracies (percent), indexed by model name, with a ``model_type`` column."""
    import pandas as pd

    top1 = pd.read_csv(reference_file(TESTBED_TOP1)).set_index("model")
    types = pd.read_csv(reference_file(TESTBED_TYPES)).set_index("model")["testbed_model_type"]
    model_type = types.reindex(top1.index).fillna("UNKNOWN").rename("model_type")
    return pd.concat([top1, model_type], axis=1)


@lru_cache(maxsize=1)
def testbed_derived_fits() -> pd.DataFrame:
    """The derived (not published) testbed baseline fits, used to cross-check ours."""
    import pandas as pd

    return pd.read_csv(reference_file(TESTBED_DERIVED))
