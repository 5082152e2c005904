"""``equal-normalized``: equal weights on the first-batch-normalised task losses (an ablation,
not in the paper).

The multi-task GREAT (``great.py``, paper section 2.3: "the task losses are normalized by
the initial loss") trains on sum_i J_i / J_i^0, with J_i^0 the task's loss on the first
training batch, and adds the gradient-alignment layers and the task classifier on top.
Equal weights on the raw losses (``equal``) differ from it in both. This method keeps the
normalisation and drops the rest, so GREAT minus ``equal-normalized`` isolates what the
alignment layers add (issue 22).
"""
from __future__ import annotations

from bench.multitask.methods.base import MULTITASK_METHODS, InitialLosses, MultiTaskMethod


@MULTITASK_METHODS.register("equal-normalized")
class EqualNormalized(MultiTaskMethod):

    def __init__(self, model, ctx):
        super().__init__(model, ctx)
        self.initial = InitialLosses(len(self.tasks)).to(ctx.device)

    def modules(self):
        return {"model": self.model, "initial": self.initial}  # resume keeps J_i^0

    def step(self, x, y, ramp):
        self.zero(self.opt)
        raw = self.task_losses(self.model(x), y)
        initial = self.initial.capture(raw)
        (raw / initial).sum().backward()
        self.opt.step()
        return self.logs(raw, 1.0 / initial)  # the effective weight of each raw loss
