"""PGD-AT and TRADES: tests that fail when their mathematics is wrong (issue 30).

The inner maximisation (``defenses.pgd``) is checked against a closed-form maximiser and on a
real network (it must raise the loss it maximises above its start and above random points
of the ball, and stay in the ball and the [0, 1] box); the attack's mode (eval: batch-norm
statistics untouched); TRADES' KL against an explicit sum p log(p / q) in its direction;
the beta factor; PGD-AT's loss as CE at its adversarial; and each defense's weight update
against an independent autograd computation of its loss.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import BenchError
from bench.method import Context, Ramp
from bench.models import ModelSpec, build_model
from bench.config.settings import parse
from bench.config.presets import load_preset
from defenses import DEFENSES
from defenses.pgd import PGDDefense, pgd_linf, project
from defenses.pgd_at import PGDAdversarialTraining
from defenses.trades import TRADES, trades_kl

SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))
TINY = ModelSpec(1, 8, 4, (0.5,), (0.25,))
EPS = 0.1
RAMP = Ramp(0, 1.0, 0.0, 0.0)


class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> linear: small, with a batch norm like the real models."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(4 * 8 * 8, 4))

    def forward(self, x):
        return self.net(x)


def make(cls, model, **hp):
    return cls(model, Context("small-cnn", TINY, {"lr": 1e-3, "pgd_eps": EPS, **hp}))


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return build_model("small-cnn", SPEC)


def images(n=32, seed=0, size=28):
    """[0, 1] images with a third of the pixels exactly 0 or 1 (where the box clips the ball)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    edge = torch.rand(x.shape, generator=g)
    x = torch.where(edge < 0.15, torch.zeros_like(x), torch.where(edge > 0.85, torch.ones_like(x), x))
    return x, torch.randint(0, 10 if size == 28 else 4, (n,), generator=g)


def manual_kl(adv_logits, clean_logits):
    """KL(f(x) || f(x')) written out: mean over the batch of sum_c p_c log(p_c / q_c)."""
    p, q = clean_logits.softmax(1), adv_logits.softmax(1)
    return (p * (p.log() - q.log())).sum(1).mean()


# ---------------------------------------------------------------- the inner maximisation

def test_pgd_reaches_the_closed_form_maximiser_of_a_linear_loss():
    """max_x' sum w * x' over the ball and box: each pixel at the ball's or box's upper end where
    w > 0, the lower end where w < 0. Signed steps of 2.5 eps / k reach it exactly."""
    x, _ = images(8)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    adv = pgd_linf(lambda z: (w * z).sum(), x, x, EPS, 2.5 * EPS / 7, 7)
    want = torch.where(w > 0, (x + EPS).clamp(max=1), (x - EPS).clamp(min=0))
    torch.testing.assert_close(adv, want)


@pytest.mark.parametrize("cls", [PGDAdversarialTraining, TRADES])
def test_inner_maximisation_raises_its_loss_above_the_start_and_random_points(cls):
    """PGD-AT's CE and TRADES' KL (each defense's own inner loss, in eval mode) at the adversarial
    exceed their value at the (projected) start, and gain over it 10 times more than the best of 8
    uniform points of the ball."""
    model = small_cnn()
    d = cls(model, Context("small-cnn", SPEC, {"lr": 1e-3, "pgd_eps": EPS}))
    x, y = images(32)
    torch.manual_seed(5)
    adv = d.adversarial(x, y)
    torch.manual_seed(5)
    start = project(d.start(x), x, EPS)
    model.eval()
    loss = d.inner_loss(x, y)
    with torch.no_grad():
        at_adv, at_start = float(loss(adv)), float(loss(start))
        g = torch.Generator().manual_seed(2)
        at_random = [float(loss(project(x + EPS * (2 * torch.rand(x.shape, generator=g) - 1), x, EPS)))
                     for _ in range(8)]
    # Gains over the start: the adversarial's at least 10 times the best random point's.
    gain, best_random = at_adv - at_start, max(at_random) - at_start
    assert gain > 0 and at_adv > max(at_random) and gain > 10 * abs(best_random), (at_adv, at_start, at_random)


@pytest.mark.parametrize("cls", [PGDAdversarialTraining, TRADES])
@pytest.mark.parametrize("steps", [0, 1, 7])
def test_adversarial_stays_in_the_ball_and_the_box(cls, steps):
    """|x' - x|_inf <= eps and 0 <= x' <= 1, the start included (0 steps), on images with
    pixels at exactly 0 and 1."""
    model = small_cnn()
    eps = 0.3
    d = cls(model, Context("small-cnn", SPEC, {"lr": 1e-3, "pgd_eps": eps, "pgd_steps": steps or 1}))
    x, y = images(16)
    adv = pgd_linf(d.inner_loss(x, y), x, d.start(x), d.eps, d.step_size, steps) if steps == 0 else d.adversarial(x, y)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    if steps:
        assert (adv - x).abs().max() > 0.9 * eps  # it did move


