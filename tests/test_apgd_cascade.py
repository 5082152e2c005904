"""The fixed-radius APGD attack (both losses) and the cascade that runs the expensive attacks
only on the examples the cheaper ones left correct."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.eval import evaluate as ev
from bench.eval.evaluate import evaluate, evaluate_subject
from attacks.registry import build_attack, parse_spec, sweep
from bench.eval.schema import unpack_mask
from bench.eval.subjects import EvalSet, Subject
from core.errors import BenchError
from bench.csv_files import read_rows
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
    atk = build_attack(nn.Linear(2, 3), spec, 3, 0)
    assert [a.n_restarts for a in atk.attacks] == [2, 2] and atk.attacks[1].loss == "dlr"
    spec = parse_spec("apgd:eps=0.1,dlr_targets=9")
    atk = build_attack(nn.Linear(2, 10), spec, 10, 0)
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


# ---------------------------------------------------------------- issue 27: an honest cascade

def test_an_earlier_attack_on_fewer_examples_does_not_feed_the_cascade(monkeypatch):
    """The cascade follows only attacks that ran on at least its examples: one on fewer has no
    result for the rest. (Mutation: ``>=`` made ``==`` in ``cascade_inputs`` drops the fgsm
    row on more examples; ``<=`` takes the pgd row on fewer.)"""
    data = _marked(_cascade_data())
    broken = {"fgsm": {10, 11}, "pgd": {12}, "autoattack": {13}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    specs = sweep(["fgsm:eps=0.1", "pgd:eps=0.1,n=20", "autoattack:eps=0.1,n=30,cascade=1"])
    rows = {r["attack"]: r for r in evaluate_subject(Subject(Thresholds(), "m", 0, "toy", "0" * 64), data, specs)}
    assert rows["autoattack"]["cascade_after"] == "fgsm/untargeted"
    assert sorted(seen["autoattack"]) == sorted(set(range(12, 30)))
    assert rows["autoattack"]["kind"] == "cascade" and rows["fgsm"]["kind"] == "attack"


def test_a_cascade_depends_on_the_sweep_not_on_what_the_csv_happens_to_hold(tmp_path, monkeypatch):
    """A fresh evaluation and a later one over a CSV holding other rows of the same model (a
    transfer row, an attack not in the sweep) give the same cascade row: only the sweep's own
    attacks feed it. (Mutation: remembering every known row, as before issue 27, lets the
    extra rows into the cascade and the second evaluation differs.)"""
    import csv as _csv
    from bench.eval.schema import ROW_FIELDS

    data = _marked(_cascade_data())
    broken = {"fgsm": {10, 11}, "pgd": {12}, "autoattack": {13}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    subj = Subject(Thresholds(), "m", 0, "toy", "0" * 64)
    specs = sweep(["fgsm:eps=0.1", "autoattack:eps=0.1,cascade=1"])
    fresh = tmp_path / "fresh.csv"
    evaluate([subj], data, specs, fresh)
    (first,) = [r for r in read_rows(fresh) if r["attack"] == "autoattack"]
    # the later CSV: the same model also has a pgd row (not in this sweep) and a transfer row
    later = tmp_path / "later.csv"
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "pgd:eps=0.1"]), later)
    rows = read_rows(later)
    extra = dict(rows[0], attack="transfer", spec="transfer:eps=0.1,x", transfer_from="b seed 0 0000",
                 correct_mask="00" * 5)
    with open(later, "w", newline="") as f:
        w = _csv.DictWriter(f, fieldnames=ROW_FIELDS)
        w.writeheader()
        w.writerows(rows + [extra])
    evaluate([subj], data, specs, later)
    (second,) = [r for r in read_rows(later) if r["attack"] == "autoattack"]
    assert {k: second[k] for k in ("accuracy", "correct_mask", "cascade_after", "n_attacked")} == \
           {k: first[k] for k in ("accuracy", "correct_mask", "cascade_after", "n_attacked")}


def test_a_skipped_cascade_row_whose_inputs_changed_is_recomputed(tmp_path, monkeypatch):
    """Adding an attack to the sweep changes a cascade's inputs: its stored row (same spec key)
    is recomputed on the new survivors, not skipped. (Mutation: skipping whenever the key is
    in the CSV leaves the old row, after fgsm only.)"""
    data = _marked(_cascade_data())
    broken = {"fgsm": {10, 11}, "pgd": {12}, "autoattack": {13}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    subj = Subject(Thresholds(), "m", 0, "toy", "0" * 64)
    csv = tmp_path / "robustness.csv"
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "autoattack:eps=0.1,cascade=1"]), csv)
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "pgd:eps=0.1", "autoattack:eps=0.1,cascade=1"]), csv)
    (aa,) = [r for r in read_rows(csv) if r["attack"] == "autoattack"]
    assert aa["cascade_after"] == "fgsm/untargeted pgd/untargeted" and float(aa["accuracy"]) == 26 / 40
    # and an unchanged sweep skips it
    seen.clear()
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "pgd:eps=0.1", "autoattack:eps=0.1,cascade=1"]), csv)
    assert "autoattack" not in seen


def test_a_cascade_after_an_input_whose_spec_changed_is_recomputed(tmp_path, monkeypatch):
    """An input attack whose spec changes keeps its label (``cascade_after`` reads the same) but
    not its mask: the cascade after it is recomputed on the new survivors. (Mutation: comparing
    only the labels leaves the row computed after pgd with 5 steps.)"""
    data = _marked(_cascade_data())
    broken = {"fgsm": {10, 11}, "pgd": {12}, "autoattack": {13}}
    seen: dict[str, list[int]] = {}
    _fake_attacks(monkeypatch, broken, seen)
    subj = Subject(Thresholds(), "m", 0, "toy", "0" * 64)
    csv = tmp_path / "robustness.csv"
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "pgd:eps=0.1,steps=5", "autoattack:eps=0.1,cascade=1"]), csv)
    broken["pgd"] = {12, 14}  # the stronger pgd breaks one more
    evaluate([subj], data, sweep(["fgsm:eps=0.1", "pgd:eps=0.1,steps=50", "autoattack:eps=0.1,cascade=1"]), csv)
    (aa,) = [r for r in read_rows(csv) if r["attack"] == "autoattack"]
    assert aa["cascade_after"] == "fgsm/untargeted pgd/untargeted" and float(aa["accuracy"]) == 25 / 40


def _fake_autoattack_parts(monkeypatch, broken: dict[str, set[int]], seen: dict[str, list[int]]):
    """run_attack replaced by AutoAttack's parts, each breaking the example indices ``broken[part]``:
    ``apgd`` runs APGD-CE and APGD-T; ``autoattack`` all four parts, or FAB-T and Square when the
    harness hands it the composed builder."""

    def fake(model, spec, x, y, targets, build=None, **kw):
        ids = [int(round(float(v) * 1000)) for v in x[:, 0, 0, 1]]
        parts = {"apgd": ("apgd-ce", "apgd-t"), "autoattack": ("fab-t", "square") if build is not None
                 else ("apgd-ce", "apgd-t", "fab-t", "square")}.get(spec.name, (spec.name,))
        seen.setdefault(spec.name + ("+composed" if build is not None else ""), []).extend(ids)
        hit = set().union(*(broken.get(p, set()) for p in parts))
        return torch.tensor([1 if i in hit else 0 for i in ids]), torch.zeros(len(ids)), 0.0

    monkeypatch.setattr(ev, "run_attack", fake)


def test_autoattack_after_a_standard_apgd_row_is_composed_and_equals_the_standard_one(monkeypatch):
    """Issue 27: standard AutoAttack is APGD-CE, APGD-T, FAB-T, Square, each on the survivors of
    the one before. After a standard APGD-CE+T row it runs only FAB-T and Square on that row's
    survivors; per example, the composed row equals standard AutoAttack's mask AND the earlier
    attacks' masks. (Mutations: composing after a non-standard apgd row (3 targets) is refused
    below; running FAB-T and Square on the fgsm survivors instead of the apgd survivors, or
    forgetting the apgd row's breaks, changes the mask or the attacked set.)"""
    data = _marked(_cascade_data(40))
    data = EvalSet(data.x, data.y, 10, "toy")  # AutoAttack needs >= 4 classes; Thresholds predicts 0/1
    broken = {"fgsm": {10}, "apgd-ce": {11, 12}, "apgd-t": {13}, "fab-t": {14, 11}, "square": {15, 10}}
    seen: dict[str, list[int]] = {}
    _fake_autoattack_parts(monkeypatch, broken, seen)
    subj = Subject(Thresholds(), "m", 0, "toy", "0" * 64)
    specs = sweep(["fgsm:eps=0.1", "apgd:eps=0.1,dlr_targets=9,cascade=1", "autoattack:eps=0.1,cascade=1"])
    rows = {r["attack"]: r for r in evaluate_subject(subj, data, specs)}
    aa = rows["autoattack"]
    assert sorted(seen["autoattack+composed"]) == sorted(set(range(10, 40)) - {10, 11, 12, 13})
    assert aa["components"].startswith("FAB-T, Square; APGD-CE, APGD-T from apgd:")
    assert aa["cascade_after"] == "apgd/untargeted fgsm/untargeted"
    standard = set(range(10, 40)) - set().union(*(broken[p] for p in ("apgd-ce", "apgd-t", "fab-t", "square")))
    earlier = set(range(10, 40)) - broken["fgsm"]
    assert set(unpack_mask(aa["correct_mask"], 40).nonzero()[0].tolist()) == standard & earlier
    # after an apgd row with fewer targets than AutoAttack's APGD-T, AutoAttack runs whole
    seen.clear()
    specs = sweep(["fgsm:eps=0.1", "apgd:eps=0.1,dlr_targets=3,cascade=1", "autoattack:eps=0.1,cascade=1"])
    rows = {r["attack"]: r for r in evaluate_subject(subj, data, specs)}
    assert "autoattack+composed" not in seen and rows["autoattack"]["components"] == ""


def test_the_apgd_t_target_count_is_capped_at_the_other_classes():
    """dlr_targets above n_classes - 1 means every other class: on 5 classes APGD-T targets 4,
    and the attack runs (torchattacks' APGDT would index past the logits otherwise).
    (Mutation: removing ``min(k, C - 1)`` in attacks/apgd.py.)"""
    from attacks.registry import build_attack
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5)).eval()
    atk = build_attack(model, parse_spec("apgd:eps=0.1,dlr_targets=9,steps=3"), 5, 0)
    assert atk.attacks[1].n_target_classes == 4
    x = torch.rand(6, 1, 2, 2)
    with torch.no_grad():
        y = model(x).argmax(1)
    assert atk(x, y).shape == x.shape


@pytest.mark.parametrize("text, classes", [("apgd:eps=0.1,dlr_targets=9", 3), ("apgd:eps=0.1", 2),
                                           ("autoattack:eps=0.1", 3)])
def test_the_dlr_losses_refuse_too_few_classes_with_a_clear_error(text, classes):
    from attacks.registry import build_attack
    with pytest.raises(BenchError, match=f"needs at least .* classes; this dataset has {classes}"):
        build_attack(nn.Linear(4, classes), parse_spec(text), classes, 0)
