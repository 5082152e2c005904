"""Multi-task track mathematics: the GAL, GREAT's gradients, GradNorm and uncertainty weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import BenchError
from bench.models import ModelSpec
from bench.multitask.gal import GALs, gal_scale
from bench.multitask.methods import MULTITASK_METHODS
from bench.multitask.network import MultiTaskNet, build_multitask_net
from bench.multitask.tasks import TASKS, Task
from bench.method import Context

SPEC = ModelSpec(1, 8, 10, (0.5,), (0.25,))  # 8x8 input -> small-conv feature 32 x 2 x 2
HP = {"lr": 1e-3, "weight_lr": 1e-3, "gal_lr": 1e-3, "gal_min": 1e-3, "gradnorm_alpha": 1.5, "aux_blocks": 2}


def test_gal_is_identity_forward_and_scales_gradient_backward():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(4, 3, 2, 2, generator=g, requires_grad=True)
    gal = torch.rand(3, 2, 2, generator=g) + 0.5
    gal.requires_grad_(True)
    out = gal_scale(f, gal)
    assert torch.equal(out, f)
    upstream = torch.randn(4, 3, 2, 2, generator=g)
    out.backward(upstream)
    torch.testing.assert_close(f.grad, upstream * gal.detach()[None])
    assert gal.grad is None  # trained only by the task classifier, never by the task loss


def test_gal_module_rows_are_per_task_and_start_at_one():
    gals = GALs(["a", "b"], (3, 2, 2))
    assert gals.weight.shape == (2, 3, 2, 2) and torch.equal(gals.weight, torch.ones(2, 3, 2, 2))
    with torch.no_grad():
        gals.weight[1].mul_(3.0)
    f = torch.randn(5, 3, 2, 2, requires_grad=True)
    (gals(f, 0).sum() + gals(f, 1).sum()).backward()
    torch.testing.assert_close(f.grad, torch.full_like(f, 4.0))  # 1 + 3: per-task GALs, summed at f


@pytest.mark.parametrize("shape", [(3, 2), (3, 2, 3), (4, 2, 2)])
def test_gal_shape_mismatch_is_a_clear_error(shape):
    with pytest.raises(BenchError, match="does not match the shared feature"):
        gal_scale(torch.randn(4, 3, 2, 2), torch.ones(shape))


def _great(seed=0):
    tasks = [TASKS.get(n) for n in ("class", "edge", "auto")]
    torch.manual_seed(seed)
    net = build_multitask_net("small-conv", SPEC, tasks)
    m = MULTITASK_METHODS.get("great")(net, Context("small-conv", SPEC, dict(HP), extras={"tasks": tasks}))
    with torch.no_grad():  # GALs away from 1 so that the scaling is visible
        m.gals.weight.copy_(torch.rand(m.gals.weight.shape, generator=torch.Generator().manual_seed(1)) + 0.5)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 1, 8, 8, generator=g)
    y = {"class": torch.randint(0, 10, (6,), generator=g), "edge": (torch.rand(6, 1, 8, 8, generator=g) > 0.8).float(),
         "auto": torch.rand(6, 1, 8, 8, generator=g)}
    return m, tasks, x, y


def test_great_gals_receive_the_reversed_task_classifier_gradient():
    m, _, _, _ = _great()
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(6, 32, 2, 2, generator=gen) * s for s in (1.0, 0.1, 0.01)]
    aux_params = list(m.aux.parameters())
    plain_loss, _, _ = m.task_classifier_loss(grads, reverse=False)
    plain = torch.autograd.grad(plain_loss, [m.gals.weight] + aux_params)
    m.zero(m.aux_opt, m.gal_opt)
    loss, _, _ = m.task_classifier_loss(grads, reverse=True)
    loss.backward()
    torch.testing.assert_close(loss, plain_loss)
    assert plain[0].abs().sum() > 0
    torch.testing.assert_close(m.gals.weight.grad, -plain[0])      # GALs: maximise the classifier's loss
    for p, gp in zip(aux_params, plain[1:]):
        torch.testing.assert_close(p.grad, gp)                     # classifier: minimise it


def test_great_encoder_gets_sum_of_gal_scaled_task_gradients_and_decoders_the_normalised_losses():
    m, tasks, x, y = _great()
    m.backward_pass(x, y)
    enc = [p for p in m.model.encoder.parameters()]
    dec = [p for p in m.model.decoders.parameters()]
    got_enc = [p.grad.clone() for p in enc]
    got_dec = [p.grad.clone() for p in dec]
    # Reference without GAL layers: g_i = dC_i/df, encoder gradient = J_f^T sum_i gamma_i * g_i.
    f = m.model.encoder(x)
    raw = torch.stack([t.loss(m.model.decoders[t.name](f), y[t.name]) for t in tasks])
    c = raw / m.initial.values
    torch.testing.assert_close(c.detach(), torch.ones(3))  # first batch: C_i = J_i / C_i^0 = 1
    per_task = [torch.autograd.grad(c[i], f, retain_graph=True)[0] for i in range(3)]
    total = sum(m.gals.weight[i].detach() * per_task[i] for i in range(3))
    ref_enc = torch.autograd.grad(f, enc, grad_outputs=total, retain_graph=True)
    ref_dec = torch.autograd.grad(c.sum(), dec)
    for a, b in zip(got_enc, ref_enc):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    for a, b in zip(got_dec, ref_dec):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    # ...and it differs from the unscaled sum, so the GALs really act.
    plain = torch.autograd.grad(m.model.encoder(x), enc, grad_outputs=sum(per_task))
    assert not torch.allclose(got_enc[0], plain[0], rtol=1e-3)


def test_great_step_keeps_gals_positive_and_logs_gal_means():
    m, _, x, y = _great()
    with torch.no_grad():
        m.gals.weight[0].fill_(-0.5)
    logs = m.step(x, y, None)
    assert float(m.gals.weight.detach().min()) >= m.gal_min
    assert set(logs) >= {"w_class", "w_edge", "w_auto", "aux_loss", "aux_acc"}


# ---------------------------------------------------------------- toy two-task problems

def _toy_tasks(scale_b: float):
    dec = lambda shape, size, out: nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], 1))  # noqa: E731
    mk = lambda name, scale: Task(  # noqa: E731
        name, name, "RMSE", "regression", False, lambda k: 1, dec, None,
        lambda pred, target: F.mse_loss(pred.squeeze(1), target), None, None)
    return [mk("a", 1.0), mk("b", scale_b)]


def _toy_method(name: str, tasks, hp):
    torch.manual_seed(0)
    spec = ModelSpec(1, 2, 1)
    decs = {t.name: t.decoder((4, 2, 2), 2, 1) for t in tasks}
    net = MultiTaskNet(nn.Conv2d(1, 4, 1), decs)
    return MULTITASK_METHODS.get(name)(net, Context("toy", spec, hp, extras={"tasks": tasks}))


def test_gradnorm_moves_weights_toward_equal_gradient_norms():
    tasks = _toy_tasks(10.0)
    # Network frozen (lr 0) so only the weights move; alpha 0 = pure gradient-norm balancing.
    m = _toy_method("gradnorm", tasks, {"lr": 0.0, "weight_lr": 0.02, "gradnorm_alpha": 0.0})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 2, 2, generator=g)
    y = {"a": x.flatten(1) @ torch.tensor([1.0, -1.0, 0.5, 2.0]), "b": 10.0 * (x.flatten(1) @ torch.tensor([-2.0, 1.0, 1.0, 0.5]))}

    def weighted_norms():
        raw = m.task_losses(m.model(x), y)
        return m.weights_.w.detach() * m.grad_norms(raw)

    start = weighted_norms()
    assert start.max() / start.min() > 5  # the unbalanced problem
    for _ in range(150):
        m.step(x, y, None)
    end = weighted_norms()
    assert end.max() / end.min() < 1.25
    w = m.weights_.w.detach()
    assert w[1] < w[0]                                   # the large-gradient task is down-weighted
    torch.testing.assert_close(w.sum(), torch.tensor(2.0))  # renormalised to the number of tasks


def test_uncertainty_gives_the_noisier_task_the_larger_variance():
    tasks = _toy_tasks(1.0)
    m = _toy_method("uncertainty", tasks, {"lr": 1e-2, "weight_lr": 0.05})
    g = torch.Generator().manual_seed(0)
    u, v = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.tensor([-2.0, 1.0, 1.0, 0.5])
    for _ in range(150):
        x = torch.randn(64, 1, 2, 2, generator=g)
        y = {"a": x.flatten(1) @ u + 0.1 * torch.randn(64, generator=g),
             "b": x.flatten(1) @ v + 1.0 * torch.randn(64, generator=g)}
        logs = m.step(x, y, None)
    s = m.log_var.s.detach()
    assert s[1] > s[0] + 1.0                     # log sigma_b^2 > log sigma_a^2
    w = m.weights()
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    assert w[1] < w[0]
    # Kendall's optimum for a regression task: sigma^2 = its loss (the noise variance, ~1 for b).
    assert 0.5 < float(torch.exp(s[1])) < 2.0
    assert float(logs["loss_b"]) > float(logs["loss_a"])


def test_equal_normalized_is_the_sum_of_first_batch_normalised_losses():
    """Closed form: the gradient of sum_i J_i(theta; batch) / J_i(theta_0; first batch), with
    J_i(theta_0; first batch) computed here on a copy of the untrained network; the same
    normalisation as the multi-task GREAT, without its alignment layers."""
    import copy

    tasks = [TASKS.get(n) for n in ("class", "edge", "auto")]
    torch.manual_seed(0)
    net = build_multitask_net("small-conv", SPEC, tasks)
    m = MULTITASK_METHODS.get("equal-normalized")(net, Context("small-conv", SPEC, dict(HP), extras={"tasks": tasks}))
    g = torch.Generator().manual_seed(2)
    batch = lambda: (torch.rand(6, 1, 8, 8, generator=g), {  # noqa: E731
        "class": torch.randint(0, 10, (6,), generator=g), "edge": (torch.rand(6, 1, 8, 8, generator=g) > 0.8).float(),
        "auto": torch.rand(6, 1, 8, 8, generator=g)})
    x0, y0 = batch()
    untrained = copy.deepcopy(net)
    j0 = torch.stack([t.loss(untrained(x0)[t.name], y0[t.name]) for t in tasks]).detach()
    logs = m.step(x0, y0, None)
    torch.testing.assert_close(torch.stack([logs[f"w_{t.name}"] for t in tasks]), 1 / j0)
    x1, y1 = batch()
    before = copy.deepcopy(net)
    m.step(x1, y1, None)  # leaves this step's gradients in .grad
    expected = torch.autograd.grad(sum(t.loss(before(x1)[t.name], y1[t.name]) / j0[i] for i, t in enumerate(tasks)),
                                   list(before.parameters()))
    for p, e in zip(net.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-7)
    # ... which is not what equal weights on the raw losses give
    raw = torch.autograd.grad(sum(t.loss(before(x1)[t.name], y1[t.name]) for t in tasks), list(before.parameters()))
    assert not torch.allclose(raw[0], expected[0], rtol=1e-2)
