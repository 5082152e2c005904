"""The defense interface: ``bench.method.Method`` under the name the defenses use.

A defense owns any extra modules (auxiliary network, ...) and their optimizers, and
implements one training step; the generic loop (``bench/train.py``) does the rest. The
protocol itself lives in ``bench/method.py`` (shared with distillers and multi-task
methods), so this package depends on bench's core and never the other way round.
"""
from __future__ import annotations

from bench.method import Context, Method, Ramp


class Defense(Method):
    """Base class of the adversarial-training defenses. Subclasses implement ``step``;
    the ``DEFENSES.register("name")`` line names them."""


__all__ = ["Context", "Defense", "Ramp"]
