"""The distiller registry: name -> Distiller subclass (``package.module:Class`` also works)."""
from core.registry import Registry

DISTILLERS = Registry("distiller")
