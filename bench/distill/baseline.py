"""Distillation baseline: the student trained with cross-entropy only (Table 3, "Baseline")."""
from __future__ import annotations

import torch.nn.functional as F

from bench.distill.base import Distiller
from bench.distill.registry import DISTILLERS
from defenses.base import Ramp
from defenses.gradients import accuracy


@DISTILLERS.register("baseline")
class BaselineStudent(Distiller):
    """Minimise CE(S(x), y); no teacher needed (also trains the teacher itself)."""

    name = "baseline"
    needs_teacher = False

    def step(self, x, y, ramp: Ramp):
        self.zero(self.opt)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "acc": accuracy(logits, y)}