@pytest.mark.parametrize("cls", [PGDAdversarialTraining, TRADES])
def test_attack_runs_in_eval_mode_and_restores_train_mode(cls):
    """Batch-norm running statistics are untouched by the k attack forwards, and the model is back
    in train mode after; the training step's forwards (train mode) do move them."""
    model = small_cnn()
    d = cls(model, Context("small-cnn", SPEC, {"lr": 1e-3, "pgd_eps": EPS}))
    model.train()
    x, y = images(16)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    d.adversarial(x, y)
    assert model.training
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), f"{k} moved during the inner maximisation"
    d.step(x, y, RAMP)
    assert model.training
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_random_starts():
    """PGD-AT: uniform in the eps-ball (Madry et al.); TRADES: x + 0.001 N(0, 1) (its reference code)."""
    x = torch.full((64, 1, 8, 8), 0.5)
    torch.manual_seed(0)
    d_pgd = make(PGDAdversarialTraining, TinyNet()).start(x) - x
    d_trades = make(TRADES, TinyNet()).start(x) - x
    assert d_pgd.abs().max() <= EPS and d_pgd.abs().max() > 0.99 * EPS
    assert float(d_pgd.std()) == pytest.approx(EPS / 3 ** 0.5, rel=0.05) and abs(float(d_pgd.mean())) < 0.05 * EPS
    assert float(d_trades.std()) == pytest.approx(0.001, rel=0.05) and abs(float(d_trades.mean())) < 1e-4


def test_trades_inner_loss_is_the_kl_against_the_eval_mode_clean_prediction():
    """What TRADES' PGD ascends: sum_i KL(f(x_i) || f(x'_i)), f in eval mode (batch size times
    the batch-mean KL), and not the cross-entropy."""
    torch.manual_seed(0)
    model = TinyNet().double()
    x, y = images(8, size=8)
    x = x.double()
    x_adv = project(x + 0.05 * torch.randn_like(x), x, EPS)
    d = make(TRADES, model)
    model.train()
    loss = d.inner_loss(x, y)  # the clean target: eval mode even when built from train mode
    model.eval()
    with torch.no_grad():
        got, want = loss(x_adv), len(x) * manual_kl(model(x_adv), model(x))
    torch.testing.assert_close(got, want)


def test_step_size_defaults_scale_with_epsilon():
    """Default k: PGD-AT 7 (Madry et al.'s CIFAR-10), TRADES 10 (its reference code); step 2.5 eps / k."""
    pgd, trades = make(PGDAdversarialTraining, TinyNet()), make(TRADES, TinyNet())
    assert (pgd.steps, trades.steps) == (7, 10)
    assert pgd.step_size == pytest.approx(2.5 * EPS / 7) and trades.step_size == pytest.approx(2.5 * EPS / 10)
    custom = make(PGDAdversarialTraining, TinyNet(), pgd_eps=0.3, pgd_steps=40, pgd_step_scale=4 / 3)
    assert custom.step_size == pytest.approx(0.01)  # Madry et al.'s MNIST step


# ---------------------------------------------------------------- TRADES' KL and beta

