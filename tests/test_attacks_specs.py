"""Attack specs, the registry and target generation (no models trained here)."""
import pytest
import torch

from attacks.registry import ATTACKS
from attacks.registry import expand, parse_spec, sweep
from attacks.specs import MODES
from attacks.targets import random_targets, targets_for, worst_targets
from core.errors import BenchError


def test_ifgsm_defaults_follow_the_paper():
    s = parse_spec("ifgsm:eps=0.1")
    assert (s.steps, s.mode, s.norm, s.restarts) == (10, "untargeted", "Linf", 1)
    assert s.step_size == pytest.approx(0.01)  # eps / k
    assert parse_spec("ifgsm:eps=0.2,steps=4").step_size == pytest.approx(0.05)


def test_same_attack_same_key_regardless_of_spelling():
    a = parse_spec("ifgsm:eps=0.1,steps=10,mode=worst")
    b = parse_spec("IFGSM: mode=worst , eps=0.10,step=0.01,norm=linf")
    assert a.key() == b.key()
    assert a.key() != parse_spec("ifgsm:eps=0.1,mode=random").key()


def test_sweep_is_the_product_of_attacks_eps_and_modes():
    specs = sweep(["fgsm", "ifgsm"], eps=[0.05, 0.1], modes=list(MODES))
    assert len(specs) == 2 * 2 * 3
    assert {(s.name, s.eps, s.mode) for s in specs} == {
        (a, e, m) for a in ("fgsm", "ifgsm") for e in (0.05, 0.1) for m in MODES}
    assert len(expand("pgd:eps=0.1|0.2|0.3,restarts=1|2")) == 6
    # duplicates collapse
    assert len(sweep(["fgsm:eps=0.1", "fgsm:eps=0.10,mode=untargeted"])) == 1


def test_cw_is_minimum_norm_and_shares_one_run_across_radii():
    a, b = expand("cw:eps=0.5|2")
    assert ATTACKS.get("cw").min_norm and a.norm == "L2"
    assert a.run_key() == b.run_key() and a.key() != b.key()
    assert parse_spec("cw:eps=3").eps == 3.0  # an L2 radius may exceed 1


@pytest.mark.parametrize("text, msg", [
    ("fgsmm:eps=0.1", "unknown attack"),
    ("fgsm:eps=0.1,mode=sideways", "unknown attack mode"),
    ("fgsm:eps=1.5", "[0, 1]"),
    ("fgsm:eps=-0.1", "[0, 1]"),
    ("fgsm:eps=nan", "finite"),
    ("autoattack:eps=0.1,mode=random", "cannot run mode"),
    ("none:mode=worst", "cannot run mode"),
    ("fgsm:eps=0.1,steps=3", "takes no 'steps'"),
    ("fgsm:eps=0.1,restarts=2", "restarts must be 1"),
    ("ifgsm:eps=0.1,steps=0", "positive"),
    ("cw:eps=1,norm=Linf", "does not support norm"),
    ("fgsm:eps=0.1,c=3", "has no parameter"),
    ("fgsm:eps", "key=value"),
    ("", "empty"),
])
def test_bad_specs_are_refused_with_a_clear_message(text, msg):
    with pytest.raises(BenchError, match=msg if msg[0] != "[" else r"\[0, 1\]"):
        expand(text)


def test_every_registered_attack_names_its_modes_and_builds():
    # 10 classes: APGD-T and AutoAttack refuse fewer than 4 (tested in test_apgd_cascade)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    for name in ATTACKS.names():
        info = ATTACKS.get(name)
        assert set(info.modes) <= set(MODES) and info.doc
        for mode in info.modes:
            spec = parse_spec(f"{name}:mode={mode}")
            if info.combines:  # evaluated by the harness from its parts, never built
                with pytest.raises(BenchError, match="harness"):
                    info.build(model, spec, 10, 0)
                continue
            atk = info.build(model, spec, 10, 0)
            if name != "none":
                assert atk.targeted == (mode != "untargeted")  # by-label mode, never silently untargeted
                assert getattr(atk, "_model_training", False) is False


def test_random_targets_never_equal_the_label_and_depend_only_on_labels_and_seed():
    y = torch.arange(10).repeat(50)
    t = random_targets(y, 10, seed=3)
    assert not (t == y).any()
    assert set(t.tolist()) == set(range(10))
    assert torch.equal(t, random_targets(y, 10, seed=3))
    assert not torch.equal(t, random_targets(y, 10, seed=4))
    # two different models' logits: random targets are the same, worst targets differ per model
    la, lb = torch.randn(500, 10), torch.randn(500, 10)
    assert torch.equal(targets_for("random", la, y, 10, 3), targets_for("random", lb, y, 10, 3))
    assert not torch.equal(targets_for("worst", la, y, 10, 3), targets_for("worst", lb, y, 10, 3))
    assert targets_for("untargeted", la, y, 10, 3) is None


def test_worst_target_is_the_least_likely_other_class():
    logits = torch.tensor([[5.0, -3.0, 1.0, 0.0], [-9.0, 2.0, 3.0, -1.0]])
    y = torch.tensor([2, 0])  # in row 2 the label itself is the least likely: never a target
    assert worst_targets(logits, y).tolist() == [1, 3]


def test_autoattack_is_the_standard_version_with_100_steps():
    import torchattacks

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    atk = ATTACKS.get("autoattack").build(model, parse_spec("autoattack:eps=0.03"), 10, 0)
    parts = atk.attacks
    assert [type(a) for a in parts] == [torchattacks.APGD, torchattacks.APGDT, torchattacks.FAB, torchattacks.Square]
    apgd, apgdt, fab, square = parts
    assert apgd.steps == apgdt.steps == fab.steps == 100 and apgd.loss == "ce"
    assert apgdt.n_target_classes == fab.n_target_classes == 9 and fab.multi_targeted
    assert square.n_queries == 5000 and all(a.eps == 0.03 for a in parts)
    assert all(a.n_restarts == 1 for a in parts)
