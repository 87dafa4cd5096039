"""clip-bench: evaluate CLIP-style image-text models the way the CLIP paper did.

The public API (imported on first use, so ``import clip_bench`` stays light)::

    import clip_bench

    model = clip_bench.load_model("tiny-clip-digits", device="cpu")
    rows = clip_bench.zeroshot(model, "digits", clip_bench.EvalConfig())  # also: linprobe, fewshot, sweep
    clip_bench.compare("model A", "model B", "results")  # paired tests, task by task
    clip_bench.build_report("results", "report")

The code lives in layered subpackages (``docs/architecture.md``): ``util``, ``config``, ``metrics`` and
``probe``, ``tasks``, ``loaders`` and ``models``, ``cache`` and ``results``, ``protocols``, ``report``, ``cli``;
each imports only from the layers below it.
"""

from __future__ import annotations

import types
from typing import Any

from clip_bench.util.version import __version__

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
    "load_model": "clip_bench.models.resolve:load_model",
    "zeroshot": "clip_bench.protocols.zeroshot:zeroshot",
    "linprobe": "clip_bench.protocols.linprobe:linprobe",
    "fewshot": "clip_bench.protocols.linprobe:fewshot",
    "sweep": "clip_bench.protocols.sweep:sweep",
    "compare": "clip_bench.report.compare:compare",
    "build_report": "clip_bench.report.build:build_report",
    "get_task": "clip_bench.tasks.catalog:get_task",
    "list_tasks": "clip_bench.tasks.catalog:list_tasks",
    "EvalConfig": "clip_bench.config:EvalConfig",
    "zeroshot_classifier": "clip_bench.protocols.zeroshot_head:zeroshot_classifier",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `clip-bench --version` does not pay for torch."""
    if name in _LAZY:
        from clip_bench.util.registry import lazy

        return lazy(_LAZY[name])
    raise AttributeError(f"module 'clip_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the submodules imported so far."""
    loaded = [n for n, v in globals().items()
              if isinstance(v, types.ModuleType) and v.__name__.startswith(__name__ + ".")]
    return sorted({*__all__, *loaded})