def test_trades_kl_is_kl_of_clean_against_adversarial_batchmean():
    """kl_div(log_softmax(adv), softmax(clean), batchmean) = mean_i sum_c p log(p / q), p clean;
    the reversed direction is a different number on these logits."""
    g = torch.Generator().manual_seed(0)
    clean, adv = 3 * torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g,
                                                                                       dtype=torch.float64)
    torch.testing.assert_close(trades_kl(adv, clean), manual_kl(adv, clean))
    reversed_ = manual_kl(clean, adv)
    assert abs(float(reversed_ - manual_kl(adv, clean))) > 0.1 * float(manual_kl(adv, clean))
    # Two classes, closed form: p = (1/2, 1/2), q = (s, 1 - s) -> KL = -log 2 - (log s + log(1 - s)) / 2.
    s = torch.tensor(0.9, dtype=torch.float64)
    adv2 = torch.stack([s.log(), (1 - s).log()])[None]
    kl = trades_kl(adv2, torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(kl, -torch.log(torch.tensor(2.0, dtype=torch.float64)) - (s.log() + (1 - s).log()) / 2)
    assert float(trades_kl(adv, adv)) == pytest.approx(0.0, abs=1e-12)


def test_trades_loss_is_ce_plus_beta_kl_and_beta_matters():
    """The total is CE(f(x), y) + beta * KL(f(x) || f(x')) for beta 0, 1 and 6 (6 by default)."""
    torch.manual_seed(0)
    model = TinyNet().double()
    x, y = images(8, size=8)
    x = x.double()
    x_adv = project(x + 0.05 * torch.randn_like(x), x, EPS)
    totals = {}
    for beta in (0.0, 1.0, 6.0, None):
        d = make(TRADES, model) if beta is None else make(TRADES, model, trades_beta=beta)
        total, logs = d.losses(x, y, x_adv)
        b = 6.0 if beta is None else beta
        want = F.cross_entropy(model(x), y) + b * manual_kl(model(x_adv), model(x))
        torch.testing.assert_close(total, want)
        totals[beta] = float(total.detach())
    kl = float(manual_kl(model(x_adv), model(x)).detach())
    assert kl > 1e-4
    assert totals[6.0] - totals[1.0] == pytest.approx(5 * kl, rel=1e-6)
    assert totals[None] == pytest.approx(totals[6.0])


# ---------------------------------------------------------------- losses and gradients

def test_pgd_at_loss_is_ce_at_its_adversarial():
    torch.manual_seed(0)
    model = TinyNet().double()
    x, y = images(8, size=8)
    x = x.double()
    d = make(PGDAdversarialTraining, model)
    x_adv = d.adversarial(x, y)
    assert not torch.equal(x_adv, x)
    loss, logs = d.losses(x, y, x_adv)
    torch.testing.assert_close(loss, F.cross_entropy(model(x_adv), y))
    assert float(logs["adv_loss"]) == pytest.approx(float(loss.detach()))


def _independent_loss(name, model, x, y, x_adv):
    """The paper's objective written from scratch, the model in train mode as in the step."""
    if name == "pgd-at":
        return F.cross_entropy(model(x_adv), y)
    return F.cross_entropy(model(x), y) + 6.0 * manual_kl(model(x_adv), model(x))


@pytest.mark.parametrize("name", ["pgd-at", "trades"])
def test_step_gradient_matches_an_independent_autograd_computation(name):
    """One SGD step with lr 1 moves the weights by minus the gradient of the paper's objective at
    the adversarial the step itself found (same random start): the adversarial a constant
    (Danskin), TRADES' KL differentiated through both f(x) and f(x')."""
    torch.manual_seed(0)
    model = TinyNet().double()
    x, y = images(8, size=8)
    x = x.double()
    torch.manual_seed(3)
    x_adv = make(DEFENSES.get(name), copy.deepcopy(model)).adversarial(x, y)
    ref = copy.deepcopy(model).train()
    grads = torch.autograd.grad(_independent_loss(name, ref, x, y, x_adv), list(ref.parameters()))

    m = copy.deepcopy(model).train()
    d = make(DEFENSES.get(name), m)
    d.opt = torch.optim.SGD(m.parameters(), lr=1.0)
    before = [p.detach().clone() for p in m.parameters()]
    torch.manual_seed(3)
    d.step(x, y, RAMP)
    for b, p, g in zip(before, m.parameters(), grads):
        torch.testing.assert_close(b - p.detach(), g)


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("key, value, message", [
    ("pgd_eps", 1.5, r"hp.pgd_eps = 1.5 is invalid: .*\[0, 1\]"),
    ("pgd_steps", 0, r"hp.pgd_steps = 0 is invalid: expected a positive integer"),
    ("pgd_steps", 2.5, r"hp.pgd_steps = 2.5 is invalid: expected a positive integer"),
    ("trades_beta", -1.0, r"hp.trades_beta = -1.0 is invalid: .*>= 0"),
])
def test_bad_hyper_parameters_are_refused(key, value, message):
    cfg = load_preset("quick")
    cfg["hp"][key] = value
    with pytest.raises(BenchError, match=message):
        parse(cfg)


def test_registered_and_configured_by_the_quick_preset():
    """Registered; the quick preset sets their radius (they are not in its default list: they
    would add about 12 minutes to the demo, issue 27's budget is 5)."""
    assert {"pgd-at", "trades"} <= set(DEFENSES.names())
    assert all(issubclass(DEFENSES.get(n), PGDDefense) for n in ("pgd-at", "trades"))
    s = parse(load_preset("quick"))
    assert s.method_hp("pgd-at")["pgd_eps"] == s.eval.epsilon == s.method_hp("trades")["pgd_eps"]
