"""Tests that fail if a defense's mathematics is wrong (not only that it runs)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.models import ModelSpec, build_model
from bench.method import Context, Ramp
from defenses import DEFENSES
from defenses.datagrad import DataGradL1, DataGradL2
from defenses.fgsm_at import AdversarialBackprop, FGSMAdversarialTraining
from defenses.great import GREACE, GREAT, GREATCE, greace_term
from defenses.gradients import grad_reverse, masked_input_gradient

SPEC = ModelSpec(1, 8, 4, (0.5,), (0.25,))
HP = {"lr": 1e-3, "alpha_max": 1.0, "beta_max": 2.0, "fgsm_eps": 0.1, "fgsm_mix": 0.5, "datagrad_lambda": 0.1,
      "pgd_eps": 0.1}


class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> linear: small, but with everything a real model has."""

    def __init__(self, spec: ModelSpec = SPEC, leaky: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(spec.in_channels, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                                 nn.LeakyReLU(0.2) if leaky else nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * spec.image_size ** 2, spec.num_classes))

    def forward(self, x):
        return self.net(x)


def ctx(hp=None):
    return Context("small-cnn", ModelSpec(1, 8, 4, (0.5,), (0.25,)), dict(hp or HP))


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


# ---------------------------------------------------------------- primitives

def test_masked_gradient_matches_closed_form_on_linear_model():
    """For a = W x + b: d a_y / d x = W_y, so g = (p_y - 1) W_y exactly."""
    torch.manual_seed(0)
    lin = nn.Linear(12, 5).double()
    x = torch.randn(7, 12, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    logits = lin(x)
    g = masked_input_gradient(logits, x, y, create_graph=False)
    p_y = logits.softmax(1).gather(1, y[:, None])
    expected = (p_y - 1) * lin.weight[y]
    torch.testing.assert_close(g, expected.detach())
    # and it is NOT the full cross-entropy gradient (negative classes are masked out)
    full = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)[0]
    assert not torch.allclose(g, full)


def test_grad_reverse_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(3, 4, requires_grad=True)
    out = grad_reverse(x, 0.3)
    assert torch.equal(out, x)
    w = torch.randn(3, 4)
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * w)


def test_greace_logit_gradient_is_ce_plus_beta_softmax_aux_on_negatives():
    torch.manual_seed(1)
    a = torch.randn(6, 5, requires_grad=True)
    a_aux = torch.randn(6, 5, requires_grad=True)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    beta = 2.5
    loss = F.cross_entropy(a, y) + greace_term(a, a_aux, y, beta)
    grad_a, grad_aux = torch.autograd.grad(loss, [a, a_aux], allow_unused=True)
    onehot = F.one_hot(y, 5).float()
    expected = (a.softmax(1) - onehot + beta * a_aux.softmax(1) * (1 - onehot)) / 6
    torch.testing.assert_close(grad_a, expected.detach())
    # the added term is exactly zero at the true class ...
    (extra,) = torch.autograd.grad(greace_term(a, a_aux, y, beta), a)
    assert torch.all(extra.gather(1, y[:, None]) == 0) and torch.all(extra.sum(1) > 0)
    # ... and softmax(a') is a constant: no gradient reaches the auxiliary logits
    assert grad_aux is None or torch.all(grad_aux == 0)


# ---------------------------------------------------------------- GREAT's reversed gradient

def _main_grads(defense, x, y, alpha, beta):
    loss, _ = defense.losses(x, y, alpha, beta)
    return torch.autograd.grad(loss, list(defense.model.parameters()))


def test_great_reversed_gradient_has_opposite_sign_and_alpha_scale():
    """Main-network gradient = grad(CE) - alpha * grad_theta(aux loss through g)."""
    torch.manual_seed(0)
    d = GREAT(TinyNet().double(), ctx())
    d.aux = TinyNet(leaky=True).double()
    d.model.eval(); d.aux.eval()  # fixed BN statistics: the step is then a pure function
    x, y = batch()
    x = x.double()
    g0 = _main_grads(d, x, y, 0.0, 0.0)
    g1 = _main_grads(d, x, y, 1.0, 0.0)
    g05 = _main_grads(d, x, y, 0.5, 0.0)
    # the auxiliary loss's own (un-reversed) gradient w.r.t. the main weights through g
    xr = x.clone().requires_grad_(True)
    logits = d.model(xr)
    g = masked_input_gradient(logits, xr, y, create_graph=True)
    params = list(d.model.parameters())
    direct = torch.autograd.grad(F.cross_entropy(d.aux(g), y), params, allow_unused=True)
    # the last bias does not shape the input gradient, so no auxiliary signal reaches it
    direct = [torch.zeros_like(p) if dr is None else dr for p, dr in zip(params, direct)]
    for a0, a1, a05, dr in zip(g0, g1, g05, direct):
        torch.testing.assert_close(a1 - a0, -dr)               # reversed sign, alpha = 1
        torch.testing.assert_close(a05 - a0, -0.5 * dr)        # scaled by alpha
    assert any(dr.abs().sum() > 0 for dr in direct)


