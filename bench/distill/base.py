"""What every distillation method shares: a frozen teacher and the optimiser choice.

The teacher arrives through ``Context.extras["teacher"]``. It is frozen here (eval mode,
``requires_grad`` off), so its input gradients never build a graph through its weights and
nothing the student does can move it or fill its ``.grad``.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.errors import BenchError
from bench.method import LR, Context, Method


def _adam(params, hp):
    return torch.optim.Adam(params, lr=float(hp.get("lr", LR)))


def _sgd(params, hp):
    # Supplement, mini-ImageNet: SGD, momentum 0.9, weight decay 5e-4, lr 0.01.
    return torch.optim.SGD(params, lr=float(hp.get("lr", 0.01)), momentum=float(hp.get("momentum", 0.9)),
                           weight_decay=float(hp.get("weight_decay", 5e-4)))


OPTIMIZERS: dict[str, Callable] = {"adam": _adam, "sgd": _sgd}
# The hyper-parameters every distiller reads through ``make_optimizer`` (besides its own).
OPTIMIZER_KEYS = ("optimizer", "momentum", "weight_decay")


def make_optimizer(params, hp) -> torch.optim.Optimizer:
    name = str(hp.get("optimizer", "adam"))
    if name not in OPTIMIZERS:
        raise BenchError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, hp)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: the teacher is a fixed function."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_input_gradient(teacher: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d CE_i / d x_i for every example, teacher logits), both detached.

    Algorithm 2, line 5. The graph is built w.r.t. the input only (the teacher's parameters
    do not require gradients), so the extra cost is one forward and one input-backward
    through the teacher, with no weight-gradient buffers and no second-order graph.
    """
    with torch.enable_grad():
        xt = x.detach().requires_grad_(True)
        logits = teacher(xt)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xt)
    return g, logits.detach()


class Distiller(Method):
    """Base class of the distillation methods; ``needs_teacher`` is False only for baseline."""

    needs_teacher: ClassVar[bool] = True

    def __init__(self, model: nn.Module, ctx: Context):
        super().__init__(model, ctx)
        teacher = ctx.extras.get("teacher")
        if self.needs_teacher and teacher is None:
            raise BenchError(f"distillation method {self.name!r} needs a teacher (Context.extras['teacher'])")
        self.teacher = freeze(teacher) if teacher is not None else None

    def adam(self, module, lr: float | None = None):
        """The base class builds its optimisers through this hook: Adam or SGD from ``hp``."""
        params = module.parameters() if isinstance(module, nn.Module) else module
        return make_optimizer(params, self.ctx.hp)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher's batch-norm statistics never move

    def params(self, *modules: nn.Module) -> list[torch.Tensor]:
        return [p for m in modules for p in m.parameters() if p.requires_grad]
