"""The base of every multi-task method: a ``bench.method.Method`` whose ``y`` is a dict of task targets.

``fit`` (bench/train.py) runs it like any defense: lr policy on every optimizer, per-epoch
checkpoints (all state lives in ``modules()`` so that resume restores it), and the step logs
averaged per epoch into train_log.csv. Every method logs ``loss_<task>`` (raw loss) and
``w_<task>`` (the task weight, or for GREAT the mean of the task's GAL), which the track
plots as trajectories.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bench.registry import Registry
from bench.method import Context, Method

MULTITASK_METHODS: Registry[type] = Registry("multi-task method")


class InitialLosses(nn.Module):
    """The task losses of the first training batch (GradNorm's L_i(0), GREAT's C_i^0),
    held in buffers so that a resumed run keeps the same normalisation."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("values", torch.zeros(n))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self._ready_cache = False

    def capture(self, losses: torch.Tensor) -> torch.Tensor:
        """Record ``losses`` on the first call; return the recorded values."""
        if not self._ready_cache:
            if not bool(self.ready):  # one host sync, then cached
                self.values.copy_(losses.detach().clamp_min(1e-12))
                self.ready.fill_(True)
            self._ready_cache = True
        return self.values


class MultiTaskMethod(Method):
    """Reads the task list from ``ctx.extras['tasks']``; ``self.model`` is a MultiTaskNet."""

    def __init__(self, model: nn.Module, ctx: Context):
        super().__init__(model, ctx)
        self.tasks = list(ctx.extras["tasks"])
        self.names = [t.name for t in self.tasks]

    def task_losses(self, preds: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([t.loss(preds[t.name], y[t.name]) for t in self.tasks])

    def logs(self, raw: torch.Tensor, weights: torch.Tensor, **extra: torch.Tensor) -> dict[str, Any]:
        out: dict[str, torch.Tensor] = {"loss": raw.detach().sum()}
        for i, name in enumerate(self.names):
            out[f"loss_{name}"] = raw[i].detach()
            out[f"w_{name}"] = weights[i].detach()
        out.update({k: v.detach() for k, v in extra.items()})
        return out
