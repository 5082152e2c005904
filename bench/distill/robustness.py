"""Clean, FGSM and iFGSM accuracy of a trained student (beyond the paper's Table 3).

Calls torchattacks directly: FGSM (Goodfellow et al.) and BIM, the iterated FGSM
(Kurakin et al.), with 10 steps of eps/10, untargeted, on the model in eval mode. Models
take [0, 1] images and normalise inside, so epsilon is in pixel units.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from bench.config import check_epsilon
from bench.data import ImageData, to_float


def robust_accuracy(model: nn.Module, data: ImageData, epsilon: float, batch_size: int = 500,
                    ifgsm_steps: int = 10) -> dict[str, float]:
    import torchattacks

    eps = check_epsilon(epsilon, "eval.epsilon")
    was = model.training
    model.eval()
    attacks = {"fgsm_acc": torchattacks.FGSM(model, eps=eps),
               "ifgsm_acc": torchattacks.BIM(model, eps=eps, alpha=eps / ifgsm_steps, steps=ifgsm_steps)}
    correct = {"clean_acc": 0, **{k: 0 for k in attacks}}
    for i in range(0, len(data), batch_size):
        x, y = to_float(data.images[i : i + batch_size]), data.labels[i : i + batch_size]
        with torch.no_grad():
            correct["clean_acc"] += int((model(x).argmax(1) == y).sum())
        for name, attack in attacks.items():
            x_adv = attack(x, y)
            with torch.no_grad():
                correct[name] += int((model(x_adv).argmax(1) == y).sum())
    model.train(was)
    return {k: v / max(1, len(data)) for k, v in correct.items()}
