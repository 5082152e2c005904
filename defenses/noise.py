"""Gaussian-noise training: the README's example defense ("Add your own defense"), built in.

Train on inputs with isotropic Gaussian noise of standard deviation ``sigma`` (pixel units),
clipped to [0, 1]: a data augmentation, not an adversarial defense (no attack in the loop).
It is registered so that a study can carry the README's 20-line example beside the reference
defenses, under identical attacks, and a results folder that holds it needs no user module to
be read. ``tests/test_noise_defense.py`` checks that the README's code trains identically.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from defenses.base import Defense, Ramp
from defenses.gradients import accuracy
from defenses.registry import DEFENSES


@DEFENSES.register("noise")
class NoisyTraining(Defense):
    """Minimise CE(f(clip(x + sigma * N(0, I))), y)."""

    hp_defaults = {"sigma": 0.1}

    def step(self, x, y, ramp: Ramp):
        self.zero(self.opt)
        sigma = float(self.hp_value("sigma"))
        logits = self.model((x + sigma * torch.randn_like(x)).clamp(0, 1))
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "acc": accuracy(logits, y)}
