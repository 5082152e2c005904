"""Standard AutoAttack (Croce & Hein, ICML 2020) composed from torchattacks' parts.

torchattacks' own ``AutoAttack`` runs APGD with its default of 10 iterations; the original
standard version uses 100. This composes the same four attacks with the original's
settings: APGD-CE (100 iterations, 1 restart, rho 0.75), APGD-T (DLR loss, 100 iterations,
the 9 = n_classes - 1 most likely other classes as targets), FAB-T (100 iterations, the same
9 targets, alpha_max 0.1, eta 1.05, beta 0.9) and Square (5000 queries, p_init 0.8). Each
attack only sees the points that all earlier ones failed to break (torchattacks'
``MultiAttack``), as in the original. The attack is untargeted from the user's point of
view: APGD-T and FAB-T choose their own targets.
"""
from __future__ import annotations

import torch.nn as nn


def standard_autoattack(model: nn.Module, *, norm: str = "Linf", eps: float = 8 / 255, n_classes: int = 10,
                        seed: int = 0, steps: int = 100, queries: int = 5000):
    import torchattacks
    from torchattacks.wrappers.multiattack import MultiAttack

    parts = [
        torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce",
                          rho=0.75),
        torchattacks.APGDT(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, rho=0.75,
                           n_classes=n_classes),
        torchattacks.FAB(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, alpha_max=0.1,
                         eta=1.05, beta=0.9, multi_targeted=True, n_classes=n_classes),
        torchattacks.Square(model, norm=norm, eps=eps, n_queries=queries, n_restarts=1, p_init=0.8,
                            loss="margin", seed=seed),
    ]
    for atk in parts:  # APGD-T and FAB-T already target the n_classes - 1 other classes
        atk.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    combo = MultiAttack(parts)
    combo.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    return combo
