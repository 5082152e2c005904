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


class NotADefense:
    pass


_ = torch  # keep the import: user modules typically need torch
