"""The distiller registry: name -> Distiller subclass (``package.module:Class`` also works)."""
from bench.registry import Registry

DISTILLERS = Registry("distiller")
