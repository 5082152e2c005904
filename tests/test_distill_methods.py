"""Distillation methods (paper Algorithm 2, Hinton KD, Sobolev): the mathematics, step by step.

Models are the registered small-cnn / cnn5 on 28x28 tiny batches; every check would fail
if a sign, a weight or a graph were wrong.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.distill import DISTILLERS
from bench.distill.base import freeze, teacher_input_gradient
from bench.distill.kd import soft_target_kl
from core.errors import BenchError
from bench.models import ModelSpec, build_model
from conftest import make_images
from bench.method import Context, Ramp
from defenses.gradients import per_example_input_gradient

SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))
RAMP = Ramp(0, 1.0, 0.0, 0.0)
HP = {"lr": 1e-3, "kd_alpha": 0.5, "kd_temperature": 4.0, "great_alpha": 0.1, "sobolev_lambda": 1.0}


def batch(n=32, seed=0):
    images, labels = make_images(n, 1, 28, seed=seed)
    return torch.from_numpy(images).float() / 255, torch.from_numpy(labels)


def make(method, student="small-cnn", teacher=None, seed=0, **hp):
    torch.manual_seed(seed)
    model = build_model(student, SPEC)
    return DISTILLERS.get(method)(model, Context(student, SPEC, {**HP, **hp}, extras={"teacher": teacher}))


@pytest.fixture(scope="module")
def teacher():
    """A cnn5 trained for a few steps, so its input gradients carry class information."""
    torch.manual_seed(1)
    t = build_model("cnn5", SPEC)
    opt = torch.optim.Adam(t.parameters(), lr=3e-3)
    for i in range(6):
        x, y = batch(48, seed=100 + i)
        opt.zero_grad()
        F.cross_entropy(t(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return freeze(t)


def weights(module):
    return [p.detach().clone() for p in module.parameters()]


def test_teacher_input_gradient_is_the_ce_gradient_and_builds_no_weight_graph(teacher):
    x, y = batch()
    g, logits = teacher_input_gradient(teacher, x, y)
    ref_model = copy.deepcopy(teacher).requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(F.cross_entropy(ref_model(xr), y, reduction="sum"), xr)
    torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-7)
    assert not g.requires_grad and g.grad_fn is None and not logits.requires_grad
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("method", ["great", "kd", "sobolev"])
def test_teacher_gets_no_grad_and_does_not_move(method, teacher):
    before = weights(teacher) + [b.clone() for b in teacher.buffers()]
    d = make(method, teacher=teacher)
    d.train(True)
    x, y = batch()
    d.step(x, y, RAMP)
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training  # train(True) on the distiller keeps the teacher in eval mode
    for a, b in zip(before, weights(teacher) + list(teacher.buffers())):
        assert torch.equal(a, b)


def test_kd_at_alpha_zero_equals_baseline_step_for_step(teacher):
    kd = make("kd", teacher=teacher, kd_alpha=0.0, kd_temperature=20.0)
    base = make("baseline")
    assert all(torch.equal(a, b) for a, b in zip(weights(kd.model), weights(base.model)))
    for i in range(3):
        x, y = batch(seed=10 + i)
        kd.step(x, y, RAMP)
        base.step(x, y, RAMP)
    assert all(torch.equal(a, b) for a, b in zip(weights(kd.model), weights(base.model)))
    # ... and alpha > 0 really changes the trajectory (the test can fail).
    kd2 = make("kd", teacher=teacher, kd_alpha=0.5)
    kd2.step(*batch(seed=10), RAMP)
    assert not all(torch.equal(a, b) for a, b in zip(weights(kd2.model), weights(make("baseline").model)))


def test_soft_target_kl_matches_its_definition():
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    T = 3.0
    p_t = (t / T).softmax(1)
    manual = (p_t * (p_t.log() - (s / T).log_softmax(1))).sum(1).mean()
    torch.testing.assert_close(soft_target_kl(s, t, T), manual)
    assert float(soft_target_kl(t, t, T)) == pytest.approx(0.0, abs=1e-7)


def test_kd_at_alpha_one_gives_zero_gradient_to_a_student_equal_to_its_teacher(teacher):
    """With student = teacher the KL term is at its minimum: its gradient vanishes.
    (The gradients are checked, not the weights: Adam rescales even a 1e-9 gradient.)"""
    d = make("kd", student="cnn5", teacher=teacher, kd_alpha=1.0)
    d.model.load_state_dict(teacher.state_dict())
    d.train(False)  # same (eval) batch-norm behaviour as the teacher
    logs = d.step(*batch(), RAMP)
    assert float(logs["kl"]) == pytest.approx(0.0, abs=1e-6)
    assert max(float(p.grad.abs().max()) for p in d.model.parameters()) < 1e-6
    other = make("kd", student="cnn5", teacher=teacher, kd_alpha=1.0)  # a different student: real gradient
    other.train(False)
    other.step(*batch(), RAMP)
    assert max(float(p.grad.abs().max()) for p in other.model.parameters()) > 1e-4


def test_sobolev_loss_is_zero_when_student_equals_teacher(teacher):
    sob = make("sobolev", student="cnn5", teacher=teacher, sobolev_lambda=10.0)
    base = make("baseline", student="cnn5")
    for d in (sob, base):
        d.model.load_state_dict(teacher.state_dict())
        d.train(False)
    x, y = batch()
    logs = sob.step(x, y, RAMP)
    base.step(x, y, RAMP)
    assert float(logs["mismatch"]) == 0.0
    # A zero squared error has a zero gradient: the step is exactly the CE step.
    for a, b in zip(weights(sob.model), weights(base.model)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_sobolev_penalty_is_the_squared_gradient_distance_and_reduces_it(teacher):
    d = make("sobolev", student="cnn5", teacher=teacher, sobolev_lambda=1e4, lr=1e-3)
    d.train(False)
    x, y = batch()

    def mismatch():
        xs = x.clone().requires_grad_(True)
        g_s = per_example_input_gradient(d.model(xs), xs, y, create_graph=False)
        g_t, _ = teacher_input_gradient(teacher, x, y)
        return (g_s - g_t).flatten(1).pow(2).sum(1).mean()

    m0 = mismatch()
    logs = d.step(x, y, RAMP)
    torch.testing.assert_close(logs["mismatch"], m0, rtol=1e-4, atol=1e-9)
    assert float(m0) > 0
    assert float(mismatch()) < float(m0)  # the double-back-prop gradient descends the distance


def _disc_losses(disc, g_s, g_t):
    d = disc(torch.cat([g_s, g_t])).squeeze(1)
    n = g_s.shape[0]
    return (F.binary_cross_entropy_with_logits(d[:n], torch.zeros(n)),
            F.binary_cross_entropy_with_logits(d[n:], torch.ones(n)))


def _student_grad(model, x, y):
    xs = x.clone().requires_grad_(True)
    return per_example_input_gradient(model(xs), xs, y, create_graph=False).detach()


def test_great_reversed_gradient_makes_student_gradients_look_like_the_teachers(teacher):
    """Algorithm 2 lines 6-10 with alpha = 1 (no CE term): the student's only signal is the
    reversed discriminator gradient, so the (pre-step) discriminator's loss on the student's
    gradients must rise; the discriminator's own step must lower its loss."""
    d = make("great", student="cnn5", teacher=teacher, great_alpha=1.0, aux_model="small-cnn", lr=1e-3)
    d.train(False)  # deterministic student gradients; the discriminator keeps batch statistics
    x, y = batch(64)
    g_t, _ = teacher_input_gradient(teacher, x, y)
    disc0 = copy.deepcopy(d.disc)
    g_s0 = _student_grad(d.model, x, y)
    with torch.no_grad():
        s0, t0 = _disc_losses(disc0, g_s0, g_t)
    logs = d.step(x, y, RAMP)
    torch.testing.assert_close(logs["disc_loss_student"], s0, rtol=1e-4, atol=1e-6)
    g_s1 = _student_grad(d.model, x, y)
    with torch.no_grad():
        s1, _ = _disc_losses(disc0, g_s1, g_t)           # student moved against the discriminator
        s_new, t_new = _disc_losses(d.disc, g_s0, g_t)   # discriminator moved toward separating them
    assert float(s1) > float(s0)
    assert float(s_new + t_new) < float(s0 + t0)


