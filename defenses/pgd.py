"""The inner maximisation shared by PGD-AT and TRADES: signed-gradient ascent in an Linf ball.

``pgd_linf`` maximises a summed per-example loss over {x' : |x' - x|_inf <= eps, 0 <= x' <= 1}
(pixel units, the [0, 1] images every model of the bench reads; the model normalises inside,
as for FGSM-AT's ``fgsm_eps``) by ``steps`` steps x' <- proj(x' + step * sign(grad)).

``PGDDefense`` is the base of the defenses that train on such an adversarial: it reads the
shared hyper-parameters ``pgd_eps`` (written in the preset's ``eval.epsilon_units`` and converted
to pixels, like ``fgsm_eps``, before it reaches a defense; in [0, 1] here), ``pgd_steps`` (k) and
``pgd_step_scale`` (the step is ``pgd_step_scale * pgd_eps / pgd_steps``) and attacks in eval
mode. Being a base class, this file is hashed into its subclasses' code version.

``eval_mode`` is the mode the defenses attack in: batch norm uses its running statistics,
so an example's adversarial does not depend on the rest of its batch (it is the function the
evaluation attacks see), and the k attack forwards do not move the running statistics
towards half-perturbed batches. The reference PyTorch code of TRADES (``model.eval()``
before the attack) and the Madry lab's ``robustness`` library do the same.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn as nn

from defenses.base import Defense, Ramp

# Madry et al.'s step-size rule as the robustness library states it: step = 2.5 * eps / k.
STEP_SCALE = 2.5


def step_size(eps: float, steps: int, scale: float = STEP_SCALE) -> float:
    """``scale * eps / steps``: with scale > 1 the k steps can cross the ball and back."""
    return scale * eps / steps


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode inside the block, its previous mode restored after."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The nearest point of the Linf eps-ball around ``x`` inside the [0, 1] box (both are boxes,
    so clamping coordinate-wise to their intersection is the Euclidean projection)."""
    return torch.clamp(x_adv, (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0))


def pgd_linf(loss: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, start: torch.Tensor,
             eps: float, step: float, steps: int) -> torch.Tensor:
    """``steps`` ascent steps on ``loss`` (a scalar, summed over the batch so that each
    example's gradient is its own) from ``project(start)``; returns the detached adversarial.

    Only the input gradient is taken (``autograd.grad``): nothing accumulates in ``.grad``
    of the model's parameters.
    """
    x = x.detach()
    x_adv = project(start.detach(), x, eps)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x_adv), x_adv)
        x_adv = project(x_adv.detach() + step * g.sign(), x, eps)
    return x_adv.detach()


class PGDDefense(Defense):
    """A defense whose step first maximises ``inner_loss`` by ``pgd_linf`` from ``start(x)``,
    with the model in eval mode. Subclasses give the start, the inner loss and the step."""

    hyperparameters = ("pgd_eps",)
    hp_defaults = {"pgd_steps": 7, "pgd_step_scale": STEP_SCALE}

    @property
    def eps(self) -> float:
        return float(self.ctx.hp["pgd_eps"])

    @property
    def steps(self) -> int:
        return int(self.hp_value("pgd_steps"))

    @property
    def step_size(self) -> float:
        return step_size(self.eps, self.steps, float(self.hp_value("pgd_step_scale")))

    def start(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inner_loss(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The loss the adversarial maximises, as a function of the adversarial (summed over the batch)."""
        raise NotImplementedError

    def adversarial(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The inner maximisation's result, in eval mode (module docstring); detached."""
        with eval_mode(self.model):
            return pgd_linf(self.inner_loss(x, y), x, self.start(x), self.eps, self.step_size, self.steps)

    def losses(self, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor):
        """(training loss, logs) given the inner maximisation's ``x_adv``."""
        raise NotImplementedError

    def step(self, x, y, ramp: Ramp):
        """One optimiser step on ``losses`` at the inner maximisation's adversarial (one loop for both)."""
        x_adv = self.adversarial(x, y)
        self.zero(self.opt)
        loss, logs = self.losses(x, y, x_adv)
        loss.backward()
        self.opt.step()
        return logs
