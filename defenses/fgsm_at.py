"""FGSM adversarial training (Goodfellow et al. 2015) and adversarial back-propagation
(Nokland 2015, adversarial examples only).

loss = w * CE(x) + (1 - w) * CE(x_adv), x_adv = clip(x + eps * sign(grad_x CE(x)), 0, 1).
The GREAT paper's comparison uses w = 0.5 and eps = 0.2 (supplement); Nokland's variant
is w = 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.base import Defense, Ramp
from defenses.gradients import accuracy
from defenses.registry import DEFENSES


def fgsm_example(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + eps * grad.sign()).clamp_(0.0, 1.0).detach()


@DEFENSES.register("fgsm-at")
class FGSMAdversarialTraining(Defense):
    """Clean/adversarial mix; ``fgsm_mix`` is the clean weight w (0.5 in the paper)."""

    hyperparameters = ("fgsm_eps", "fgsm_mix")
    clean_weight: float | None = None  # None: read fgsm_mix

    def step(self, x, y, ramp: Ramp):
        eps = float(self.ctx.hp["fgsm_eps"])
        w = self.clean_weight if self.clean_weight is not None else float(self.ctx.hp["fgsm_mix"])
        self.zero(self.opt)
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        clean = F.cross_entropy(logits, y)
        if w > 0:
            # One backward pass gives both the input gradient and the clean weight
            # gradients (scaled by w; the sign of the input gradient is unaffected).
            (w * clean).backward()
            gx = x.grad
        else:
            # Adversarial back-propagation: only the input gradient is needed.
            (gx,) = torch.autograd.grad(clean, x)
        x_adv = fgsm_example(x.detach(), gx, eps)
        adv_logits = self.model(x_adv)
        adv = F.cross_entropy(adv_logits, y)
        ((1.0 - w) * adv).backward()
        self.opt.step()
        return {"loss": clean.detach(), "adv_loss": adv.detach(), "acc": accuracy(logits, y),
                "adv_acc": accuracy(adv_logits, y)}


@DEFENSES.register("adv-backprop")
class AdversarialBackprop(FGSMAdversarialTraining):
    """Nokland's adversarial back-propagation: train on FGSM examples only (w = 0)."""

    hyperparameters = ("fgsm_eps",)
    clean_weight = 0.0
