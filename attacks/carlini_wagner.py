"""Carlini-Wagner L2 (Carlini & Wagner, S&P 2017) from foolbox 3, behind the harness's interface.

A minimum-norm attack looks, per example, for the smallest perturbation that changes the
decision; accuracy at every radius r then comes from one run (broken at r iff the
perturbation found has norm <= r). CW minimises ||delta||^2 + c * max(margin, -kappa)
with Adam in tanh space, with a per-example binary search over c (9 steps in the paper:
c grows tenfold until an adversarial is found, then bisects), keeping per example the
smallest successful perturbation over all search steps and iterations.

foolbox's ``L2CarliniWagnerAttack`` does exactly this with per-example constants; it is
used rather than hand-written code (docs/protocol.md, "Why foolbox for the L2 column"). Examples the
attack did not break come back unperturbed, so the harness sees them as correctly
classified at every radius.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn


class MinimumNormL2:
    """``atk(x, labels) -> adversarial images`` for a foolbox minimisation attack.

    ``labels`` are the true labels (untargeted) or the target classes (``targeted``),
    as the harness passes them to torchattacks' by-label mode.
    """

    def __init__(self, model: nn.Module, make: Callable[[], Any], targeted: bool = False):
        self.model = model
        self.make = make
        self.targeted = targeted

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import foolbox as fb

        if len(x) == 0:
            return x.detach().clone()
        was_training = self.model.training
        self.model.eval()  # foolbox refuses to attack a model in training mode
        try:
            fmodel = fb.PyTorchModel(self.model, bounds=(0.0, 1.0), device=x.device)
            crit = fb.criteria.TargetedMisclassification(labels) if self.targeted else fb.criteria.Misclassification(labels)
            adv = self.make().run(fmodel, x.detach(), crit).detach().clamp(0.0, 1.0)
            with torch.no_grad():
                pred = self.model(adv).argmax(1)
        finally:
            self.model.train(was_training)
        ok = pred == labels if self.targeted else pred != labels
        # Failed examples go back unperturbed: foolbox's CW returns zeros for them, which
        # may happen to be misclassified and would count as a (huge) adversarial.
        return torch.where(ok.view(-1, *([1] * (x.dim() - 1))), adv, x.detach())


def carlini_wagner_l2(model: nn.Module, *, steps: int, binary_search_steps: int, initial_const: float,
                      stepsize: float, confidence: float, targeted: bool) -> MinimumNormL2:
    import foolbox as fb

    return MinimumNormL2(model, lambda: fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=binary_search_steps, steps=steps, stepsize=stepsize, confidence=confidence,
        initial_const=initial_const, abort_early=True), targeted)
