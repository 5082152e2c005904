"""The distillation track's robustness numbers follow the harness protocol: clean errors stay errors."""
from __future__ import annotations

import torch
import torch.nn as nn

from bench.data import ImageData
from bench.distill.robustness import robust_accuracy


class OvershootNet(nn.Module):
    """Two classes; logit_0 = 1000 (mean(x) - 0.5)^2 - 1, logit_1 = 0. An image of mean just
    above 0.5 is classified 1; FGSM on label 0 lowers the mean (it climbs the loss), overshoots
    0.5 by almost epsilon and lands where class 0 wins: the attack 'repairs' the error."""

    def forward(self, x):
        m = x.flatten(1).mean(1)
        l0 = 1000.0 * (m - 0.5) ** 2 - 1.0
        return torch.stack([l0, torch.zeros_like(l0)], 1)


def test_a_clean_misclassified_example_is_never_counted_correct():
    images = torch.full((4, 1, 4, 4), 130, dtype=torch.uint8)   # mean 0.5098: classified 1
    labels = torch.zeros(4, dtype=torch.long)                    # true label 0: all clean errors
    model = OvershootNet()
    x = images.float() / 255
    x_adv = (x - 0.1).clamp(0, 1)                                # FGSM at eps 0.1 on this model
    assert (model(x).argmax(1) != labels).all() and (model(x_adv).argmax(1) == labels).all()
    out = robust_accuracy(model, ImageData("toy", "test", images, labels, 2), 0.1)
    assert out == {"clean_acc": 0.0, "fgsm_acc": 0.0, "ifgsm_acc": 0.0}
