"""Multi-task weights against closed forms: GradNorm at alpha > 0 with known loss ratios,
uncertainty weighting with a classification task, and GREAT's GAL gradient without a
common-mode part (scale invariance)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.models import ModelSpec
from bench.multitask.methods import MULTITASK_METHODS
from bench.multitask.network import MultiTaskNet, build_multitask_net
from bench.multitask.tasks import TASKS, Task
from bench.method import Context


def _toy(name, hp, kinds=("regression", "regression")):
    """Two tasks on a 1x1-conv encoder: 'a' (kind kinds[0]) and 'b' (kinds[1]); a
    classification task has a 3-way linear decoder and cross-entropy."""
    def task(tname, kind):
        out = 3 if kind == "classification" else 1
        dec = lambda shape, size, o, out=out: nn.Sequential(nn.Flatten(), nn.Linear(16, out))  # noqa: E731
        loss = F.cross_entropy if kind == "classification" else (lambda p, t: F.mse_loss(p.squeeze(1), t))
        return Task(tname, tname, "x", kind, False, lambda k: out, dec, None, loss, None, None)

    tasks = [task("a", kinds[0]), task("b", kinds[1])]
    torch.manual_seed(0)
    net = MultiTaskNet(nn.Conv2d(1, 4, 1), {t.name: t.decoder((4, 2, 2), 2, 1) for t in tasks})
    return MULTITASK_METHODS.get(name)(net, Context("toy", ModelSpec(1, 2, 3), hp, extras={"tasks": tasks})), tasks


def test_gradnorm_weight_gradient_with_known_loss_ratios():
    """L_grad = sum_i |w_i n_i - stopgrad(mean_j(w_j n_j) r_i^alpha)|, r_i = (L_i/L_i0) / mean_j(L_j/L_j0);
    its gradient w.r.t. w_i is sign(w_i n_i - target_i) n_i."""
    m, _ = _toy("gradnorm", {"lr": 1e-3, "weight_lr": 1e-3, "gradnorm_alpha": 1.5})
    m.tasks = m.tasks + m.tasks[:1]  # three weights
    from bench.multitask.methods.gradnorm import InitialLosses, TaskWeights
    m.weights_, m.initial = TaskWeights(3), InitialLosses(3)
    with torch.no_grad():
        m.weights_.w.copy_(torch.tensor([1.0, 0.5, 1.5]))
    m.initial.capture(torch.tensor([2.0, 1.0, 4.0]))              # L_i(0)
    raw = torch.tensor([1.0, 1.0, 8.0])                           # L_i / L_i(0) = 0.5, 1, 2
    norms = torch.tensor([2.0, 1.0, 0.5])                         # ||grad_W L_i||
    G = torch.tensor([2.0, 0.5, 0.75])                            # w_i n_i, mean 13/12
    r = torch.tensor([0.5, 1.0, 2.0]) / (3.5 / 3)
    target = (13 / 12) * r ** 1.5                                 # 0.304, 0.860, 2.432
    want = torch.sign(G - target) * norms
    torch.testing.assert_close(want, torch.tensor([2.0, -1.0, -0.5]))  # by hand
    torch.testing.assert_close(m.weight_gradient(raw, norms), want)


def test_uncertainty_weights_classification_by_one_over_sigma_squared():
    """Kendall et al.: classification exp(-s) L + s/2, regression exp(-s) L / 2 + s/2 (s = log sigma^2)."""
    m, tasks = _toy("uncertainty", {"lr": 0.0, "weight_lr": 1.0}, kinds=("classification", "regression"))
    m.w_opt = torch.optim.SGD(m.log_var.parameters(), lr=1.0)
    m.opt = torch.optim.SGD(m.model.parameters(), lr=1.0)
    s0 = torch.tensor([0.3, -0.2])
    with torch.no_grad():
        m.log_var.s.copy_(s0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 2, 2, generator=g)
    y = {"a": torch.randint(0, 3, (16,), generator=g), "b": torch.randn(16, generator=g)}
    preds = m.model(x)
    L = torch.stack([F.cross_entropy(preds["a"], y["a"]), F.mse_loss(preds["b"].squeeze(1), y["b"])]).detach()
    factor = torch.tensor([1.0, 0.5])
    # the network follows sum_i c_i exp(-s_i) L_i
    want_net = torch.autograd.grad((factor * torch.exp(-s0) * torch.stack(
        [F.cross_entropy(preds["a"], y["a"]), F.mse_loss(preds["b"].squeeze(1), y["b"])])).sum(),
        list(m.model.parameters()))
    before = [p.detach().clone() for p in m.model.parameters()]
    m.step(x, y, None)
    torch.testing.assert_close(s0 - m.log_var.s.detach(), -factor * torch.exp(-s0) * L + 0.5)
    for b, p, w in zip(before, m.model.parameters(), want_net):
        torch.testing.assert_close(b - p.detach(), w)
    w = factor * torch.exp(-m.log_var.s.detach())
    torch.testing.assert_close(m.weights(), w / w.sum())


def test_great_gal_gradient_has_no_common_mode_part():
    """The task classifier's loss is invariant to gamma -> c gamma, so <grad gamma, gamma> = 0."""
    tasks = [TASKS.get(n) for n in ("class", "edge", "auto")]
    spec = ModelSpec(1, 8, 10, (0.5,), (0.25,))
    torch.manual_seed(0)
    net = build_multitask_net("small-conv", spec, tasks)
    hp = {"lr": 1e-3, "gal_lr": 1e-3, "gal_min": 1e-3, "aux_blocks": 2}
    m = MULTITASK_METHODS.get("great")(net.double(), Context("small-conv", spec, hp, extras={"tasks": tasks}))
    m.aux.double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        m.gals.weight.data = (torch.rand(m.gals.weight.shape, generator=gen, dtype=torch.float64) + 0.5)
    grads = [torch.randn(6, 32, 2, 2, generator=gen, dtype=torch.float64) * s for s in (1.0, 0.1, 0.01)]
    loss, _, _ = m.task_classifier_loss(grads, reverse=False)
    (grad,) = torch.autograd.grad(loss, m.gals.weight)
    gamma = m.gals.weight.detach()
    assert grad.norm() > 0
    cos = F.cosine_similarity(grad.flatten(), gamma.flatten(), dim=0)
    assert abs(float(cos)) < 1e-9
    # and the loss itself does not change when every GAL is scaled by the same factor
    with torch.no_grad():
        m.gals.weight.mul_(3.0)
        scaled, _, _ = m.task_classifier_loss(grads, reverse=False)
    torch.testing.assert_close(scaled, loss)
