"""Model backends behind one seam, in a registry of lazy ``"module:object"`` entries.

``backend_for(reference)`` asks each registered backend, in order, whether it reads a reference;
open_clip, the fallback, takes whatever no other backend claims. A new backend is a small module
with a :class:`Backend` subclass, added with :func:`register_backend` (imported only when used).
"""

from __future__ import annotations

import importlib

from clip_bench.models.backends.base import Backend, LoadedModel, ModelSpec
from clip_bench.util.errors import UnknownNameError

__all__ = ["Backend", "LoadedModel", "ModelSpec", "backend_for", "get_backend", "list_backends", "register_backend"]

FALLBACK = "open_clip"

_REGISTRY: dict[str, str | Backend] = {
    "transformers": "clip_bench.models.backends.transformers_backend:TransformersBackend",
    "open_clip": "clip_bench.models.backends.open_clip_backend:OpenClipBackend",
}


def register_backend(name: str, backend: str | Backend, replace: bool = False) -> None:
    """Add a backend: an instance, or a lazy ``"package.module:ClassName"`` string."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"a model backend named {name!r} is already registered")
    _REGISTRY[name] = backend


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend` (the built-in ones stay)."""
    if name in ("open_clip", "transformers"):
        raise ValueError(f"the built-in backend {name!r} cannot be removed")
    _REGISTRY.pop(name, None)


def list_backends() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The backend registered as `name` (imported on first use)."""
    if name not in _REGISTRY:
        raise UnknownNameError("model backend", name, _REGISTRY)
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)()
        _REGISTRY[name] = entry
    return entry  # type: ignore[return-value]


def backend_for(reference: str) -> Backend:
    """The backend that reads `reference`: the first that claims it, else open_clip."""
    for name in _REGISTRY:
        if name != FALLBACK and get_backend(name).claims(reference):
            return get_backend(name)
    return get_backend(FALLBACK)
