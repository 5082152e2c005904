"""Registries live in the leaf package ``core`` (``core/registry.py``); these names stay importable."""
from core.registry import Registry, load_object, suggest

__all__ = ["Registry", "load_object", "suggest"]
