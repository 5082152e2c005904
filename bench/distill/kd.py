"""Hinton et al. (2015) distillation with soft targets (Table 3, "Distillation").

loss = (1 - alpha) CE(S(x), y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
The T^2 factor keeps the soft term's gradient scale independent of T. Supplement:
alpha 0.1, T 20 (dense); alpha 0.99, T 20 (sparse); alpha 0.95, T 6 for ResNet-18 +
ResNeXt-29-8.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.distill.base import Distiller
from bench.distill.registry import DISTILLERS
from bench.method import Ramp
from defenses.gradients import accuracy


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1), log_target=True, reduction="batchmean")


@DISTILLERS.register("kd")
class SoftTargetDistillation(Distiller):
    hyperparameters = ("kd_alpha", "kd_temperature")

    def step(self, x, y, ramp: Ramp):
        alpha, temp = float(self.ctx.hp["kd_alpha"]), float(self.ctx.hp["kd_temperature"])
        with torch.no_grad():
            t_logits = self.teacher(x)
        self.zero(self.opt)
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        kl = soft_target_kl(logits, t_logits, temp)
        loss = (1.0 - alpha) * ce + alpha * temp * temp * kl
        loss.backward()
        self.opt.step()
        return {"loss": ce.detach(), "kl": kl.detach(), "acc": accuracy(logits, y)}
