"""User-style defenses for tests, loaded through ``--defense custom_defenses:Name``."""
import torch

from defenses.baseline import Baseline


class NanAfterFirstEpoch(Baseline):
    """Trains normally in epoch 1, then reports a NaN loss (a diverging run)."""

    def step(self, x, y, ramp):
        logs = super().step(x, y, ramp)
        if ramp.epoch >= 1:
            logs["loss"] = logs["loss"] * float("nan")
        return logs


class InterruptInEpoch2(Baseline):
    """Simulates Ctrl-C in the middle of the second epoch."""

    calls = 0

    def step(self, x, y, ramp):
        if ramp.epoch == 1:
            InterruptInEpoch2.calls += 1
            if InterruptInEpoch2.calls == 2:
                raise KeyboardInterrupt
        return super().step(x, y, ramp)


class ScaledLoss(Baseline):
    """A user defense with a hyper-parameter of its own (``loss_scale``): the settings must
    accept the key once the preset names this class, and variants of it work."""

    hyperparameters = ("loss_scale",)

    def step(self, x, y, ramp):
        self.zero(self.opt)
        loss = float(self.ctx.hp["loss_scale"]) * torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}


class NotADefense:
    pass


_ = torch  # keep the import: user modules typically need torch
