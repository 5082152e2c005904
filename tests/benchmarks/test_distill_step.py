"""Cost of one ``great`` distillation step versus one ``kd`` step (same student, teacher, batch).

The quick preset's pair: CNN-5 student, ResNet-18-w16 teacher, small-cnn discriminator, a
1x28x28 batch of 128. GREAT's extra cost over KD is the teacher's input gradient (one
input-only backward through the frozen teacher), the student's input gradient with a
second-order graph, the discriminator on 2 x batch gradient tensors and the double
back-propagation. ``baseline`` and ``sobolev`` are in the same group for context; a second
group shows what freezing the teacher saves on its input gradient. Run with `make bench`.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.distill import DISTILLERS
from bench.distill.base import freeze, teacher_input_gradient
from bench.models import ModelSpec, build_model
from bench.method import Context, Ramp

SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))
HP = {"lr": 1e-3, "kd_alpha": 0.1, "kd_temperature": 20.0, "great_alpha": 0.1, "sobolev_lambda": 1.0,
      "aux_model": "small-cnn"}


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    return freeze(build_model("resnet18-w16", SPEC))


@pytest.mark.parametrize("method", ["baseline", "kd", "great", "sobolev"])
def test_distill_step_cost(benchmark, teacher, method):
    torch.manual_seed(0)
    d = DISTILLERS.get(method)(build_model("cnn5", SPEC), Context("cnn5", SPEC, dict(HP), extras={"teacher": teacher}))
    d.train(True)
    x, y = _batch()
    benchmark.group = "distillation step (cnn5 student, resnet18-w16 teacher, batch 128)"
    benchmark.extra_info["reference"] = method == "kd"
    benchmark.pedantic(d.step, args=(x, y, Ramp(0, 1.0, 0.0, 0.0)), rounds=15, warmup_rounds=2, iterations=1)


def _grad_through_weights(model, x, y):
    """The naive way: the teacher's weights still require grad, so autograd records them."""
    xt = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xt), y, reduction="sum"), xt)
    return g


@pytest.mark.parametrize("variant", ["frozen", "weights-require-grad"])
def test_teacher_input_gradient_cost(benchmark, teacher, variant):
    x, y = _batch()
    benchmark.group = "teacher input gradient (resnet18-w16, batch 128)"
    benchmark.extra_info["reference"] = variant == "frozen"
    if variant == "frozen":
        benchmark.pedantic(teacher_input_gradient, args=(teacher, x, y), rounds=15, warmup_rounds=2, iterations=1)
    else:
        t = copy.deepcopy(teacher).requires_grad_(True)
        benchmark.pedantic(_grad_through_weights, args=(t, x, y), rounds=15, warmup_rounds=2, iterations=1)
