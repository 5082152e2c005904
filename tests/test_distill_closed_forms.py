"""Distillation updates against closed forms at weights strictly between 0 and 1.

GREAT (Algorithm 2) at alpha 0.3: the student's gradient is (1 - alpha) grad CE minus
alpha times the discriminator's loss gradient through the student's input gradient; the
discriminator's is its own unscaled loss. KD (Hinton et al.) at T = 4, alpha 0.3: the
logit gradient is (1 - alpha)(p - onehot)/N + alpha T (p_T - q_T)/N (the T^2 factor cancels
the 1/T of the softened softmax). Steps are taken with SGD at lr 1 in float64, so a
parameter's change is minus its gradient.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from bench.distill import DISTILLERS
from bench.distill.base import freeze
from bench.models import ModelSpec, build_model
from bench.method import Context, Ramp

SPEC = ModelSpec(1, 8, 4, (0.5,), (0.25,))
RAMP = Ramp(0, 1.0, 0.0, 0.0)


def batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def make(method, **hp):
    torch.manual_seed(5)
    teacher = freeze(build_model("small-cnn", SPEC).double())
    torch.manual_seed(0)
    d = DISTILLERS.get(method)(build_model("small-cnn", SPEC).double(),
                               Context("small-cnn", SPEC, {"lr": 1e-3, **hp}, extras={"teacher": teacher}))
    d.opt = torch.optim.SGD(d.model.parameters(), lr=1.0)
    if hasattr(d, "disc"):
        d.disc.double()
        d.disc_opt = torch.optim.SGD(d.disc.parameters(), lr=1.0)
    return d


def deltas(module, fn):
    before = [p.detach().clone() for p in module.parameters()]
    fn()
    return [b - p.detach() for b, p in zip(before, module.parameters())]


def close(got, want):
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_great_distillation_at_alpha_03_weights_ce_and_reverses_alpha_scaled():
    alpha = 0.3
    d = make("great", great_alpha=alpha)
    x, y = batch()
    model, disc = copy.deepcopy(d.model), copy.deepcopy(d.disc)
    # teacher's per-example input gradient: a constant
    xt = x.clone().requires_grad_(True)
    (g_t,) = torch.autograd.grad(F.cross_entropy(d.teacher(xt), y, reduction="sum"), xt)
    # student's, differentiable in its weights (double back-propagation)
    xs = x.clone().requires_grad_(True)
    logits = model(xs)
    (g_s,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xs, create_graph=True)
    out = disc(torch.cat([g_s, g_t])).squeeze(1)
    n = len(y)
    loss_s = F.binary_cross_entropy_with_logits(out[:n], torch.zeros(n, dtype=out.dtype))
    loss_t = F.binary_cross_entropy_with_logits(out[n:], torch.ones(n, dtype=out.dtype))
    ce = F.cross_entropy(logits, y)
    # Teacher and student gradients share the discriminator's batch (its batch norm and
    # input RMS), so J(t, 1) depends on g_s too: the student receives the reversed gradient
    # of the whole discriminator loss, the gradient of eq. 8's alpha * D w.r.t. theta.
    want_student = torch.autograd.grad((1 - alpha) * ce - alpha * (loss_s + loss_t), list(model.parameters()),
                                       retain_graph=True, allow_unused=True)
    want_student = [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), want_student)]
    want_disc = torch.autograd.grad(loss_s + loss_t, list(disc.parameters()))

    before_disc = [p.detach().clone() for p in d.disc.parameters()]
    got_student = deltas(d.model, lambda: d.step(x, y, RAMP))
    got_disc = [b - p.detach() for b, p in zip(before_disc, d.disc.parameters())]
    close(got_student, want_student)
    close(got_disc, want_disc)


def test_kd_matches_the_closed_form_logit_gradient_at_t4_alpha_03():
    alpha, T = 0.3, 4.0
    d = make("kd", kd_alpha=alpha, kd_temperature=T)
    x, y = batch(seed=1)
    model = copy.deepcopy(d.model)
    with torch.no_grad():
        t_logits = d.teacher(x)
    logits = model(x)
    n = len(y)
    p = logits.detach().softmax(1)
    p_T, q_T = (logits.detach() / T).softmax(1), (t_logits / T).softmax(1)
    dlogits = (1 - alpha) * (p - F.one_hot(y, 4)) / n + alpha * T * (p_T - q_T) / n
    want = torch.autograd.grad(logits, list(model.parameters()), grad_outputs=dlogits)
    close(deltas(d.model, lambda: d.step(x, y, RAMP)), want)
