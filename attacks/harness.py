"""The tensor-level attack harness: a model frozen for attack, predictions in batches, one
attack spec run on a batch of examples with restarts and the threat-model check, and the
per-example best of several minimum-norm runs.

It works on tensors only (no subjects, rows or files), so ``attacks`` depends on ``core``
alone; ``bench.eval.evaluate`` turns its outputs into robustness.csv rows.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from attacks.perturbation import check_perturbation, perturbation_norms
from attacks.registry import ATTACKS, build_attack
from attacks.specs import AttackSpec
from core.errors import BenchError


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """fp32, eval mode, no parameter gradients (attacks differentiate w.r.t. the input only)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


def run_attack(model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor,
               targets: torch.Tensor | None, *, num_classes: int, seed: int, batch_size: int,
               images_out: torch.Tensor | None = None, build=None):
    """Attack the given (clean-correct) examples; return (adversarial predictions, their L2/Linf
    norms, the largest norm checked).
    ``build(model, spec, num_classes, seed)`` replaces the registry's builder (a composed attack).
    ``images_out`` (shaped like ``x``) receives each example's adversarial image, from the restart
    that produced its prediction.

    Restarts (PGD) re-attack only the examples every earlier restart failed on. The global
    RNG is seeded per batch and restart, so random starts are reproducible for a given
    seed and batch size.
    """
    atk = build(model, spec, num_classes, seed) if build else build_attack(model, spec, num_classes, seed)
    preds = torch.empty_like(y)
    norms = torch.zeros(len(y), device=x.device)
    largest = 0.0
    for start in range(0, len(y), batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = x[sl], y[sl]
        lab = targets[sl] if targets is not None else yb
        todo = torch.arange(len(yb), device=x.device)
        pb = yb.clone()
        nb = torch.zeros(len(yb), device=x.device)
        # an attack that restarts itself (APGD) is called once
        for r in range(1 if ATTACKS.get(spec.name).own_restarts else spec.restarts):
            torch.manual_seed(seed + 1_000_003 * r + start)
            adv = atk(xb[todo], lab[todo]).detach()
            largest = max(largest, check_perturbation(adv, xb[todo], spec))
            if images_out is not None:
                images_out[sl][todo] = adv
            with torch.no_grad():
                p = model(adv).argmax(1)
            pb[todo] = p
            nb[todo] = perturbation_norms(adv - xb[todo], spec.norm)
            todo = todo[p == yb[todo]]
            if len(todo) == 0:
                break
        preds[sl], norms[sl] = pb, nb
    if model.training:
        raise BenchError(f"{spec.key()}: the model was left in training mode by the attack")
    return preds, norms, largest


def best_of(runs: Sequence[tuple[torch.Tensor, torch.Tensor, float]], y: torch.Tensor):
    """Per example, the smallest adversarial perturbation over several minimum-norm runs.

    Each run is (predictions, L2 norms, max norm) on the same examples. An example is broken
    by a run iff its prediction differs from the true label; the combined run keeps the
    smallest such norm (inf and the true label where no run broke it), so at every radius
    an example counts as robust only if no run found an adversarial within that radius.
    """
    preds = torch.stack([p for p, _, _ in runs])                   # (runs, examples)
    norms = torch.stack([d for _, d, _ in runs]).clone()
    norms[preds == y] = torch.inf
    d, which = norms.min(0)
    p = torch.where(torch.isfinite(d), preds.gather(0, which[None]).squeeze(0), y)
    largest = float(d[torch.isfinite(d)].max()) if bool(torch.isfinite(d).any()) else 0.0
    return p, d, largest
