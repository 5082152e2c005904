"""small-resnet (issue 22): its shapes, its skip connections and batch norm, its auxiliary
variant, and the double backward GREAT takes through it in train mode.

The registry-wide contract (forward, backward, every parameter a finite gradient, the
auxiliary variant leaky and unnormalised) is tests/test_models.py, parametrised over
``MODELS``; the first test here makes sure small-resnet is among them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

from bench.models import MODELS, ModelSpec, Normalize, Residual, aux_spec, build_model
from defenses.gradients import masked_input_gradient

SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))


def test_registered_and_in_the_contract_tests():
    import tests.test_models as contract

    assert "small-resnet" in MODELS.names()
    assert "small-resnet" not in contract.HEAVY  # checked at both input sizes


def test_listed_by_the_cli_and_trained_through_a_preset_override(capsys, tmp_path):
    """`great-bench list` names it; `--set model.name=small-resnet` trains with it (and its
    auxiliary network for GREAT is built from the same registry entry)."""
    from bench.cli import main

    assert main(["list"]) == 0
    assert "small-resnet" in next(l for l in capsys.readouterr().out.splitlines() if l.startswith("models:"))
    assert main(["train", "--preset", "smoke", "--defense", "great", "--set", "model.name=small-resnet",
                 "--set", "train.epochs=1", "--out", str(tmp_path), "--quiet"]) == 0
    meta = next(tmp_path.rglob("meta.json")).read_text()
    assert '"small-resnet"' in meta
    assert next(tmp_path.rglob("aux.safetensors")).is_file()


def test_shapes_skip_connections_and_batch_norm():
    torch.manual_seed(0)
    model = build_model("small-resnet", SPEC)
    x = torch.rand(5, 1, 28, 28)
    shapes = []
    hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for b in model.features if isinstance(b, Residual)]
    assert model(x).shape == (5, 10)
    for h in hooks:
        h.remove()
    # stem at 28x28, max-pool to 14, one block per stage at 16/32/64 channels, strides 1/2/2
    assert shapes == [(5, 16, 14, 14), (5, 32, 7, 7), (5, 64, 4, 4)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 1 + 3 * 2 + 2  # stem, two per block, two 1x1 projections
    assert len(norms) == len(convs)     # batch norm after every convolution
    # the first block keeps its shape: an identity shortcut, the others project
    blocks = [b for b in model.features if isinstance(b, Residual)]
    assert [isinstance(b.short, nn.Identity) for b in blocks] == [True, False, False]
    # 3x32 inputs (CIFAR/SVHN presets): 32 -> 16 -> 16, 8, 4
    spec3 = ModelSpec(3, 32, 10, (0.5,) * 3, (0.25,) * 3)
    assert build_model("small-resnet", spec3)(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_skip_connection_is_added():
    """Zeroing a block's body leaves act(shortcut(x)): the block output is ReLU of its input
    (identity shortcut), so the residual path is really summed, not replaced."""
    torch.manual_seed(0)
    model = build_model("small-resnet", SPEC).eval()
    block = next(b for b in model.features if isinstance(b, Residual))
    with torch.no_grad():
        block.body[-1].weight.zero_()  # last batch norm's scale: body output = its bias = 0
        block.body[-1].bias.zero_()
    x = torch.randn(2, 16, 14, 14)
    assert torch.equal(block(x), torch.relu(x))


def test_auxiliary_is_the_same_architecture_with_leaky_relu():
    main = build_model("small-resnet", SPEC)
    aux = build_model("small-resnet", aux_spec(SPEC))
    assert [p.shape for p in main.parameters()] == [p.shape for p in aux.parameters()]
    assert not any(isinstance(m, (nn.ReLU, Normalize)) for m in aux.modules())
    acts = [m for m in aux.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == len([m for m in main.modules() if isinstance(m, nn.ReLU)])
    assert all(m.negative_slope == 0.2 for m in acts)


def _tiny(seed=0):
    """small-resnet on 1x8x8 inputs in float64, train mode (batch statistics): small
    enough for finite differences, same layers as at 28x28."""
    torch.manual_seed(seed)
    return build_model("small-resnet", ModelSpec(1, 8, 3, (0.3,), (0.4,))).double().train()


def test_double_backward_in_train_mode_matches_finite_differences():
    """Second derivatives w.r.t. the input through batch norm with batch statistics, the
    max-pool and the skip connections (torch's gradgradcheck: finite differences of the
    analytic first derivatives)."""
    model = _tiny()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    # fast mode: random projections u^T H v of the second derivatives instead of every entry
    assert gradgradcheck(model, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_great_parameter_gradient_through_the_input_gradient_matches_finite_differences():
    """What GREAT differentiates: a loss on the masked input gradient g(theta) (paper eq. 7,
    created with create_graph=True) w.r.t. the main network's weights. Checked by finite
    differences for the stem convolution and the last block's first batch norm scale."""
    model = _tiny(1)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    names = ["features.1.weight", "features.7.body.1.weight"]
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def loss_of_g(*ws):
        p = {**params, **dict(zip(names, ws))}
        xx = x.clone().requires_grad_(True)
        logits = functional_call(model, (p, buffers), (xx,))
        g = masked_input_gradient(logits, xx, y, create_graph=True)
        return (g ** 2).sum() + (g * torch.linspace(-1, 1, 64, dtype=g.dtype).view(1, 1, 8, 8)).sum()

    ws = tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    assert gradcheck(loss_of_g, ws, eps=1e-6, atol=1e-6, rtol=1e-3)


def test_every_parameter_gets_a_second_order_gradient():
    """GREAT's reversed gradient reaches every weight of the main network through g."""
    torch.manual_seed(0)
    model = build_model("small-resnet", SPEC).train()
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    y = torch.arange(8) % 10
    g = masked_input_gradient(model(x), x, y, create_graph=True)
    (g ** 2).sum().backward(inputs=list(model.parameters()))
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    # the classifier bias included: it moves p_y - 1, which the paper's g differentiates
    assert not missing, missing
