"""The options every protocol shares: where data, caches and results live, and how extraction runs.

``EvalConfig`` is what the Python API takes and the CLI fills from flags; ``ExtractConfig`` is its
batching, workers, sharding and progress part. The default folders come from :mod:`clip_bench.util.resources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import default_cache_dir, default_data_root

__all__ = ["EvalConfig", "ExtractConfig"]


@dataclass(frozen=True)
class ExtractConfig:
    """How to run extraction: batching, workers, sharding, progress."""

    batch_size: int = 64
    workers: int = 2
    shard_size: int = 2048
    quiet: bool = False
    skip_bad_images: bool = False
    compile: bool = False  # torch.compile the image tower (helps on recent GPUs; first batch is slow)

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("workers", 0), ("shard_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ClipBenchError(f"ExtractConfig.{name} must be an integer >= {low}, got {value!r}.")


@dataclass
class EvalConfig:
    """Options shared by every protocol; the CLI fills it from flags.

    Main fields: ``data_root`` (datasets; ``$CLIP_BENCH_DATA`` or ``~/.cache/clip_bench/data``), ``cache_dir``
    (features and text embeddings; None: no caching), ``output_dir`` (``results.jsonl`` and the leaderboard;
    None: rows are only returned), ``source``, ``limit``, ``download``, ``extract`` (batch size, workers, quiet).
    """

    data_root: Path = field(default_factory=default_data_root)
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: no caching at all
    output_dir: Path | None = Path("results")  # None: rows are returned, not written
    source: str | None = None
    templates: str | None = None
    classnames: str | None = None
    limit: int | None = None
    download: bool = False
    feature_kind: str = "auto"  # probes: auto | embed | pre-proj (probe_features); zero-shot always uses embed
    caption_template: str | None = None  # retrieval tasks: "{}" is replaced by each caption
    label: str | None = None  # --name: what tables and figures call the model (rows: extra.label; changes no number)
    extract: ExtractConfig = field(default_factory=ExtractConfig)

    def __post_init__(self) -> None:
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int | np.integer)
                                       or self.limit < 1):
            raise ClipBenchError("EvalConfig.limit must be a positive integer or None (all samples), got "
                                 f"{self.limit!r}.")

    @property
    def quiet(self) -> bool:
        return self.extract.quiet
