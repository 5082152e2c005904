"""Distillation baseline: the student trained with cross-entropy only (Table 3, "Baseline")."""
from __future__ import annotations

from bench.distill.base import Distiller
from bench.distill.registry import DISTILLERS
from defenses.baseline import Baseline


@DISTILLERS.register("baseline")
class BaselineStudent(Distiller):
    """Minimise CE(S(x), y); no teacher needed (also trains the teacher itself)."""

    needs_teacher = False

    step = Baseline.step  # the defense track's cross-entropy step, unchanged
