"""``uncertainty``: Kendall, Gal & Cipolla (CVPR 2018), learned homoscedastic uncertainty.

With s_i = log sigma_i^2 learned per task, the loss is
    regression:      1 / (2 sigma^2) L + log sigma = 0.5 exp(-s) L + 0.5 s
    classification:  1 / sigma^2 L + log sigma     = exp(-s) L + 0.5 s
so at the optimum of s a regression task has sigma^2 = L: noisier tasks get larger variance
and smaller weight. The reported weights c_i exp(-s_i) are normalised to sum to 1, as the
GREAT supplement does for a fair comparison with GradNorm; training uses Kendall's loss.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from bench.multitask.methods.base import MULTITASK_METHODS, MultiTaskMethod


class LogVariances(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.s = nn.Parameter(torch.zeros(n))


@MULTITASK_METHODS.register("uncertainty")
class Uncertainty(MultiTaskMethod):
    hyperparameters = ("weight_lr",)

    def __init__(self, model, ctx):
        super().__init__(model, ctx)
        self.log_var = LogVariances(len(self.tasks)).to(ctx.device)
        self.w_opt = self.adam(self.log_var, lr=float(ctx.hp.get("weight_lr", self.lr)))
        self.factor = torch.tensor([1.0 if t.kind == "classification" else 0.5 for t in self.tasks],
                                            device=ctx.device)

    def modules(self):
        return {"model": self.model, "log_var": self.log_var}

    def optimizers(self):
        return {"model": self.opt, "log_var": self.w_opt}

    def weights(self) -> torch.Tensor:
        """Normalised weights c_i exp(-s_i) / sum_j c_j exp(-s_j) (sum to 1)."""
        w = self.factor * torch.exp(-self.log_var.s.detach())
        return w / w.sum()

    def step(self, x, y, ramp):
        self.zero(self.opt, self.w_opt)
        raw = self.task_losses(self.model(x), y)
        s = self.log_var.s
        total = (self.factor * torch.exp(-s) * raw + 0.5 * s).sum()
        total.backward()
        self.opt.step()
        self.w_opt.step()
        return self.logs(raw, self.weights(), log_var_mean=s.detach().mean())
