"""InputConv2d (the CPU-native first convolution) is nn.Conv2d's function, to all orders."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.models import InputConv2d, ModelSpec, build_model


@pytest.mark.parametrize("stride, padding, bias", [(1, 1, True), (2, 3, False)])
def test_input_conv_matches_conv2d_value_gradients_and_double_backward(stride, padding, bias):
    torch.manual_seed(0)
    conv = InputConv2d(1, 3, 3, stride, padding, bias=bias).double()
    ref = nn.Conv2d(1, 3, 3, stride, padding, bias=bias).double()
    ref.load_state_dict(conv.state_dict())
    x = torch.rand(2, 1, 9, 9, dtype=torch.float64, requires_grad=True)
    out, want = conv(x), ref(x)
    torch.testing.assert_close(out, want)
    params = [x, *conv.parameters()]
    w = torch.randn_like(out)
    g1 = torch.autograd.grad((out * w).tanh().sum(), params, create_graph=True)
    g2 = torch.autograd.grad((want * w).tanh().sum(), [x, *ref.parameters()], create_graph=True)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)
    # second order: what GREAT and DataGrad differentiate
    h1 = torch.autograd.grad(g1[0].pow(2).sum(), list(conv.parameters()))
    h2 = torch.autograd.grad(g2[0].pow(2).sum(), list(ref.parameters()))
    for a, b in zip(h1, h2, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradgradcheck(lambda t: conv(t).tanh(), (x,))


def test_one_channel_models_use_it_with_conv2d_state_dict_keys():
    spec = ModelSpec(1, 28, 10)
    for name in ("small-cnn", "cnn5"):
        model = build_model(name, spec)
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        assert isinstance(first, InputConv2d)
    three = build_model("small-cnn", ModelSpec(3, 28, 10))
    assert not any(isinstance(m, InputConv2d) for m in three.modules())
    assert set(build_model("small-cnn", spec).state_dict()) == {
        k for k in three.state_dict()}  # same keys as the nn.Conv2d version
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(first(x), F.conv2d(x, first.weight, first.bias, first.stride, first.padding))