def test_great_alpha_zero_sends_nothing_into_the_student(teacher):
    """alpha = 0: the student's update is exactly the CE step, the discriminator still trains."""
    great = make("great", student="small-cnn", teacher=teacher, great_alpha=0.0)
    base = make("baseline", student="small-cnn")
    disc0 = weights(great.disc)
    x, y = batch()
    great.step(x, y, RAMP)
    base.step(x, y, RAMP)
    assert all(torch.equal(a, b) for a, b in zip(weights(great.model), weights(base.model)))
    assert not all(torch.equal(a, b) for a, b in zip(disc0, weights(great.disc)))


def test_great_student_keeps_fooling_a_fixed_discriminator_over_training(teacher, monkeypatch):
    """Several steps, fresh batches: a discriminator first trained to tell the teacher's
    gradients from a (held) student's is then frozen. Trained with alpha = 1 (the reversed
    signal only) the student drives that discriminator's loss on its gradients far up; the
    same run with the sign of the reversal flipped (a student that cooperates with the
    discriminator) ends far lower. Plain drift of the student cannot explain the gap."""
    import bench.distill.great as great_module

    d = make("great", student="cnn5", teacher=teacher, great_alpha=0.0, aux_model="small-cnn", seed=3)
    d.train(True)
    for g in d.opt.param_groups:
        g["lr"] = 0.0  # phase 1: only the discriminator learns
    for i in range(8):
        d.step(*batch(32, seed=200 + i), RAMP)
    for g in d.disc_opt.param_groups:
        g["lr"] = 0.0  # phase 2: a fixed discriminator, a learning student
    for g in d.opt.param_groups:
        g["lr"] = 1e-3

    def run():
        b = copy.deepcopy(d)
        b.ctx.hp["great_alpha"] = 1.0
        return [float(b.step(*batch(32, seed=300 + i), RAMP)["disc_loss_student"]) for i in range(6)]

    adversarial = run()
    # Identity forward, +scale backward: the wrong sign a broken reversal layer would have.
    monkeypatch.setattr(great_module, "grad_reverse", lambda x, scale: x * scale + (x - x * scale).detach())
    cooperative = run()
    assert adversarial[0] == pytest.approx(cooperative[0], rel=1e-5)  # same starting point
    assert adversarial[-1] > 3 * adversarial[0]
    assert adversarial[-1] > 2 * cooperative[-1]


def test_methods_refuse_to_run_without_a_teacher():
    for method in ("kd", "great", "sobolev"):
        with pytest.raises(BenchError, match="needs a teacher"):
            make(method, teacher=None)
    make("baseline", teacher=None)  # the baseline (and the teacher's own training) needs none


def test_optimizer_choice_follows_the_supplement():
    from bench.distill.base import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(p, {"optimizer": "sgd", "lr": 0.01})
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["weight_decay"] == 5e-4
    assert isinstance(make_optimizer(p, {"lr": 1e-3}), torch.optim.Adam)
    with pytest.raises(BenchError, match="unknown optimizer 'rmsprop'; valid: adam, sgd"):
        make_optimizer(p, {"optimizer": "rmsprop"})
    d = make("great", teacher=build_model("cnn5", SPEC), optimizer="sgd", lr=0.01)
    assert all(isinstance(o, torch.optim.SGD) for o in d.optimizers().values())  # student and discriminator
