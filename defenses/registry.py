"""The defense registry: name -> Defense subclass. ``package.module:Class`` also works."""
from bench.registry import Registry

DEFENSES = Registry("defense")
