"""The harness's side of the method protocol (``core.method``): the build-time ``Context``
every track hands a method, which builds auxiliary networks from the model zoo
(``bench.models``). The protocol's names are importable from here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from bench.models import ModelSpec, aux_spec, build_model
from core.method import COMMON_HP, KINDS, LR, Method, MethodContext, Ramp, code_version, hp_keys, hp_kinds

__all__ = ["COMMON_HP", "KINDS", "LR", "Context", "Method", "MethodContext", "Ramp", "code_version", "hp_keys",
           "hp_kinds"]


@dataclass
class Context:
    """What a method may read when it is built (implements ``core.method.MethodContext``)."""

    model_name: str
    spec: ModelSpec
    hp: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. a teacher for distillation

    def make_aux(self, num_classes: int | None = None, model_name: str | None = None,
                 input_scale: str = "batch-rms") -> nn.Module:
        """An auxiliary network: the main architecture with LeakyReLU(0.2) (supplement),
        its gradient-tensor input scaled by ``input_scale`` (a key of ``AUX_INPUT_SCALES``)."""
        name = model_name or self.hp.get("aux_model") or self.model_name
        return build_model(name, aux_spec(self.spec, num_classes, input_scale)).to(self.device)
