"""Target classes for targeted attacks (GREAT paper, Tables 1-2: "random" and "worst").

``random``: drawn once per evaluation set from a seeded generator, as (y + offset) mod C
with offset uniform in 1..C-1, so a target never equals the label and depends only on
the labels and the seed: every defense faces exactly the same targets.
``worst``: the least-likely class under the model being attacked (the paper's "worst
(least probability) target class"), so it is computed per model from its clean logits.
"""
from __future__ import annotations

import torch

from core.errors import BenchError


def random_targets(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    if num_classes < 2:
        raise BenchError("targeted attacks need at least two classes")
    g = torch.Generator().manual_seed(int(seed))
    offset = torch.randint(1, num_classes, (labels.shape[0],), generator=g).to(labels.device)
    return (labels + offset) % num_classes


def worst_targets(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """argmin of the logits over the classes other than the label."""
    masked = logits.detach().float().clone()
    masked.scatter_(1, labels[:, None], float("inf"))
    return masked.argmin(dim=1)


# mode -> (clean logits, labels, num_classes, seed) -> targets; untargeted has none.
TARGET_RULES = {
    "random": lambda logits, labels, c, seed: random_targets(labels, c, seed),
    "worst": lambda logits, labels, c, seed: worst_targets(logits, labels),
}


def targets_for(mode: str, logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                seed: int) -> torch.Tensor | None:
    if mode == "untargeted":
        return None
    if mode not in TARGET_RULES:
        raise BenchError(f"unknown attack mode {mode!r}; valid: untargeted, {', '.join(TARGET_RULES)}")
    return TARGET_RULES[mode](logits, labels, num_classes, seed)
