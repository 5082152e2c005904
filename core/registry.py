"""Name -> object registries (models, datasets, defenses, attacks, ...).

A registry replaces if/elif chains on method names: a new entry is one decorator line.
Names of the form ``package.module:Attr`` resolve to user code without editing the package.
"""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Callable, Generic, Iterator, TypeVar

from core.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if isinstance(obj, type):
                obj.name = name  # a registered class's name is written once: in this line
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return load_object(name, self.kind)
        raise BenchError(
            f"unknown {self.kind} {name!r}{suggest(name, self._items)}; valid: {', '.join(sorted(self._items))}"
            + (" or package.module:Name" if self.kind in ("defense", "model") else "")
        )

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)


def suggest(name: str, valid, prefix: str = "") -> str:
    """``; did you mean hp.alpha_max?`` for the nearest valid name (difflib), else ''."""
    hint = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {prefix}{hint[0]}?" if hint else ""


def load_object(spec: str, kind: str = "object"):
    """Import ``package.module:Attr`` (user-supplied defenses, model factories)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BenchError(f"{kind} {spec!r} must look like package.module:Name")
    if os.getcwd() not in sys.path:  # user code next to where the command runs
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BenchError(f"cannot import {module_name!r} for {kind} {spec!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise BenchError(f"module {module_name!r} has no {attr!r} (for {kind} {spec!r})") from None
