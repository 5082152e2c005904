"""Gradient-alignment layers (GALs; paper section 2.3, Figure 3, Algorithm 3).

A GAL is a tensor shaped like the last shared feature without its batch dimension,
initialised to ones. It acts only in the backward pass: forward is the identity (so it is
dropped at inference), backward multiplies the task's incoming gradient element-wise by the
GAL. The GAL itself is not trained by the task loss (its backward returns no gradient for
it): only the task classifier's reversed gradient trains it (Algorithm 3, lines 10-11).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.errors import BenchError


class _GradientAlignment(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feature: torch.Tensor, gal: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gal)
        return feature.view_as(feature)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (gal,) = ctx.saved_tensors
        return grad * gal, None


def check_gal_shape(feature: torch.Tensor, gal: torch.Tensor) -> None:
    if tuple(gal.shape) != tuple(feature.shape[1:]):
        raise BenchError(f"GAL of shape {tuple(gal.shape)} does not match the shared feature "
                         f"{tuple(feature.shape[1:])} (feature shape without the batch dimension); "
                         f"a GAL must be shaped exactly like one example's feature")


def gal_scale(feature: torch.Tensor, gal: torch.Tensor) -> torch.Tensor:
    """Identity forward; backward: incoming gradient * ``gal`` (broadcast over the batch)."""
    check_gal_shape(feature, gal)
    return _GradientAlignment.apply(feature, gal.detach())


class GALs(nn.Module):
    """One GAL per task, stored as rows of one parameter (tasks x feature shape)."""

    def __init__(self, tasks: list[str], feature_shape: tuple[int, ...]):
        super().__init__()
        self.tasks = list(tasks)
        self.weight = nn.Parameter(torch.ones(len(tasks), *feature_shape))

    def forward(self, feature: torch.Tensor, i: int) -> torch.Tensor:
        return gal_scale(feature, self.weight[i])

    @torch.no_grad()
    def keep_positive(self, minimum: float) -> None:
        """The paper requires positive GALs; clamping guarantees it whatever the learning rate."""
        self.weight.clamp_(min=minimum)
