"""``equal``: every task loss with weight 1 (Table 4, "Equal")."""
from __future__ import annotations

import torch

from bench.multitask.methods.base import MULTITASK_METHODS, MultiTaskMethod


@MULTITASK_METHODS.register("equal")
class Equal(MultiTaskMethod):

    def step(self, x, y, ramp):
        self.zero(self.opt)
        raw = self.task_losses(self.model(x), y)
        raw.sum().backward()
        self.opt.step()
        return self.logs(raw, torch.ones_like(raw))
