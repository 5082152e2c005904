"""Standard AutoAttack (Croce & Hein, ICML 2020) composed from torchattacks' parts.

torchattacks' own ``AutoAttack`` runs APGD with its default of 10 iterations; the original
standard version uses 100. This composes the same four attacks with the original's
settings: APGD-CE (100 iterations, 1 restart, rho 0.75), APGD-T (DLR loss, 100 iterations,
the 9 = n_classes - 1 most likely other classes as targets), FAB-T (100 iterations, the same
9 targets, alpha_max 0.1, eta 1.05, beta 0.9) and Square (5000 queries, p_init 0.8). Each
attack only sees the points that all earlier ones failed to break (torchattacks'
``MultiAttack``), as in the original. The attack is untargeted from the user's point of
view: APGD-T and FAB-T choose their own targets.

Standard AutoAttack is itself a cascade. When a sweep's ``apgd`` row already ran APGD-CE and
APGD-T with exactly these settings (``composed_with``), a cascaded AutoAttack after it runs
only FAB-T and Square on that row's survivors (issue 27): running its APGD parts again on
examples they already failed on would repeat the same work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch.nn as nn

from core.errors import BenchError

RHO = 0.75            # APGD's step-size checkpoint parameter, as in the original
APGD_T_CLASSES = 4    # the targeted DLR loss reads the 4th-largest logit (Croce & Hein, eq. 6)
DLR_CLASSES = 3       # the untargeted DLR loss reads the 3rd-largest logit


def check_classes(attack: str, n_classes: int, needed: int, loss: str) -> None:
    """torchattacks' DLR losses index sorted logits: fewer classes fail with an IndexError."""
    if n_classes < needed:
        raise BenchError(f"attack {attack!r} uses the {loss} loss, which needs at least {needed} classes; "
                         f"this dataset has {n_classes}. Use pgd, fgsm, ifgsm, square or apgd with "
                         "dlr_targets=0 (3 or more classes) instead")


def _parts(model: nn.Module, *, norm: str, eps: float, n_classes: int, seed: int, steps: int, queries: int,
           apgd: bool) -> list:
    import torchattacks

    parts = []
    if apgd:
        parts += [
            torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce", rho=RHO),
            torchattacks.APGDT(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, rho=RHO,
                               n_classes=n_classes),
        ]
    parts += [
        torchattacks.FAB(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed, alpha_max=0.1,
                         eta=1.05, beta=0.9, multi_targeted=True, n_classes=n_classes),
        torchattacks.Square(model, norm=norm, eps=eps, n_queries=queries, n_restarts=1, p_init=0.8,
                            loss="margin", seed=seed),
    ]
    return parts


def standard_autoattack(model: nn.Module, *, norm: str = "Linf", eps: float = 8 / 255, n_classes: int = 10,
                        seed: int = 0, steps: int = 100, queries: int = 5000, apgd: bool = True):
    """Standard AutoAttack; ``apgd=False``: only its FAB-T and Square parts (the composed form)."""
    from torchattacks.wrappers.multiattack import MultiAttack

    check_classes("autoattack", n_classes, APGD_T_CLASSES, "targeted DLR (APGD-T)")
    parts = _parts(model, norm=norm, eps=eps, n_classes=n_classes, seed=seed, steps=steps, queries=queries,
                   apgd=apgd)
    for atk in parts:  # APGD-T and FAB-T already target the n_classes - 1 other classes
        atk.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    combo = MultiAttack(parts)
    combo.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    return combo


@dataclass(frozen=True)
class Composed:
    """A cascaded AutoAttack whose APGD-CE and APGD-T parts ``stood_in`` already ran."""

    stood_in: object  # the AttackSpec of that apgd row

    def build(self, model, spec, num_classes: int, seed: int):
        return standard_autoattack(model, norm=spec.norm, eps=spec.eps, n_classes=num_classes, seed=seed,
                                   steps=spec.steps, queries=int(spec.param("queries")), apgd=False)

    def describe(self) -> str:
        """The row's ``components``: what ran here, and what an earlier row stood in for."""
        return f"FAB-T, Square; APGD-CE, APGD-T from {self.stood_in.key()}"


def is_standard_apgd(apgd, autoattack, n_classes: int) -> bool:
    """Whether an ``apgd`` spec ran exactly standard AutoAttack's APGD-CE and APGD-T: same norm,
    radius and steps, one restart, the targeted DLR loss on all n_classes - 1 other classes."""
    return (apgd.name == "apgd" and apgd.norm == autoattack.norm and round(apgd.eps, 9) == round(autoattack.eps, 9)
            and apgd.steps == autoattack.steps and apgd.restarts == 1
            and int(apgd.param("dlr_targets")) >= n_classes - 1)


def composed_with(spec, before: Sequence, n_classes: int) -> Composed | None:
    """How a cascaded ``autoattack`` spec is composed with the attacks ``before`` it: after a
    standard APGD-CE+T spec, only FAB-T and Square remain (``Composed``); else None (run it all)."""
    if spec.name != "autoattack" or not spec.cascade:
        return None
    stood_in = next((s for s in before if is_standard_apgd(s, spec, n_classes)), None)
    return None if stood_in is None else Composed(stood_in)
