"""Cost of one ``great`` multi-task step versus one ``equal`` step (same model, same batch).

The extra cost of GREAT is one backward per task into the shared feature (all in a single
pass through the decoders), the task classifier on tasks x batch gradient tensors, and the
GAL update; the encoder still runs forward and backward once. ``uncertainty`` and
``gradnorm`` are in the same group for context. Run with `make bench`.
"""
from __future__ import annotations

import pytest
import torch

from bench.models import ModelSpec
from bench.multitask.methods import MULTITASK_METHODS
from bench.multitask.network import build_multitask_net
from bench.multitask.tasks import TASKS
from bench.method import Context

SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))
HP = {"lr": 1e-3, "weight_lr": 1e-3, "gal_lr": 1e-3, "gal_min": 1e-3, "gradnorm_alpha": 1.5, "aux_blocks": 4}


@pytest.mark.parametrize("method", ["equal", "uncertainty", "gradnorm", "great"])
def test_multitask_step_cost(benchmark, method):
    tasks = [TASKS.get(n) for n in ("class", "edge", "auto")]
    torch.manual_seed(0)
    net = build_multitask_net("small-conv", SPEC, tasks)
    m = MULTITASK_METHODS.get(method)(net, Context("small-conv", SPEC, dict(HP), extras={"tasks": tasks}))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    y = {"class": torch.randint(0, 10, (64,), generator=g),
         "edge": (torch.rand(64, 1, 28, 28, generator=g) > 0.85).float(),
         "auto": torch.rand(64, 1, 28, 28, generator=g)}
    benchmark.group = "multi-task step (small-conv, 3 tasks, batch 64)"
    benchmark.extra_info["reference"] = method == "equal"
    benchmark.pedantic(m.step, args=(x, y, None), rounds=20, warmup_rounds=3, iterations=1)
