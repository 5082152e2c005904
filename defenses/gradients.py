"""Gradient primitives shared by GREAT, GREACE, DataGrad and the other tracks."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _GradReverse(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by -scale backward
    (Ganin & Lempitsky's gradient-reversal layer)."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The reversed gradient: whatever minimises a loss downstream maximises it upstream."""
    return _GradReverse.apply(x, scale)


def masked_input_gradient(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                          create_graph: bool, detach_confidence: bool = False) -> torch.Tensor:
    """GREAT's masked gradient tensor g = grad_x of the masked cross-entropy (paper eq. 6,
    Algorithm 1 line 4): back-propagates (p_y - 1) e_y from the logits, i.e. the
    cross-entropy's logit gradient kept only at the true class, so g_i = (p_y,i - 1) d a_y,i / d x_i
    (with batch norm in training mode, plus the cross-example terms the network computes).

    With ``create_graph`` the result stays differentiable in the main network's weights
    (double back-propagation). By default that includes the factor p_y - 1 itself, as the
    paper's double back-propagation of the masked gradient does: the seed is built from
    the differentiable softmax, and autograd differentiates through ``grad_outputs``.
    ``detach_confidence`` holds p_y - 1 constant instead (an ablation, not the paper): the
    reversed gradient then only reshapes d a_y / d x and cannot act through the
    network's confidence p_y. It does not remove a per-example scale from what the
    auxiliary network sees: the auxiliary input scaling (BatchRMSNorm) divides the whole
    batch by one number, so per-example magnitudes (|p_y - 1| among them) stay visible.
    """
    p_y = logits.softmax(dim=1).gather(1, y[:, None])
    if detach_confidence or not create_graph:
        p_y = p_y.detach()
    seed = torch.zeros_like(logits).scatter(1, y[:, None], p_y - 1.0)
    # retain_graph: the caller still back-propagates its own loss through these logits.
    (g,) = torch.autograd.grad(logits, x, grad_outputs=seed, create_graph=create_graph, retain_graph=True)
    return g


def per_example_input_gradient(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                               create_graph: bool) -> torch.Tensor:
    """d CE_i / d x_i for every example i (the summed loss gives per-example gradients)."""
    loss = F.cross_entropy(logits, y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x, create_graph=create_graph, retain_graph=True)
    return g


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()
