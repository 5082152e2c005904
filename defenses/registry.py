"""The defense registry: name -> Defense subclass. ``package.module:Class`` also works."""
from core.registry import Registry

DEFENSES = Registry("defense")
