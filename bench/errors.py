"""``BenchError`` lives in the leaf package ``core`` (``core/errors.py``); this name stays importable."""
from core.errors import BenchError

__all__ = ["BenchError"]
