"""clip-bench: evaluate CLIP-style image-text models the way the CLIP paper did."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_model",
    "zeroshot",
    "zeroshot_classifier",
    "list_tasks",
    "get_task",
    "EvalConfig",
]

_LAZY = {
    "load_model": "clip_bench.models:load_model",
    "zeroshot": "clip_bench.evaluate:zeroshot",
    "zeroshot_classifier": "clip_bench.zeroshot_head:zeroshot_classifier",
    "list_tasks": "clip_bench.tasks:list_tasks",
    "get_task": "clip_bench.tasks:get_task",
    "EvalConfig": "clip_bench.evaluate:EvalConfig",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily, so `clip-bench --version` does not pay for torch."""
    if name in _LAZY:
        from .registry import lazy

        return lazy(_LAZY[name])
    raise AttributeError(f"module 'clip_bench' has no attribute {name!r}")
