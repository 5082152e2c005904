"""GREAT for knowledge distillation (paper section 2.2, Algorithm 2, eq. 8).

A binary discriminator f (the student's architecture, or ``aux_model``, with LeakyReLU(0.2)
and one output logit) classifies input gradients of the cross-entropy as the teacher's
(label 1) or the student's (label 0). The student minimises (1 - alpha) CE and receives the
discriminator's loss gradient on its own input gradient g_s through a gradient-reversal
layer scaled by alpha (Algorithm 2, lines 8-9), so it learns gradients that look like the
teacher's. g_s is built with create_graph=True (double back-propagation); the teacher's
gradient g_t is a constant (no graph through the teacher's weights).

One backward pass trains both networks: the discriminator's loss J(t, 1) + J(s, 0) trains
f directly (lines 6-7) and reaches the student reversed. Teacher and student gradients go
through f as one batch, so its batch-norm statistics are shared and cannot tell the two
sources apart by normalising them separately. alpha is constant (0.1 in the paper), not
ramped as in the defense track.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.distill.base import Distiller, teacher_input_gradient
from bench.distill.registry import DISTILLERS
from bench.method import Context, Ramp
from defenses.gradients import accuracy, grad_reverse, per_example_input_gradient


@DISTILLERS.register("great")
class GreatDistillation(Distiller):
    hyperparameters = ("great_alpha",)

    def __init__(self, model, ctx: Context):
        super().__init__(model, ctx)
        self.disc = ctx.make_aux(num_classes=1, model_name=ctx.hp.get("aux_model") or ctx.model_name)
        self.disc_opt = self.adam(self.disc)
        self._params = self.params(self.model, self.disc)

    def modules(self):
        return {"model": self.model, "disc": self.disc}

    def optimizers(self):
        return {"model": self.opt, "disc": self.disc_opt}

    def step(self, x, y, ramp: Ramp):
        alpha = float(self.ctx.hp["great_alpha"])
        g_t, _ = teacher_input_gradient(self.teacher, x, y)
        self.zero(self.opt, self.disc_opt)
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        g_s = per_example_input_gradient(logits, x, y, create_graph=alpha > 0)
        s_in = grad_reverse(g_s, alpha) if alpha > 0 else g_s.detach()
        d = self.disc(torch.cat([s_in, g_t])).squeeze(1)
        n = g_s.shape[0]
        d_s, d_t = d[:n], d[n:]
        loss_s = F.binary_cross_entropy_with_logits(d_s, torch.zeros_like(d_s))  # J(f(s), 0)
        loss_t = F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t))   # J(f(t), 1)
        torch.autograd.backward((1.0 - alpha) * ce + loss_s + loss_t, inputs=self._params)
        self.opt.step()
        self.disc_opt.step()
        with torch.no_grad():
            disc_acc = ((d_s < 0).float().sum() + (d_t > 0).float().sum()) / (2 * n)
            # Relative squared distance between student and teacher gradients (monitoring).
            dist = (g_s.detach() - g_t).flatten(1).pow(2).sum(1) / g_t.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        return {"loss": ce.detach(), "disc_loss_student": loss_s.detach(), "disc_loss_teacher": loss_t.detach(),
                "disc_acc": disc_acc, "grad_dist": dist.mean(), "acc": accuracy(logits, y)}
