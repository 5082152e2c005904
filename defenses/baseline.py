"""Baseline: plain cross-entropy training, no defense."""
from __future__ import annotations

import torch.nn.functional as F

from defenses.base import Defense, Ramp
from defenses.gradients import accuracy
from defenses.registry import DEFENSES


@DEFENSES.register("baseline")
class Baseline(Defense):
    """Minimise CE(f(x), y)."""

    def step(self, x, y, ramp: Ramp):
        self.zero(self.opt)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "acc": accuracy(logits, y)}
