"""APGD at a fixed radius (Croce & Hein, ICML 2020), from torchattacks' ports of the original.

One harness attack runs two losses in sequence, each only on the examples every earlier one
failed to break (torchattacks' ``MultiAttack``, as AutoAttack chains its parts):

- APGD-CE: the cross-entropy loss, ``restarts`` random starts;
- then either APGD-DLR (``dlr_targets=0``: the untargeted difference-of-logits-ratio loss,
  ``restarts`` starts) or APGD-T (``dlr_targets=k``: the targeted DLR loss against each of the
  k most likely other classes in turn, one start each, as in standard AutoAttack with
  k = n_classes - 1).

The two losses fail in different ways (CE saturates on over-confident models, DLR is invariant
to logit scaling), so the worse of the two per example is the number to report. Under
``norm=L2`` this is the fixed-radius L2 robust accuracy that AutoAttack measures, the check on
the minimum-norm curve (``l2min``). Restarts are seeded inside torchattacks' APGD (it reseeds
the global RNG with ``seed`` on every call), so the harness passes them through instead of
re-running the attack with its own seeds (``AttackInfo.own_restarts``).
"""
from __future__ import annotations

import torch.nn as nn

from attacks.autoattack import APGD_T_CLASSES, DLR_CLASSES, RHO, check_classes


def apgd_pair(model: nn.Module, *, norm: str, eps: float, steps: int, restarts: int, dlr_targets: int,
              n_classes: int, seed: int, rho: float = RHO):
    """APGD-CE, then APGD-DLR (``dlr_targets == 0``) or APGD-T over ``dlr_targets`` classes."""
    import torchattacks
    from torchattacks.wrappers.multiattack import MultiAttack

    if dlr_targets > 0:
        check_classes("apgd", n_classes, APGD_T_CLASSES, "targeted DLR (APGD-T, dlr_targets > 0)")
    else:
        check_classes("apgd", n_classes, DLR_CLASSES, "DLR (APGD-DLR, dlr_targets=0)")
    ce = torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=restarts, seed=seed, loss="ce",
                           rho=rho)
    if dlr_targets > 0:
        # torchattacks' APGDT targets the n_classes - 1 most likely other classes
        second = torchattacks.APGDT(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, rho=rho,
                                    n_classes=min(dlr_targets, n_classes - 1) + 1)
    else:
        second = torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=restarts, seed=seed,
                                   loss="dlr", rho=rho)
    parts = [ce, second]
    for atk in parts:
        atk.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    combo = MultiAttack(parts)
    combo.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    return combo