def test_aux_network_gets_plain_not_reversed_gradient():
    torch.manual_seed(0)
    d = GREAT(TinyNet(), ctx())
    x, y = batch()
    loss, _ = d.losses(x, y, 1.0, 0.0)
    got = torch.autograd.grad(loss, list(d.aux.parameters()), retain_graph=True)
    xr = x.clone().requires_grad_(True)
    g = masked_input_gradient(d.model(xr), xr, y, create_graph=False)
    want = torch.autograd.grad(F.cross_entropy(d.aux(g), y), list(d.aux.parameters()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls", [GREAT, GREACE, GREATCE])
def test_gradient_adversarial_with_zero_alpha_beta_follows_baseline(cls):
    """With alpha = beta = 0 the auxiliary network must not influence the main network."""
    torch.manual_seed(0)
    base = DEFENSES.get("baseline")(TinyNet(), ctx())
    other = cls(copy.deepcopy(base.model), ctx())
    r = Ramp(0, 1.0, 0.0, 0.0)
    for s in range(3):
        x, y = batch(seed=s)
        base.step(x, y, r)
        other.step(x, y, r)
    for p, q in zip(base.model.parameters(), other.model.parameters()):
        torch.testing.assert_close(p, q)


def test_greace_alone_sends_no_reversed_gradient_but_trains_aux():
    torch.manual_seed(0)
    d = GREACE(TinyNet(), ctx())
    twin = GREACE(copy.deepcopy(d.model), ctx())
    twin.aux.load_state_dict(d.aux.state_dict())
    before = [p.clone() for p in d.aux.parameters()]
    x, y = batch()
    d.step(x, y, Ramp(1, 0.5, 0.5, 1.0))     # ramp alpha > 0, but GREACE ignores it ...
    twin.step(x, y, Ramp(1, 0.5, 0.0, 1.0))  # ... so it must match alpha = 0 exactly
    assert any(not torch.equal(a, b) for a, b in zip(before, d.aux.parameters()))
    for a, b in zip(d.model.parameters(), twin.model.parameters()):
        torch.testing.assert_close(a, b)
    # the main network's gradient is exactly that of CE + the GREACE term: nothing from
    # the auxiliary loss reaches it
    d.model.eval(); d.aux.eval()
    loss, _ = d.losses(x, y, 0.0, 1.0)
    got = torch.autograd.grad(loss, list(d.model.parameters()))
    xr = x.clone().requires_grad_(True)
    logits = d.model(xr)
    g = masked_input_gradient(logits, xr, y, create_graph=False)
    want = torch.autograd.grad(F.cross_entropy(logits, y) + greace_term(logits, d.aux(g), y, 1.0),
                               list(d.model.parameters()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- DataGrad, FGSM

@pytest.mark.parametrize("cls", [DataGradL1, DataGradL2])
def test_datagrad_penalty_gradient_matches_finite_differences(cls):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    d = cls(model, ctx())
    x, y = batch(8)
    x = x.double()
    total, _, _, _ = d.loss(x, y)
    w = model[1].weight
    (grad,) = torch.autograd.grad(total, [w])
    h = 1e-6
    for idx in [(0, 0), (3, 17), (7, 63), (5, 30)]:
        with torch.no_grad():
            w[idx] += h
        up = d.loss(x, y)[0].item()
        with torch.no_grad():
            w[idx] -= 2 * h
        down = d.loss(x, y)[0].item()
        with torch.no_grad():
            w[idx] += h
        assert grad[idx].item() == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-7)


def test_datagrad_penalty_is_the_right_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).double()
    x, y = batch(5)
    x = x.double().requires_grad_(True)
    logits = model(x)
    g = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)[0]
    for cls, want in ((DataGradL1, g.abs().flatten(1).sum(1).mean()), (DataGradL2, g.pow(2).flatten(1).sum(1).mean())):
        _, _, reg, _ = cls(model, ctx()).loss(x.detach(), y)
        torch.testing.assert_close(reg, want)


def test_fgsm_at_mixes_clean_and_adversarial_gradients():
    """fgsm-at's weight gradient = 0.5 grad CE(x) + 0.5 grad CE(x_adv); adv-backprop's = grad CE(x_adv)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).double()
    x, y = batch(8)
    x = x.double()
    xr = x.clone().requires_grad_(True)
    gx = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)[0]
    x_adv = (x + 0.1 * gx.sign()).clamp(0, 1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-12 and x_adv.min() >= 0 and x_adv.max() <= 1
    w = model[1].weight
    g_clean = torch.autograd.grad(F.cross_entropy(model(x), y), w)[0]
    g_adv = torch.autograd.grad(F.cross_entropy(model(x_adv), y), w)[0]
    for cls, want in ((FGSMAdversarialTraining, 0.5 * g_clean + 0.5 * g_adv), (AdversarialBackprop, g_adv)):
        m = copy.deepcopy(model)
        d = cls(m, ctx())
        d.opt = torch.optim.SGD(m.parameters(), lr=1.0)  # one SGD step with lr 1: delta = -grad
        before = m[1].weight.detach().clone()
        d.step(x, y, Ramp(0, 1.0, 0.0, 0.0))
        torch.testing.assert_close(before - m[1].weight.detach(), want)


# ---------------------------------------------------------------- every registered defense

@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_step_is_finite_and_trains(name):
    torch.manual_seed(0)
    spec = ModelSpec(1, 28, 10, (0.5,), (0.25,))
    model = build_model("small-cnn", spec)
    d = DEFENSES.get(name)(model, Context("small-cnn", spec, dict(HP)))
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in d.modules().items()}
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    logs = d.step(x, y, Ramp(1, 0.5, 0.5, 1.0))
    assert logs and all(torch.isfinite(v).all() for v in logs.values())
    assert all(v.grad_fn is None for v in logs.values()), "logs must be detached"
    for key, module in d.modules().items():  # main and (where present) auxiliary network train
        changed = [not torch.equal(a, b) for a, b in zip(before[key], module.parameters())]
        assert all(changed), f"{name}: some parameters of {key!r} did not change"
