"""Training radii in the preset's epsilon units (issue 30): FGSM-AT's fgsm_eps = 0.2 in the
paper's normalised units trains at 0.2 * std pixels, converted by the one conversion the eval
epsilons use (bench.config.epsilon_units), in [hp], [defense_hp] and variants alike."""
from __future__ import annotations

import pytest

from bench.config.presets import load_preset
from bench.defense_track import defense_run, model_spec_for
from bench.config.epsilon_units import DISTANCE_HP, distance_hp, to_pixels
from bench.method import hp_keys
from bench.config.settings import defense_class, parse
from defenses import DEFENSES

FASHION_STD = 0.3530  # typed here, independently of bench.data.DATASETS


def _smoke(units: str, **hp):
    cfg = load_preset("smoke")
    cfg["eval"]["epsilon_units"] = units
    cfg["hp"].update(hp)
    return cfg


def test_normalised_fgsm_eps_is_the_paper_value_times_the_std():
    s = parse(_smoke("normalized", fgsm_eps=0.2))
    got = s.method_hp("fgsm-at")["fgsm_eps"]
    assert got == pytest.approx(0.2 * FASHION_STD, rel=1e-5)  # 0.0706 pixels
    # the same conversion as an eval epsilon written in the same units
    assert got == to_pixels(0.2, "normalized", "fashion-mnist")
    cfg = _smoke("normalized", fgsm_eps=0.2)
    cfg["eval"]["sweep"] = ["fgsm:eps=0.2"]
    assert parse(cfg).eval.sweep == (f"fgsm:eps={got:g}",)
    assert s.method_hp("adv-backprop")["fgsm_eps"] == got
    # a radius with more digits than a spec key prints: rounded like the eval epsilon, so a
    # training radius and an attack at "the same" epsilon are one number
    cfg = _smoke("normalized", fgsm_eps=0.123457)
    cfg["eval"]["sweep"] = ["fgsm:eps=0.123457"]
    s = parse(cfg)
    assert s.eval.sweep == (f"fgsm:eps={s.method_hp('fgsm-at')['fgsm_eps']!r}",)


def test_pixel_units_leave_the_radius_and_other_keys_alone():
    s = parse(_smoke("pixel", fgsm_eps=0.2))
    assert s.method_hp("fgsm-at")["fgsm_eps"] == 0.2
    n = parse(_smoke("normalized", fgsm_eps=0.2))
    for key in ("fgsm_mix", "lr", "alpha_max", "beta_max", "datagrad_lambda"):
        for name in ("fgsm-at", "great", "datagrad-l1"):
            assert n.method_hp(name).get(key) == s.method_hp(name).get(key)


def test_defense_hp_and_variants_are_converted_too():
    cfg = _smoke("normalized", fgsm_eps=0.1)
    cfg["defense_hp"]["fgsm-at"] = {"fgsm_eps": 0.2}
    cfg["variants"] = {"fgsm-at-03": {"defense": "fgsm-at", "hp": {"fgsm_eps": 0.3}}}
    s = parse(cfg)
    assert s.method_hp("fgsm-at")["fgsm_eps"] == pytest.approx(0.2 * FASHION_STD, rel=1e-5)
    assert s.method_hp("fgsm-at-03")["fgsm_eps"] == pytest.approx(0.3 * FASHION_STD, rel=1e-5)
    assert s.method_hp("adv-backprop")["fgsm_eps"] == pytest.approx(0.1 * FASHION_STD, rel=1e-5)


def test_normalised_and_equal_pixel_radii_train_the_same_run(tmp_path):
    """The identity holds the pixel radius: 0.2 normalised and 0.0706 pixels are one run, and
    differ from 0.2 pixels."""
    ids = []
    for units, eps in (("normalized", 0.2), ("pixel", to_pixels(0.2, "normalized", "fashion-mnist")),
                       ("pixel", 0.2)):
        s = parse(_smoke(units, fgsm_eps=eps))
        train, test = s.data.split("train"), s.data.split("test")
        run = defense_run(s, "fgsm-at", 0, tmp_path, train, test,
                          model_spec_for(s.data.dataset, train.shape, train.num_classes))
        ids.append(run.identity)
    assert ids[0] == ids[1] and ids[0] != ids[2]
    assert ids[0]["hp"]["fgsm_eps"] == pytest.approx(0.0706, rel=1e-5)


def test_every_registered_epsilon_hyperparameter_is_converted():
    """A defense whose hp key ends in _eps must have it converted (DISTANCE_HP or the class's
    ``distance_hyperparameters``): otherwise a normalised preset would train it in pixels."""
    for name in DEFENSES.names():
        cls = defense_class(name)
        eps_keys = sorted(k for k in hp_keys(cls) if k.endswith("_eps"))
        assert list(distance_hp(cls, eps_keys)) == eps_keys, (name, eps_keys, DISTANCE_HP)


def test_a_user_class_can_declare_its_own_distances():
    class Mine:
        distance_hyperparameters = ("my_radius",)

    assert distance_hp(Mine, ["my_radius", "lam", "fgsm_eps"]) == ("my_radius", "fgsm_eps")
