"""PGD adversarial training (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018).

min_theta E max_{|d|_inf <= eps} CE(f(x + d), y): every step trains on PGD-k adversarials
only (no clean term), found from a uniform random start in the ball. Madry et al.'s CIFAR-10
recipe is k = 7 steps of 2/255 at eps = 8/255; the defaults here are k = 7 and the step
2.5 * eps / k (``defenses.pgd``), so one setting scales to any preset's ``pgd_eps``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.gradients import accuracy
from defenses.pgd import PGDDefense
from defenses.registry import DEFENSES


@DEFENSES.register("pgd-at")
class PGDAdversarialTraining(PGDDefense):
    """Train on CE at the PGD-k adversarial (``pgd_eps``, ``pgd_steps``, ``pgd_step_scale``)."""

    hp_defaults = {"pgd_steps": 7, "pgd_step_scale": 2.5}

    def start(self, x):
        """Uniform in the eps-ball (Madry et al.'s random start); ``pgd_linf`` clips it to [0, 1]."""
        return x + self.eps * (2.0 * torch.rand_like(x) - 1.0)

    def inner_loss(self, x, y):
        return lambda x_adv: F.cross_entropy(self.model(x_adv), y, reduction="sum")

    def losses(self, x, y, x_adv):
        """(loss, logs): the mean CE at the adversarial, the model in its current (train) mode."""
        logits = self.model(x_adv)
        loss = F.cross_entropy(logits, y)
        return loss, {"adv_loss": loss.detach(), "adv_acc": accuracy(logits, y)}
