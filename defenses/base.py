"""The defense interface: ``core.method.Method`` under the name the defenses use.

A defense owns any extra modules (auxiliary network, ...) and their optimizers, and
implements one training step; the generic loop (``bench/train.py``) does the rest. The
protocol itself lives in the leaf package ``core`` (shared with distillers and multi-task
methods), so this package imports ``core`` only: ``bench`` imports ``defenses``, never the
other way round.
"""
from __future__ import annotations

from core.method import Method, MethodContext, Ramp


class Defense(Method):
    """Base class of the adversarial-training defenses. Subclasses implement ``step``;
    the ``DEFENSES.register("name")`` line names them."""


__all__ = ["Defense", "MethodContext", "Ramp"]
