"""``gradnorm``: Chen, Badrinarayanan, Lee & Rabinovich (ICML 2018), GradNorm.

Per step, on the last shared layer W:
    G_i = || grad_W (w_i L_i) || = w_i || grad_W L_i ||,   G_bar = mean_i G_i,
    r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))            (relative inverse training rate),
    L_grad = sum_i | G_i - stopgrad(G_bar r_i^alpha) |_1,
the weights w_i follow grad_w L_grad (they do not receive the task loss gradient), the
network follows sum_i w_i L_i, and after each step the weights are renormalised to sum to
the number of tasks. alpha (``gradnorm_alpha``) is the asymmetry: 0.6 for CIFAR-10 in the
GREAT paper. ||grad_W L_i|| needs no second-order graph because G_i is linear in w_i.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from bench.multitask.methods.base import MULTITASK_METHODS, InitialLosses, MultiTaskMethod


class TaskWeights(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))


@MULTITASK_METHODS.register("gradnorm")
class GradNorm(MultiTaskMethod):
    hyperparameters = ("weight_lr",)
    hp_defaults = {"gradnorm_alpha": 1.5}  # Chen et al.'s asymmetry; the paper uses 0.6 on CIFAR-10

    def __init__(self, model, ctx):
        super().__init__(model, ctx)
        n = len(self.tasks)
        self.weights_ = TaskWeights(n).to(ctx.device)
        self.initial = InitialLosses(n).to(ctx.device)
        self.alpha = float(self.hp_value("gradnorm_alpha"))
        self.w_opt = self.adam(self.weights_, lr=float(ctx.hp.get("weight_lr", self.lr)))
        self.shared = model.last_shared_weight()
        self._params = [p for p in model.parameters() if p.requires_grad]

    def modules(self):
        return {"model": self.model, "weights": self.weights_, "initial": self.initial}

    def optimizers(self):
        return {"model": self.opt, "weights": self.w_opt}

    def grad_norms(self, raw: torch.Tensor) -> torch.Tensor:
        """|| grad_W L_i || for every task (first order, the graph is kept for the main step)."""
        return torch.stack([torch.autograd.grad(raw[i], self.shared, retain_graph=True)[0].norm()
                            for i in range(raw.shape[0])])

    def weight_gradient(self, raw: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        w = self.weights_.w
        G = w * norms
        ratio = raw.detach() / self.initial.capture(raw)
        target = (G.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        (grad,) = torch.autograd.grad((G - target).abs().sum(), w)
        return grad

    def step(self, x, y, ramp):
        self.zero(self.opt, self.w_opt)
        raw = self.task_losses(self.model(x), y)
        norms = self.grad_norms(raw)
        self.weights_.w.grad = self.weight_gradient(raw, norms)
        w = self.weights_.w.detach()
        torch.autograd.backward((w * raw).sum(), inputs=self._params)
        self.opt.step()
        self.w_opt.step()
        self.renormalise()
        return self.logs(raw, w, gradnorm_spread=(w * norms).std() / (w * norms).mean())

    @torch.no_grad()
    def renormalise(self) -> None:
        """Weights stay positive and sum to the number of tasks (Chen et al.)."""
        w = self.weights_.w
        w.clamp_(min=1e-4)
        w.mul_(w.numel() / w.sum())
