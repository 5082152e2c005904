"""The method protocol: one small abstraction shared by defenses, distillers and multi-task methods.

A method owns any extra modules (auxiliary network, GAL tensors, ...) and their optimizers
and implements one training step on a batch, returning detached scalar logs. The generic
loop (``bench/train.py``) owns epochs, the learning-rate policy, the alpha/beta ramps
(paper supplement), logging, checkpointing and resume. ``defenses``, ``bench.distill`` and
``bench.multitask`` subclass ``Method``.

This module sits in the leaf package ``core`` and imports nothing of the project but
``core``: a method reads its build-time context through the ``MethodContext`` protocol,
which the harness implements (``bench.method.Context`` builds auxiliary networks from the
model zoo). So ``defenses`` depends on ``core`` only, and ``bench`` on both.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn as nn


# Hyper-parameters every method may read besides its declared ones (the optimiser's
# learning rate; the auxiliary architecture of the methods that build one).
COMMON_HP = ("lr", "aux_model")
LR = 1e-3  # the learning rate when a preset sets none: Adam's 1e-3 (paper supplement)


@dataclass(frozen=True)
class Ramp:
    """Per-epoch schedule values (paper supplement): lr multiplier m = (1 - e/E)^0.9,
    alpha = alpha_max * (1 - m), beta = beta_max * (1 - m)."""

    epoch: int
    lr_mult: float
    alpha: float
    beta: float


class MethodContext(Protocol):
    """What a method may read when it is built (``bench.method.Context`` is the implementation)."""

    model_name: str
    spec: Any                 # bench.models.ModelSpec of the main network
    hp: dict[str, Any]
    device: torch.device
    extras: dict[str, Any]    # e.g. a teacher for distillation

    def make_aux(self, num_classes: int | None = None, model_name: str | None = None,
                 input_scale: str = "batch-rms") -> nn.Module:
        """An auxiliary network (the main architecture with LeakyReLU(0.2), supplement)."""
        ...


class Method:
    """Base class of every training procedure. Subclasses implement ``step``.

    ``name`` is set by the registry that registers the class (the name is written once, in
    the ``register`` line); ``hyperparameters`` names the keys of ``ctx.hp`` the method
    reads (the settings accept exactly the union of these keys); ``hp_defaults`` gives
    values for keys a preset may leave out; ``version`` is bumped by hand when a change in
    code outside the class's own module (a shared helper) changes what it computes, since
    ``code_version`` hashes only the modules that define the class and its bases.
    """

    name: ClassVar[str] = "method"
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    hp_defaults: ClassVar[dict[str, Any]] = {}
    version: ClassVar[str] = "1"

    def __init__(self, model: nn.Module, ctx: MethodContext):
        self.model = model
        self.ctx = ctx
        self.opt = self.adam(model)

    @property
    def lr(self) -> float:
        """``hp.lr``, else ``LR``: the base rate of every optimiser the method builds."""
        return float(self.ctx.hp.get("lr", LR))

    def hp_value(self, key: str) -> Any:
        """``ctx.hp[key]``, else the class's declared default (``hp_defaults``)."""
        return self.ctx.hp[key] if key in self.ctx.hp else type(self).hp_defaults[key]

    def adam(self, module: nn.Module | list, lr: float | None = None) -> torch.optim.Optimizer:
        params = module.parameters() if isinstance(module, nn.Module) else module
        return torch.optim.Adam(params, lr=self.lr if lr is None else lr)

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


def code_version(cls: type) -> str:
    """The class's ``version`` plus a hash of the source files of the modules that define it
    and its ``Method`` bases: editing a method's file makes its finished runs stale."""
    h = hashlib.sha256(str(getattr(cls, "version", "")).encode())
    for klass in cls.__mro__:
        if klass is object or not (isinstance(klass, type) and issubclass(klass, Method)):
            continue
        module = sys.modules.get(klass.__module__)
        try:
            h.update(inspect.getsource(module).encode() if module is not None else klass.__qualname__.encode())
        except (OSError, TypeError):  # defined interactively: only the name is known
            h.update(klass.__qualname__.encode())
    return h.hexdigest()[:16]


def hp_keys(cls: type) -> set[str]:
    """The ``ctx.hp`` keys a method class reads: its declared ones plus ``COMMON_HP``."""
    return set(COMMON_HP) | set(getattr(cls, "hyperparameters", ())) | set(getattr(cls, "hp_defaults", {}))


# What a hyper-parameter value must be: a key's declared default fixes its kind; ``aux_model``
# names a model; every other key (``lr`` and the required ones) is a number.
KINDS = {bool: "boolean", int: "number", float: "number", str: "string"}


def hp_kinds(cls: type) -> dict[str, str]:
    """Per ``ctx.hp`` key of a method class, the kind of value it takes ("number", "boolean", "string")."""
    defaults = getattr(cls, "hp_defaults", {})
    out = {}
    for k in sorted(hp_keys(cls)):
        if k in defaults:
            kind = KINDS.get(type(defaults[k]))
            if kind is not None:
                out[k] = kind
        else:
            out[k] = "string" if k == "aux_model" else "number"
    return out
