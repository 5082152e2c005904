"""DataGrad (Ororbia, Kifer & Giles 2017): penalise the input gradient of the loss.

loss = CE(x) + lambda * mean_i R(grad_x CE_i), R = L1 norm or squared L2 norm per example,
exact by double back-propagation (squared L2 is Drucker & LeCun's double backprop).
With batch normalisation in training mode an example's gradient also depends on the
rest of its batch; that is what the network actually computes, so it is what we penalise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.base import Defense, Ramp
from defenses.gradients import accuracy, per_example_input_gradient
from defenses.registry import DEFENSES


def l1_penalty(g: torch.Tensor) -> torch.Tensor:
    return g.flatten(1).abs().sum(1)


def l2sq_penalty(g: torch.Tensor) -> torch.Tensor:
    return g.flatten(1).pow(2).sum(1)


class DataGrad(Defense):
    penalty = staticmethod(l2sq_penalty)
    hyperparameters = ("datagrad_lambda",)

    def loss(self, x, y):
        """(total loss, cross-entropy, logits) -- separate so tests can differentiate it."""
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        g = per_example_input_gradient(logits, x, y, create_graph=True)
        ce = F.cross_entropy(logits, y)
        reg = self.penalty(g).mean()
        return ce + float(self.ctx.hp["datagrad_lambda"]) * reg, ce, reg, logits

    def step(self, x, y, ramp: Ramp):
        self.zero(self.opt)
        total, ce, reg, logits = self.loss(x, y)
        torch.autograd.backward(total, inputs=[p for p in self.model.parameters() if p.requires_grad])
        self.opt.step()
        return {"loss": ce.detach(), "penalty": reg.detach(), "acc": accuracy(logits, y)}


@DEFENSES.register("datagrad-l1")
class DataGradL1(DataGrad):
    penalty = staticmethod(l1_penalty)


@DEFENSES.register("datagrad-l2")
class DataGradL2(DataGrad):
    penalty = staticmethod(l2sq_penalty)
