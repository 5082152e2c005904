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
                          create_graph: bool) -> torch.Tensor:
    """GREAT's masked gradient tensor g = (p_y - 1) * d a_y / d x, one per example.

    Back-propagates from the logits the cross-entropy gradient kept only at the true
    class, (p_y - 1) e_y (paper eq. 6 and Algorithm 1, line 4). The factor p_y - 1 is
    held constant (detached): it is a per-example scale that the auxiliary network's
    batch normalisation largely removes, and differentiating it would let the main
    network answer the auxiliary classifier by changing its confidence rather than the
    shape of its gradients. With ``create_graph`` the result stays differentiable in the
    main network's weights (double back-propagation).
    """
    p_y = logits.detach().softmax(dim=1).gather(1, y[:, None])
    seed = torch.zeros_like(logits).scatter_(1, y[:, None], p_y - 1.0)
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
