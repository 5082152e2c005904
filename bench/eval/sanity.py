"""Sanity flags on the model itself (AutoAttack's checks, Croce & Hein, ICML 2020), plus a
batch-size check.

The masking checks in ``bench.report.masking`` read attack results; these look at the model the
attacks ran on, under the harness's protocol (``attacks.harness.frozen``: eval mode, fp32),
on the evaluation images. Each returns (status, value, threshold, detail):

- ``deterministic``: two forward passes on the same batch agree; value = max |logit
  difference|. Randomness at test time (dropout left on, noise layers) makes every gradient
  a sample and every accuracy a draw (AutoAttack's ``check_randomized``).
- ``zero_gradients``: fraction of examples whose cross-entropy gradient with respect to the
  input is exactly zero; gradient attacks cannot move from such points (AutoAttack's
  ``check_zero_gradients``; saturated softmax or a step function in the model).
- ``probability_outputs``: fraction of output rows that are nonnegative and sum to 1, i.e.
  probabilities instead of logits; cross-entropy on them is flat where the model is
  confident (AutoAttack's ``check_range_output``/``check_dynamic``).
- ``batch_size``: clean and FGSM predictions identical when the same images are fed in two
  batch sizes; value = fraction of examples whose clean or FGSM prediction changes (an
  upper bound on the change of either accuracy, both printed in the detail). Batch norm
  left in training mode or any batch-dependent code makes a prediction depend on its
  batch neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.harness import frozen
from attacks.registry import build_attack, parse_spec

Result = tuple[str, float | str, float, str]


@dataclass(frozen=True)
class SanityThresholds:
    logit_tol: float = 1e-5       # max |logit difference| between two identical forward passes
    zero_grad_tol: float = 0.0    # fraction of all-zero input gradients (AutoAttack flags any)
    prob_tol: float = 0.5         # fraction of rows that look like probabilities
    batch_tol: float = 0.0        # fraction of predictions that change with the batch size
    small_batch: int = 8          # the second batch size (the first feeds all images at once)
    epsilon: float = 0.1          # FGSM epsilon of the batch-size check


def _logits(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]).float() for i in range(0, len(x), batch)])


def deterministic(model, x, y, th: SanityThresholds) -> Result:
    diff = float((_logits(model, x, len(x)) - _logits(model, x, len(x))).abs().max())
    status = "flag" if diff > th.logit_tol else "pass"
    return status, diff, th.logit_tol, f"two forward passes on the same {len(x)} images differ by up to {diff:.3g}"


def zero_gradients(model, x, y, th: SanityThresholds) -> Result:
    xg = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xg).float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xg)
    frac = float((grad.flatten(1).abs().amax(1) == 0).float().mean())
    status = "flag" if frac > th.zero_grad_tol else "pass"
    return status, frac, th.zero_grad_tol, f"{frac:.3f} of {len(x)} examples have an all-zero input gradient"


def probability_outputs(model, x, y, th: SanityThresholds) -> Result:
    out = _logits(model, x, len(x))
    rows = (out.min(1).values >= -1e-6) & (out.max(1).values <= 1 + 1e-6) & ((out.sum(1) - 1).abs() <= 1e-4)
    frac = float(rows.float().mean())
    status = "flag" if frac > th.prob_tol else "pass"
    return status, frac, th.prob_tol, f"{frac:.3f} of output rows are in [0, 1] and sum to 1 (probabilities, not logits)"


def batch_size(model, x, y, th: SanityThresholds) -> Result:
    fgsm = build_attack(model, parse_spec(f"fgsm:eps={th.epsilon}"), int(y.max()) + 1, 0)
    sizes = (len(x), min(th.small_batch, max(1, len(x) // 2)))
    res = []  # per batch size: (clean predictions, FGSM predictions)
    for b in sizes:
        adv = torch.cat([fgsm(x[i : i + b], y[i : i + b]).detach() for i in range(0, len(x), b)])
        res.append((_logits(model, x, b).argmax(1), _logits(model, adv, b).argmax(1)))
    (c1, f1), (c2, f2) = [tuple(float((p == y).float().mean()) for p in r) for r in res]
    changed = float(((res[0][0] != res[1][0]) | (res[0][1] != res[1][1])).float().mean())
    b1, b2 = sizes
    status = "flag" if changed > th.batch_tol else "pass"
    return status, changed, th.batch_tol, (f"batch {b1} vs {b2}: clean accuracy {c1:.3f} vs {c2:.3f}, "
                                           f"FGSM@{th.epsilon:g} {f1:.3f} vs {f2:.3f}; {changed:.3f} of "
                                           "predictions change")


SANITY_CHECKS: dict[str, Callable[..., Result]] = {
    "deterministic": deterministic,
    "zero_gradients": zero_gradients,
    "probability_outputs": probability_outputs,
    "batch_size": batch_size,
}


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  thresholds: SanityThresholds = SanityThresholds()) -> dict[str, Result]:
    """Every flag for one model on the images ``x`` (in [0, 1]) with labels ``y``."""
    with frozen(model):
        return {name: fn(model, x, y, thresholds) for name, fn in SANITY_CHECKS.items()}
