"""Checks that an attack kept to its threat model: the [0, 1] box and the epsilon ball.

Every adversarial batch the harness gets back passes through ``check_perturbation``
(DESIGN.md, "Evaluation protocol"), so a broken attack cannot report an accuracy on images
outside the threat model.
"""
from __future__ import annotations

import torch

from attacks.registry import ATTACKS
from attacks.specs import AttackSpec
from core.errors import BenchError

# Slack for float rounding when checking that perturbations stay within epsilon.
TOL = 1e-5


def ball_limit(eps: float) -> float:
    """The largest norm accepted as inside the eps-ball (relative and absolute rounding slack);
    the harness and ``great-bench verify`` grant the same."""
    return eps * (1 + 1e-4) + TOL


def within_radius(norms: torch.Tensor, eps: float) -> torch.Tensor:
    """Per example, whether a minimum-norm attack's perturbation counts at radius ``eps``.

    Deliberately tighter than ``ball_limit``: that one bounds what an attack may return (its
    relative slack absorbs the rounding of a projection onto a large ball), while this one
    scores an example, and the rows already computed scored with the absolute slack alone;
    granting the relative slack here would change their numbers."""
    return norms <= eps + TOL


def perturbation_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example size of a perturbation batch in the attack's norm (``Linf`` or ``L2``)."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def check_perturbation(adv: torch.Tensor, x: torch.Tensor, spec: AttackSpec) -> float:
    """Adversarial images lie in [0, 1] and within epsilon in the attack's norm; returns the max norm."""
    if adv.shape != x.shape or not torch.isfinite(adv).all():
        raise BenchError(f"{spec.key()}: the attack returned malformed images (shape or non-finite values)")
    if adv.min() < -TOL or adv.max() > 1 + TOL:
        raise BenchError(f"{spec.key()}: adversarial images leave [0, 1] (min {float(adv.min()):.4g}, "
                         f"max {float(adv.max()):.4g})")
    norms = perturbation_norms(adv - x, spec.norm)
    largest = float(norms.max()) if len(norms) else 0.0
    if not ATTACKS.get(spec.name).min_norm and largest > ball_limit(spec.eps):
        raise BenchError(f"{spec.key()}: perturbation of {spec.norm} norm {largest:.6g} exceeds epsilon {spec.eps}")
    return largest
