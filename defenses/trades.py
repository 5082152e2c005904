"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, ICML 2019).

loss = CE(f(x), y) + beta * KL(f(x) || f(x')), x' = argmax_{|x' - x|_inf <= eps} KL(f(x) || f(x')),
as the authors' reference code computes it (``trades.py``): the KL is ``kl_div`` of
log_softmax(f(x')) against softmax(f(x)) (``batchmean``: summed over classes, averaged over the
batch); the inner maximisation starts at x + 0.001 N(0, 1) and ascends the KL against the clean
prediction (eval mode, held fixed); the outer KL differentiates through both f(x) and f(x').
beta = 6 is the paper's. The reference's CIFAR-10 inner loop is 10 steps of 0.007 at eps
0.031 (2.26 eps / k); the defaults here are k = 10 and 2.5 eps / k, as for PGD-AT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.gradients import accuracy
from defenses.pgd import PGDDefense, eval_mode
from defenses.registry import DEFENSES

START_STD = 0.001  # the reference code's start: x + 0.001 * N(0, 1)


def trades_kl(adv_logits: torch.Tensor, clean_logits: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(clean) || softmax(adv)) = sum_c p_c log(p_c / q_c), summed over classes and
    reduced over the batch (``batchmean``: divided by the batch size; ``sum``: not)."""
    return F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction=reduction)


@DEFENSES.register("trades")
class TRADES(PGDDefense):
    """CE(x) + ``trades_beta`` * KL(f(x) || f(x')), x' by PGD on the KL (``pgd_eps``, ``pgd_steps``,
    ``pgd_step_scale``)."""

    hp_defaults = {"pgd_steps": 10, "pgd_step_scale": 2.5, "trades_beta": 6.0}

    @property
    def beta(self) -> float:
        return float(self.hp_value("trades_beta"))

    def start(self, x):
        return x + START_STD * torch.randn_like(x)

    def inner_loss(self, x, y):
        with torch.no_grad(), eval_mode(self.model):
            clean = self.model(x)
        return lambda x_adv: trades_kl(self.model(x_adv), clean, reduction="sum")

    def losses(self, x, y, x_adv):
        """(loss, logs): CE on x plus beta * the batch-mean KL, both forwards in the current (train) mode."""
        logits = self.model(x)
        adv_logits = self.model(x_adv)
        ce = F.cross_entropy(logits, y)
        kl = trades_kl(adv_logits, logits)
        return ce + self.beta * kl, {"loss": ce.detach(), "kl": kl.detach(), "acc": accuracy(logits, y),
                                     "adv_acc": accuracy(adv_logits, y)}
