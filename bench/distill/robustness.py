"""Clean, FGSM and iFGSM accuracy of a trained student (beyond the paper's Table 3).

Goes through the attack harness (``attacks.evaluate.run_attack``): the same torchattacks
builders, eval mode, fp32 and perturbation checks as the defense track. FGSM (Goodfellow
et al.) and iFGSM = BIM (Kurakin et al.) with 10 steps of eps/10, untargeted. Models take
[0, 1] images and normalise inside, so epsilon is in pixel units.
"""
from __future__ import annotations

import torch.nn as nn

from attacks.evaluate import frozen, predict_logits, run_attack
from attacks.registry import parse_spec
from bench.config import check_epsilon
from bench.data import ImageData, to_float

ATTACK_COLUMNS = {"fgsm_acc": "fgsm:eps={eps}", "ifgsm_acc": "ifgsm:eps={eps},steps=10"}


def robust_accuracy(model: nn.Module, data: ImageData, epsilon: float, batch_size: int = 500) -> dict[str, float]:
    eps = check_epsilon(epsilon, "eval.epsilon")
    was = model.training
    x, y = to_float(data.images), data.labels
    out = {}
    with frozen(model):
        out["clean_acc"] = float((predict_logits(model, x, batch_size).argmax(1) == y).float().mean())
        for column, text in ATTACK_COLUMNS.items():
            preds, _, _ = run_attack(model, parse_spec(text.format(eps=eps)), x, y, None,
                                     num_classes=data.num_classes, seed=0, batch_size=batch_size)
            out[column] = float((preds == y).float().mean())
    model.train(was)
    return out
