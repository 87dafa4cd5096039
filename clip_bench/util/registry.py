"""A small generic registry with lazy ``"module:object"`` entries and did-you-mean errors."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from clip_bench.util.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; entries may be ``"package.module:attr"`` strings imported on first use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Any:
        """Register `obj` (or a lazy ``"module:attr"`` path) under `name`; usable as a decorator."""
        if obj is not None:
            self._entries[name] = obj
            return obj

        def deco(fn: T) -> T:
            self._entries[name] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        """Return the object for `name`, importing it if it was registered lazily."""
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def lazy(path: str) -> Callable[..., Any]:
    """Resolve a ``"module:attr"`` path now (helper for one-off lazy imports)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
