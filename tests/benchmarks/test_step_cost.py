"""Cost of one training step per defense, as a ratio to `baseline` in the same run.

The `quick` model (small-cnn) on a 1x28x28 batch of 128, with the alpha/beta ramps past
zero so GREAT really builds its second-order graph. Run with `make bench`.
"""
from __future__ import annotations

import pytest
import torch

from bench.models import ModelSpec, build_model
from defenses import DEFENSES, Context, Ramp

HP = {"lr": 1e-3, "alpha_max": 1.0, "beta_max": 2.0, "fgsm_eps": 0.1, "fgsm_mix": 0.5, "datagrad_lambda": 0.1}
SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))


@pytest.mark.parametrize("defense", DEFENSES.names())
def test_step_cost(benchmark, defense):
    torch.manual_seed(0)
    model = build_model("small-cnn", SPEC)
    d = DEFENSES.get(defense)(model, Context("small-cnn", SPEC, dict(HP)))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)
    r = Ramp(5, 0.5, 0.5, 1.0)
    benchmark.group = "defense step (small-cnn, batch 128)"
    benchmark.extra_info["reference"] = defense == "baseline"
    benchmark.pedantic(d.step, args=(x, y, r), rounds=30, warmup_rounds=3, iterations=1)
