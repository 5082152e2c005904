"""The defense interface: one small abstraction shared by every training procedure.

A defense owns any extra modules (auxiliary network, ...) and their optimizers, and
implements one training step. The generic loop (``bench/train.py``) owns epochs, the
learning-rate policy, the alpha/beta ramps, logging, checkpointing and resume.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from bench.models import ModelSpec, aux_spec, build_model


@dataclass(frozen=True)
class Ramp:
    """Per-epoch schedule values (paper supplement): lr multiplier m = (1 - e/E)^0.9,
    alpha = alpha_max * (1 - m), beta = beta_max * (1 - m)."""

    epoch: int
    lr_mult: float
    alpha: float
    beta: float


@dataclass
class Context:
    """What a defense may read when it is built."""

    model_name: str
    spec: ModelSpec
    hp: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. a teacher for distillation

    def make_aux(self, num_classes: int | None = None, model_name: str | None = None,
                 input_scale: str = "batch-rms") -> nn.Module:
        """An auxiliary network: the main architecture with LeakyReLU(0.2) (supplement)."""
        name = model_name or self.hp.get("aux_model") or self.model_name
        return build_model(name, aux_spec(self.spec, num_classes, input_scale)).to(self.device)


class Defense:
    """Base class. Subclasses set ``name`` and implement ``step``.

    ``hyperparameters`` names the keys of ``ctx.hp`` the defense reads; the loop saves
    them in meta.json and validates that they are finite and non-negative.
    """

    name: ClassVar[str] = "defense"
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    hp_defaults: ClassVar[dict[str, Any]] = {}  # values for keys a preset may leave out

    def __init__(self, model: nn.Module, ctx: Context):
        self.model = model
        self.ctx = ctx
        self.opt = self.adam(model)

    def adam(self, module: nn.Module | list) -> torch.optim.Optimizer:
        params = module.parameters() if isinstance(module, nn.Module) else module
        return torch.optim.Adam(params, lr=float(self.ctx.hp.get("lr", 1e-3)))

    def modules(self) -> dict[str, nn.Module]:
        """Modules to save; 'model' is the network the attack harness evaluates."""
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)

    def step(self, x: torch.Tensor, y: Any, ramp: Ramp) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch; returns detached scalar tensors to log.

        Return tensors, not floats: the loop averages them on the device and synchronises
        once per epoch instead of once per step.
        """
        raise NotImplementedError

    @staticmethod
    def zero(*opts: torch.optim.Optimizer) -> None:
        for o in opts:
            o.zero_grad(set_to_none=True)
