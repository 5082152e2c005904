"""The fixed-radius APGD attack (both losses) and the cascade that runs the expensive attacks
only on the examples the cheaper ones left correct."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from attacks import evaluate as ev
from attacks.evaluate import evaluate, evaluate_subject
from attacks.registry import parse_spec, sweep
from attacks.row_schema import unpack_mask
from attacks.subjects import EvalSet, Subject
from bench.errors import BenchError
from bench.rows import read_rows
from tests.test_min_norm import K, affine_problem

pytestmark = pytest.mark.usefixtures("one_thread")


class Scaled(nn.Module):
    """Logits times a huge constant: the softmax saturates, so the cross-entropy's gradient is
    exactly zero in float32 for every confidently classified point (a model that masks CE
    gradients), while the DLR loss, a ratio of logit differences, does not see the scale."""

    def __init__(self, net, scale=1e4):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        return self.net(x) * self.scale


def _problem():
    model, x, y, d_true = affine_problem(n=20)
    return Scaled(model).eval(), EvalSet(x, y, K, "toy"), d_true


def test_l2_apgd_needs_its_dlr_loss_on_a_model_that_saturates_cross_entropy():
    """Every example has its nearest boundary within 1.2 (closed form), so at radius 1.3 a working
    L2 attack breaks all of them. Cross-entropy alone gets no gradient from the saturated softmax;
    the second loss (DLR, or the targeted DLR of APGD-T) must do it. Dropping it fails here."""
    model, data, d_true = _problem()
    assert float(d_true.max()) < 1.2
    subj = Subject(model, "scaled", 0, "toy", "0" * 64)
    specs = sweep(["apgd:norm=L2,eps=1.3,steps=50,dlr_targets=0", "apgd:norm=L2,eps=1.3,steps=50,dlr_targets=3"])
    rows = evaluate_subject(subj, data, specs, batch_size=1000)
    assert [r["accuracy"] for r in rows] == [0.0, 0.0]
    for r in rows:  # and within the radius (the harness checks every batch; here the reported max)
        assert 0 < float(r["max_perturbation"]) <= 1.3 + 1e-4
    # the CE part alone is powerless on this model: that is what the DLR loss is there for
    import torchattacks
    ce = torchattacks.APGD(model, norm="L2", eps=1.3, steps=50, n_restarts=1, loss="ce")
    with torch.no_grad():
        ce_ok = float((model(ce(data.x, data.y)).argmax(1) == data.y).float().mean())
    assert ce_ok > 0.5


def test_apgd_restarts_are_its_own_and_reach_torchattacks():
    """restarts= goes to torchattacks' n_restarts (the harness does not re-run the attack with
    the same internal seed, which would repeat the same start)."""
    spec = parse_spec("apgd:norm=L2,eps=1,restarts=2")
    atk = ev.build_attack(nn.Linear(2, 3), spec, 3, 0)
    assert [a.n_restarts for a in atk.attacks] == [2, 2] and atk.attacks[1].loss == "dlr"
    spec = parse_spec("apgd:eps=0.1,dlr_targets=9")
    atk = ev.build_attack(nn.Linear(2, 10), spec, 10, 0)
    assert type(atk.attacks[1]).__name__ == "APGDT" and atk.attacks[1].n_target_classes == 9


class Thresholds(nn.Module):
    """Two classes; example i is correct clean. Attacks are replaced below, so the model only
    has to classify the clean images."""

    def forward(self, x):
        s = x.flatten(1).mean(1)
        return torch.stack([s, 1 - s], 1)


def _cascade_data(n=40):
    x = torch.full((n, 1, 2, 2), 0.9)
    x[: n // 4] = 0.1  # the first quarter is misclassified clean (label 0 needs mean > 0.5)
    return EvalSet(x, torch.zeros(n, dtype=torch.long), 2, "toy")


def _fake_attacks(monkeypatch, broken: dict[str, set[int]], seen: dict[str, list[int]]):
    """run_attack replaced: attack ``name`` breaks exactly the example indices ``broken[name]``
    (identified by a marker written into each image) and records which examples it was given."""

    def fake(model, spec, x, y, targets, **kw):
        ids = [int(round(float(v) * 1000)) for v in x[:, 0, 0, 1]]
        seen.setdefault(spec.name, []).extend(ids)
        preds = torch.tensor([1 if i in broken[spec.name] else 0 for i in ids])
        return preds, torch.zeros(len(ids)), 0.0

    monkeypatch.setattr(ev, "run_attack", fake)


def _marked(data):
    x = data.x.clone()
    x[:, 0, 0, 1] = torch.arange(len(x)) / 1000  # marker pixel: the example's index
    return EvalSet(x, data.y, 2, "toy")


def test_cascade_attacks_exactly_the_survivors_and_reports_the_worst_case(monkeypatch):
    data = _marked(_cascade_data())
    correct0 = set(range(10, 40))
    broken = {"fgsm": {10, 11, 12}, "pgd": {12, 13, 14}, "autoattack": {15, 16, 20, 11}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    specs = sweep(["autoattack:eps=0.1,cascade=1", "fgsm:eps=0.1", "pgd:eps=0.1", "fgsm:eps=0.2"])
    rows = {r["spec"]: r for r in evaluate_subject(Subject(Thresholds(), "m", 0, "toy", "0" * 64), data, specs)}
    # the cascade ran last, on the clean-correct examples fgsm and pgd at 0.1 both left correct
    survivors = correct0 - broken["fgsm"] - broken["pgd"]
    assert sorted(seen["autoattack"]) == sorted(survivors)
    aa = rows[specs[0].key()]
    assert aa["cascade_after"] == "fgsm/untargeted pgd/untargeted" and aa["n_attacked"] == len(survivors)
    robust = survivors - broken["autoattack"]
    mask = unpack_mask(aa["correct_mask"], 40)
    assert set(mask.nonzero()[0].tolist()) == robust
    assert aa["accuracy"] == len(robust) / 40
    # an attack at another epsilon is not part of it; the plain rows are untouched
    assert rows[specs[1].key()]["cascade_after"] == "" and rows[specs[1].key()]["n_attacked"] == 30


def test_cascade_reads_the_masks_of_rows_computed_earlier(tmp_path, monkeypatch):
    """evaluate() hands the CSV's rows of the same checkpoint to the cascade: run the cheap
    attacks first, the cascade in a second call, and it still starts from their survivors."""
    data = _marked(_cascade_data())
    broken = {"fgsm": {10, 11}, "autoattack": {12}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    subj = Subject(Thresholds(), "m", 0, "toy", "0" * 64)
    csv = tmp_path / "robustness.csv"
    evaluate([subj], data, sweep(["fgsm:eps=0.1"]), csv)
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "autoattack:eps=0.1,cascade=1"]), csv)
    assert sorted(seen["autoattack"]) == sorted(set(range(12, 40)))
    [aa] = [r for r in read_rows(csv) if r["attack"] == "autoattack"]
    assert aa["cascade_after"] == "fgsm/untargeted" and float(aa["accuracy"]) == 27 / 40


@pytest.mark.parametrize("text", ["fgsm:eps=0.1,mode=worst,cascade=1", "cw:eps=1,cascade=1",
                                  "none:cascade=1", "pgd:eps=0.1,cascade=2"])
def test_cascade_is_refused_where_it_has_no_meaning(text):
    with pytest.raises(BenchError, match="cascade"):
        parse_spec(text)


def test_cascade_changes_the_key_only_when_set():
    assert parse_spec("pgd:eps=0.1").key() == parse_spec("pgd:eps=0.1,cascade=0").key()
    assert parse_spec("pgd:eps=0.1,cascade=1").key().endswith("cascade=1")


def test_a_recomputed_cascade_starts_from_the_new_rows_not_from_an_older_copy_of_itself(tmp_path, monkeypatch):
    """Recomputing rows that are already in the CSV (``force``, or ``save_adv`` on a CSV whose
    examples were not saved, as on a fresh clone with committed results) must give the same
    cascade: the old rows of the specs being recomputed are not earlier attacks, and nothing
    is counted twice. (Mutation: remembering every known row made the cascade start from its
    own old row, attack fewer examples and save no adversarials for the rest.)"""
    data = _marked(_cascade_data())
    broken = {"fgsm": {10, 11}, "pgd": {12}, "autoattack": {13, 14}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    subj = Subject(Thresholds(), "m", 0, "toy", "0" * 64)
    csv = tmp_path / "robustness.csv"
    specs = sweep(["fgsm:eps=0.1", "pgd:eps=0.1", "autoattack:eps=0.1,cascade=1"])
    evaluate([subj], data, specs, csv)
    first = sorted(seen.pop("autoattack"))
    evaluate([subj], data, specs, csv, force=True)
    assert sorted(seen["autoattack"]) == first == sorted(set(range(13, 40)))
    [aa] = [r for r in read_rows(csv) if r["attack"] == "autoattack"]
    assert aa["cascade_after"] == "fgsm/untargeted pgd/untargeted" and aa["n_attacked"] == "27"
    assert float(aa["accuracy"]) == 25 / 40
