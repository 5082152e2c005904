"""GREAT's update against an independent computation of the paper's double back-propagation.

The defense builds the masked gradient in one vector-Jacobian product seeded with
(p_y - 1) e_y and sends the auxiliary loss back through it reversed. Here the same
quantities are built another way: one gradient d a_{j,y_j} / d x per example j (batch norm
in training mode couples examples, so each is a gradient w.r.t. the whole batch),
combined as g = sum_j (p_{y_j} - 1) d a_{j,y_j} / d x with p differentiable (the paper) or
held constant (``detach_confidence``). Networks are the real small-cnn main and auxiliary
networks (the auxiliary one with its BatchRMSNorm input scaling), in float64 and training
mode, and the step is taken with SGD at lr 1, so the parameter change is minus the gradient.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from core.errors import BenchError
from bench.models import BatchRMSNorm, ModelSpec, build_model
from bench.method import Context, Ramp
from defenses.great import GREAT, GREATCE

SPEC = ModelSpec(1, 8, 4, (0.5,), (0.25,))
HP = {"lr": 1e-3, "alpha_max": 1.0, "beta_max": 2.0}


def make(cls=GREAT, seed=0, **hp):
    torch.manual_seed(seed)
    d = cls(build_model("small-cnn", SPEC).double(), Context("small-cnn", SPEC, {**HP, **hp}))
    d.aux.double()
    d.opt = torch.optim.SGD(d.model.parameters(), lr=1.0)
    d.aux_opt = torch.optim.SGD(d.aux.parameters(), lr=1.0)
    with torch.no_grad():  # a confident network: p_y far from its value at initialisation
        d.model[-1].weight.mul_(8.0)
    return d


def batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def paper_masked_gradient(model, x, y, detach_confidence=False):
    """(logits, g) with g = sum_j (p_{y_j} - 1) d a_{j, y_j} / d x, differentiable in the weights."""
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    p_y = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
    if detach_confidence:
        p_y = p_y.detach()
    g = torch.zeros_like(xr)
    for j in range(len(y)):
        (d_ay,) = torch.autograd.grad(logits[j, y[j]], xr, create_graph=True)
        g = g + (p_y[j] - 1.0) * d_ay
    return logits, g


def expected_grads(d, x, y, alpha, detach_confidence=False, beta=0.0):
    """Main: grad(CE [+ GREACE]) - alpha * grad_theta(aux loss through g); aux: grad_phi(aux loss)."""
    model, aux = copy.deepcopy(d.model), copy.deepcopy(d.aux)
    logits, g = paper_masked_gradient(model, x, y, detach_confidence)
    # the auxiliary network's input scaling written out: one differentiable RMS per batch
    assert isinstance(aux[0], BatchRMSNorm)
    aux_logits = aux[1:](g / g.pow(2).mean().sqrt())
    aux_loss = F.cross_entropy(aux_logits, y)
    main_loss = F.cross_entropy(logits, y) - alpha * aux_loss
    if beta:
        w = aux_logits.detach().softmax(1).scatter(1, y[:, None], 0.0)
        main_loss = main_loss + beta * (w * logits).sum(1).mean()
    main = torch.autograd.grad(main_loss, list(model.parameters()), retain_graph=True, allow_unused=True)
    main = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(model.parameters(), main)]
    aux_g = torch.autograd.grad(aux_loss, list(aux.parameters()))
    return main, aux_g, g


def step_deltas(d, x, y, ramp):
    before_m = [p.detach().clone() for p in d.model.parameters()]
    before_a = [p.detach().clone() for p in d.aux.parameters()]
    d.step(x, y, ramp)
    return ([b - p.detach() for b, p in zip(before_m, d.model.parameters())],
            [b - p.detach() for b, p in zip(before_a, d.aux.parameters())])


def assert_all_close(got, want):
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_aux_network_is_the_real_one_with_batch_rms_input_scaling():
    d = make()
    assert isinstance(d.aux[0], BatchRMSNorm)
    assert isinstance(make(aux_input_scale="none").aux[0], torch.nn.Identity)


def test_main_update_at_alpha_half_is_the_papers_double_backprop():
    d = make()
    x, y = batch()
    want_main, _, _ = expected_grads(d, x, y, 0.5)
    got_main, _ = step_deltas(d, x, y, Ramp(1, 0.5, 0.5, 0.0))
    assert_all_close(got_main, want_main)
    # the test can tell the paper's gradient from the detached one on this network
    d2 = make()
    det_main, _, _ = expected_grads(d2, x, y, 0.5, detach_confidence=True)
    flat = lambda gs: torch.cat([g.flatten() for g in gs])  # noqa: E731
    assert F.cosine_similarity(flat(det_main) - flat(expected_grads(d2, x, y, 0.0)[0]),
                               flat(want_main) - flat(expected_grads(d2, x, y, 0.0)[0]), dim=0) < 0.99


def test_aux_update_at_alpha_half_is_its_own_unscaled_loss():
    d = make()
    x, y = batch(seed=1)
    _, want_aux, _ = expected_grads(d, x, y, 0.5)
    _, got_aux = step_deltas(d, x, y, Ramp(1, 0.5, 0.5, 0.0))
    assert_all_close(got_aux, want_aux)


def test_detached_confidence_variant_equals_its_closed_form():
    d = make(detach_confidence=True)
    x, y = batch(seed=2)
    want_main, want_aux, _ = expected_grads(d, x, y, 0.5, detach_confidence=True)
    got_main, got_aux = step_deltas(d, x, y, Ramp(1, 0.5, 0.5, 0.0))
    assert_all_close(got_main, want_main)
    assert_all_close(got_aux, want_aux)


def test_great_ce_update_is_papers_gradient_plus_greace_term():
    d = make(GREATCE)
    x, y = batch(seed=3)
    want_main, want_aux, _ = expected_grads(d, x, y, 0.5, beta=1.5)
    got_main, got_aux = step_deltas(d, x, y, Ramp(1, 0.5, 0.5, 1.5))
    assert_all_close(got_main, want_main)
    assert_all_close(got_aux, want_aux)


@pytest.mark.parametrize("hp, words", [({"detach_confidence": 1}, "detach_confidence"),
                                       ({"aux_input_scale": "batchnorm"}, "batch-rms, none")])
def test_bad_great_settings_are_named(hp, words):
    with pytest.raises(BenchError, match=words):
        make(**hp)
