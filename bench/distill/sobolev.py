"""Sobolev training (Czarnecki et al. 2017) as the supplement's comparison: the student
matches the teacher's input gradients directly by squared error.

loss = CE(S(x), y) + lambda * mean_i || d CE_S,i / d x_i - d CE_T,i / d x_i ||^2,
exact by double back-propagation (create_graph through the student only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.distill.base import Distiller, teacher_input_gradient
from bench.distill.registry import DISTILLERS
from bench.method import Ramp
from defenses.gradients import accuracy, per_example_input_gradient


def gradient_mismatch(g_student: torch.Tensor, g_teacher: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance per example, averaged over the batch."""
    return (g_student - g_teacher).flatten(1).pow(2).sum(1).mean()


@DISTILLERS.register("sobolev")
class SobolevDistillation(Distiller):
    hyperparameters = ("sobolev_lambda",)

    def step(self, x, y, ramp: Ramp):
        lam = float(self.ctx.hp["sobolev_lambda"])
        g_t, _ = teacher_input_gradient(self.teacher, x, y)
        self.zero(self.opt)
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        g_s = per_example_input_gradient(logits, x, y, create_graph=lam > 0)
        mismatch = gradient_mismatch(g_s, g_t)
        torch.autograd.backward(ce + lam * mismatch, inputs=self.params(self.model))
        self.opt.step()
        return {"loss": ce.detach(), "mismatch": mismatch.detach(), "acc": accuracy(logits, y)}
