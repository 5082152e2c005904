"""Gradient-masking checks: the arithmetic on hand-made rows, and end to end on a model
that masks gradients with a hard quantisation layer versus the same model without it."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.eval.evaluate import evaluate_subject
from bench.eval.schema import pack_mask
from bench.eval.subjects import EvalSet, Subject
from attacks.registry import sweep
from bench.report.masking import (Thresholds, black_box_vs_white_box, l2_contains_linf, masking_checks, min_norm_vs_fixed_radius,
                           monotone_in_eps)


pytestmark = pytest.mark.usefixtures("one_thread")


def row(attack, eps, correct, mode="untargeted", **kw):
    c = torch.tensor(correct, dtype=torch.bool)
    r = {"defense": "d", "seed": 0, "checkpoint_sha256": "s", "attack": attack, "epsilon": eps, "mode": mode,
         "norm": "Linf", "n": len(correct), "accuracy": float(c.float().mean()), "correct_mask": pack_mask(c),
         "steps": "", "restarts": 1, "params": "{}", "spec": f"{attack}:{eps}"}
    r.update(kw)
    return r


def test_flip_back_counts_samples_even_when_the_mean_does_not_rise():
    # same mean accuracy (2/4) at both eps, but sample 0 is broken at 0.1 and correct at 0.2
    rows = [row("fgsm", 0.1, [0, 1, 1, 0]), row("fgsm", 0.2, [1, 0, 0, 1])]
    status, value, detail = monotone_in_eps(rows, Thresholds(flip_tol=0.3))
    assert status == "flag" and value == pytest.approx(0.5)
    ok = [row("fgsm", 0.1, [1, 1, 1, 0]), row("fgsm", 0.2, [1, 0, 1, 0]), row("fgsm", 0.3, [0, 0, 1, 0])]
    assert monotone_in_eps(ok, Thresholds())[:2] == ("pass", 0.0)
    # targeted rows are not held to this ordering
    assert monotone_in_eps([row("fgsm", 0.1, [0, 0], "worst"), row("fgsm", 0.2, [1, 1], "worst")],
                           Thresholds())[0] == "n/a"


def test_black_box_compared_with_the_union_of_white_box_attacks_on_the_same_examples():
    rows = [row("fgsm", 0.1, [1, 0, 1, 1]), row("ifgsm", 0.1, [1, 1, 0, 1], steps=10),
            row("square", 0.1, [0, 0, 0, 1])]
    status, value, _ = black_box_vs_white_box(rows, Thresholds(tol=0.1))
    # white-box union leaves examples 0 and 3 (0.5); Square leaves only 3 (0.25)
    assert status == "flag" and value == pytest.approx(0.25)
    rows[-1] = row("square", 0.1, [1, 0, 1, 1])
    assert black_box_vs_white_box(rows, Thresholds(tol=0.1))[0] == "pass"


def test_l2_attack_that_misses_what_an_inner_linf_attack_broke_is_flagged():
    # Fashion-MNIST: d = 784, so the Linf ball of 0.1 lies inside the L2 ball of 2.8 but not of 1.0
    linf = row("pgd", 0.1, [0, 0, 1, 0], dataset="fashion-mnist", steps=10)
    cw = row("cw", 3.0, [1, 0, 1, 1], norm="L2", dataset="fashion-mnist")
    status, value, detail = l2_contains_linf([linf, cw], Thresholds(tol=0.1))
    assert status == "flag" and value == pytest.approx(0.5) and "pgd/untargeted@0.1" in detail
    cw_ok = row("cw", 3.0, [0, 0, 1, 0], norm="L2", dataset="fashion-mnist")
    assert l2_contains_linf([linf, cw_ok], Thresholds(tol=0.1))[:2] == ("pass", 0.0)
    small = row("cw", 1.0, [1, 1, 1, 1], norm="L2", dataset="fashion-mnist")  # ball too small to compare
    assert l2_contains_linf([linf, small], Thresholds())[0] == "n/a"


def test_min_norm_curve_is_checked_against_a_fixed_radius_attack_at_each_radius():
    l2min = [row("l2min", 1.0, [1, 1, 0, 1], norm="L2"), row("l2min", 2.0, [1, 1, 0, 0], norm="L2")]
    apgd = [row("apgd", 1.0, [1, 1, 0, 1], norm="L2"), row("apgd", 2.0, [0, 1, 0, 0], norm="L2")]
    status, value, detail = min_norm_vs_fixed_radius(l2min + apgd, Thresholds(tol=0.1))
    # at radius 2 APGD broke example 0, which l2min reported robust: 1 of 4
    assert status == "flag" and value == pytest.approx(0.25) and "apgd/untargeted@2" in detail
    # only the same radius is compared: a fixed-radius row at a radius l2min did not report is no gap
    other = [row("apgd", 1.0, [0, 1, 0, 1], norm="L2"), row("apgd", 3.0, [0, 0, 0, 0], norm="L2")]
    assert min_norm_vs_fixed_radius(l2min + other, Thresholds(tol=0.1))[:2] == ("flag", 0.25)
    assert min_norm_vs_fixed_radius(l2min + other[1:], Thresholds(tol=0.1))[0] == "n/a"
    # counted per example: equal accuracies on different examples are still a gap
    swapped = [row("l2min", 1.0, [1, 0], norm="L2"), row("apgd", 1.0, [0, 1], norm="L2")]
    assert min_norm_vs_fixed_radius(swapped, Thresholds(tol=0.1))[:2] == ("flag", 0.5)
    # what APGD breaks that l2min also broke is no gap
    assert min_norm_vs_fixed_radius(l2min + [row("apgd", 2.0, [1, 1, 0, 0], norm="L2")],
                                    Thresholds(tol=0.1))[:2] == ("pass", 0.0)
    # the combined entry is judged when present; a single min-norm attack otherwise
    cw = row("cw", 2.0, [1, 1, 1, 1], norm="L2")
    assert min_norm_vs_fixed_radius([cw, apgd[1]], Thresholds(tol=0.1))[:2] == ("flag", 0.75)
    assert min_norm_vs_fixed_radius([cw, l2min[1], row("apgd", 2.0, [1, 1, 0, 0], norm="L2")],
                                    Thresholds(tol=0.1))[:2] == ("pass", 0.0)


def test_l2_check_judges_the_combined_min_norm_entry_when_the_sweep_has_one():
    linf = row("pgd", 0.1, [0, 0, 1, 0], dataset="fashion-mnist", steps=10)
    cw = row("cw", 3.0, [1, 0, 1, 1], norm="L2", dataset="fashion-mnist")      # misses 0 and 3
    fmn = row("fmn", 3.0, [0, 1, 1, 0], norm="L2", dataset="fashion-mnist")    # misses 1
    best = row("l2min", 3.0, [0, 0, 1, 0], norm="L2", dataset="fashion-mnist")  # cw AND fmn: the L2 column
    assert l2_contains_linf([linf, cw, fmn], Thresholds(tol=0.1))[:2] == ("flag", 0.5)
    assert l2_contains_linf([linf, cw, fmn, best], Thresholds(tol=0.1))[:2] == ("pass", 0.0)
    worse = row("l2min", 3.0, [0, 1, 1, 0], norm="L2", dataset="fashion-mnist")
    assert l2_contains_linf([linf, cw, fmn, worse], Thresholds(tol=0.1))[:2] == ("flag", 0.25)


def test_masking_checks_add_the_sanity_flags_given_the_models():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Softmax(dim=1))
    x = torch.rand(12, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    data = EvalSet(x, y, 3, "toy")
    rows = [row("fgsm", 0.1, [1, 0, 1, 1])]
    other = Subject(model, "softmax-net", 0, "toy", "t")
    out = masking_checks(rows, subjects=[other], data=data)
    by = {(r.defense, r.check): r for r in out}
    assert by["softmax-net", "probability_outputs"].status == "flag"
    assert by["softmax-net", "probability_outputs"].value == 1.0
    assert by["d", "deterministic"].status == "n/a"  # rows of a model that was not given
    assert {r.check for r in masking_checks(rows)} == {r.check for r in out if r.defense == "d"} - {
        "deterministic", "zero_gradients", "probability_outputs", "batch_size"}


class Quantise(nn.Module):
    """round(2x)/2: piecewise constant, so its gradient is zero almost everywhere."""

    def forward(self, x):
        return torch.round(x * 2) / 2


@pytest.fixture(scope="module")
def trained():
    """A small MLP that separates four binary 8x8 patterns (pixels 0.1 / 0.9 plus noise)."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float() * 0.8 + 0.1
    y = torch.randint(0, 4, (400,), generator=g)
    x = (protos[y] + 0.04 * torch.randn(400, 1, 8, 8, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(net(x[:300]), y[:300]).backward()
        opt.step()
    return net.eval(), EvalSet(x[300:], y[300:], 4, "toy")


SWEEP = ["none", "fgsm:eps=0.1|0.3|0.5", "ifgsm:eps=0.1|0.3|0.5", "square:eps=0.3,queries=200"]


def checks_for(model, data):
    rows = evaluate_subject(Subject(model, "m", 0, "toy", "x"), data, sweep(SWEEP), eval_seed=0)
    assert rows[0]["accuracy"] > 0.95  # both models classify the clean data
    return {c.check: c for c in masking_checks(rows)}


def test_a_quantised_model_is_flagged(trained):
    net, data = trained
    res = checks_for(nn.Sequential(Quantise(), net).eval(), data)
    assert res["large_eps"].status == "flag"               # iFGSM at 0.5 cannot move a zero gradient
    assert res["black_box_vs_white_box"].status == "flag"  # Square breaks what gradients cannot
    assert float(res["large_eps"].value) > 0.9


def test_the_same_model_without_quantisation_passes(trained):
    net, data = trained
    res = checks_for(net, data)
    assert {name: c.status for name, c in res.items()} == {
        "iterative_vs_single": "pass", "monotone_in_eps": "pass", "large_eps": "pass",
        "black_box_vs_white_box": "pass", "l2_contains_linf": "n/a",  # this sweep has no L2 attack
        "min_norm_vs_fixed_radius": "n/a",
        "transfer_vs_white_box": "no source"}  # nor a baseline to make transfer examples on


def test_black_box_and_transfer_checks_ignore_cascade_rows_and_can_still_fail():
    """Issue 27: a cascade row's mask already holds the breaks of every attack before it
    (Square and transfer among them), so as the white-box reference it makes both checks
    unfailable. Here Square and the transfer attack each break more than PGD does on its own,
    and the AutoAttack cascade after them is weaker than either: each check must flag.
    (Mutation: reading the cascade row as white-box, i.e. ``_white_box`` instead of
    ``_own_white_box``, turns both flags into passes.)"""
    from bench.report.masking import transfer_vs_white_box
    pgd = row("pgd", 0.1, [1, 1, 1, 1, 0, 0], steps=20, kind="attack")
    square = row("square", 0.1, [0, 0, 1, 1, 0, 0], kind="attack")
    transfer = row("transfer", 0.1, [1, 0, 0, 1, 0, 0], kind="attack", transfer_from="baseline seed 0 abc")
    cascade = row("autoattack", 0.1, [0, 0, 0, 0, 0, 0], steps=100, kind="cascade",
                  cascade_after="pgd/untargeted square/untargeted transfer/untargeted")
    rows = [pgd, square, transfer, cascade]
    status, value, _ = black_box_vs_white_box(rows, Thresholds(tol=0.1))
    assert status == "flag" and value == pytest.approx(2 / 6, abs=1e-4)
    status, value, _ = transfer_vs_white_box(rows, Thresholds(tol=0.1), source="baseline")
    assert status == "flag" and value == pytest.approx(2 / 6, abs=1e-4)
    # and they pass when the black-box and transfer attacks are weaker than PGD on its own
    rows = [pgd, row("square", 0.1, [1, 1, 1, 1, 1, 0], kind="attack"),
            row("transfer", 0.1, [1, 1, 1, 1, 0, 1], kind="attack", transfer_from="baseline seed 0 abc"), cascade]
    assert black_box_vs_white_box(rows, Thresholds(tol=0.1))[0] == "pass"
    assert transfer_vs_white_box(rows, Thresholds(tol=0.1), source="baseline")[0] == "pass"
    # rows from before the kind column: the spec's cascade=1 marks the cascade
    old = dict(cascade, kind="", spec="autoattack:eps=0.1,norm=Linf,steps=100,restarts=1,mode=untargeted,cascade=1")
    assert black_box_vs_white_box([pgd, square, old], Thresholds(tol=0.1))[0] == "flag"
