"""Parametrised over the model registry (timm style): forward, backward, no NaN, and
every parameter gets a gradient."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.models import MODELS, ModelSpec, Normalize, aux_spec, build_model
from core.errors import BenchError

# Teacher-sized architectures (tens of millions of weights) are checked at one input
# size with a batch of 2; the others at both sizes.
HEAVY = {"resnext29-8x64d", "tv-resnet18", "tv-resnet152"}
SPECS = [ModelSpec(1, 28, 10, (0.3,), (0.35,)), ModelSpec(3, 32, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))]


@pytest.mark.parametrize("spec", SPECS, ids=["1x28", "3x32"])
@pytest.mark.parametrize("name", MODELS.names())
def test_model_forward_backward(name, spec):
    if name in HEAVY and spec.in_channels == 1:
        pytest.skip("teacher-sized model: checked on 3x32 only, to keep the suite fast")
    torch.manual_seed(0)
    model = build_model(name, spec)
    n = 2 if name in HEAVY else 4
    x = torch.rand(n, spec.in_channels, spec.image_size, spec.image_size)
    out = model(x)
    assert out.shape == (n, spec.num_classes) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n not in HEAVY])
def test_models_normalise_inside_and_aux_variant_is_leaky_without_normalisation(name):
    spec = SPECS[0]
    main = build_model(name, spec)
    aux = build_model(name, aux_spec(spec))
    assert any(isinstance(m, Normalize) for m in main.modules())
    assert not any(isinstance(m, Normalize) for m in aux.modules())
    assert not any(isinstance(m, nn.ReLU) for m in aux.modules())
    leaky = [m for m in aux.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.2 for m in leaky)
    # the auxiliary network reads gradient tensors shaped like the input
    assert aux(torch.randn(2, 1, 28, 28) * 1e-3).shape == (2, 10)


def test_normalize_is_the_first_operation():
    spec = ModelSpec(1, 28, 10, (0.5,), (0.25,))
    norm = Normalize(spec.mean, spec.std)
    x = torch.full((1, 1, 2, 2), 0.75)
    assert torch.allclose(norm(x), torch.ones_like(x))


def test_unknown_model_is_refused_with_valid_names():
    with pytest.raises(BenchError, match="valid: .*small-cnn"):
        build_model("vgg99", SPECS[0])
