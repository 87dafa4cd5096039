"""clip-bench: evaluate CLIP-style image-text models the way the CLIP paper did.

The public API (imported on first use, so ``import clip_bench`` stays light)::

    import clip_bench

    model = clip_bench.load_model("tiny-clip-digits", device="cpu")
    rows = clip_bench.zeroshot(model, "digits", clip_bench.EvalConfig())  # also: linprobe, fewshot, sweep
    clip_bench.compare("model A", "model B", "results")  # paired tests, task by task
    clip_bench.build_report("results", "report")

``clip_bench.compare``, ``clip_bench.linprobe`` and ``clip_bench.sweep`` are these functions; their modules
are imported by their full names (``from clip_bench.compare import format_comparison``).
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_model",
    "zeroshot",
    "linprobe",
    "fewshot",
    "sweep",
    "compare",
    "build_report",
    "get_task",
    "list_tasks",
    "EvalConfig",
    "zeroshot_classifier",
]

_LAZY = {
    "load_model": "clip_bench.models:load_model",
    "zeroshot": "clip_bench.evaluate:zeroshot",
    "linprobe": "clip_bench.linprobe:linprobe",
    "fewshot": "clip_bench.linprobe:fewshot",
    "sweep": "clip_bench.sweep:sweep",
    "compare": "clip_bench.compare:compare",
    "build_report": "clip_bench.report.api:build_report",
    "get_task": "clip_bench.tasks:get_task",
    "list_tasks": "clip_bench.tasks:list_tasks",
    "EvalConfig": "clip_bench.evaluate:EvalConfig",
    "zeroshot_classifier": "clip_bench.zeroshot_head:zeroshot_classifier",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `clip-bench --version` does not pay for torch."""
    if name in _LAZY:
        from .registry import lazy

        return lazy(_LAZY[name])
    raise AttributeError(f"module 'clip_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the submodules imported so far."""
    loaded = [n for n, v in globals().items()
              if isinstance(v, types.ModuleType) and v.__name__.startswith(__name__ + ".")]
    return sorted({*__all__, *loaded})


class _Package(types.ModuleType):
    """The package module: importing a submodule that shares a name with an API function (``compare``,
    ``linprobe``, ``sweep``) does not bind it here, so ``clip_bench.compare`` is the function whatever was
    imported before."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
