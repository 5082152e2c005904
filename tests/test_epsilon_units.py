"""Epsilon in the paper's normalised units (issue 22): the conversion against its closed form
per dataset, a normalised preset's sweep resolved to pixels once, the units carried into the
rows (old CSVs still load as pixel), both values in every caption, and ``great-bench list``."""
from __future__ import annotations

import json
import csv

import pytest
import torch
import torch.nn as nn

from bench.eval.evaluate import evaluate
from bench.eval.schema import LATER_FIELDS, ROW_FIELDS, pack_mask, upgrade_rows
from bench.eval.subjects import EvalSet, Subject
from bench.cli import main
from bench.config.epsilon_units import epsilon_phrase, pixel_sweep, to_normalized, to_pixels
from core.errors import BenchError
from bench.config.eval_settings import sweep_specs
from bench.pipeline import resolve_config
from bench.report.tables import build_tables, caption
from bench.csv_files import read_rows

# The published statistics, typed here independently of the registry (bench.data.DATASETS):
# a wrong std there, or the mean used for the std, fails the closed forms below.
STD = {"fashion-mnist": (0.3530,), "mnist": (0.3081,), "cifar10": (0.2470, 0.2435, 0.2616),
       "svhn": (0.1980, 0.2010, 0.1970)}


@pytest.mark.parametrize("dataset", sorted(STD))
def test_normalised_epsilon_is_e_times_the_smallest_std_in_pixels(dataset):
    """Closed form: pixel = e * min(std); back again: pixel / min(std)."""
    std = min(STD[dataset])
    for e in (0.02, 0.1, 0.3):
        assert to_pixels(e, "normalized", dataset) == pytest.approx(e * std, rel=1e-5)
        assert to_normalized(e * std, dataset) == pytest.approx(e, rel=1e-9)
    assert to_pixels(0.1, "pixel", dataset) == 0.1


def test_fashion_mnist_numbers_of_the_issue():
    """0.1 normalised is 0.0353 in pixels; 0.1 in pixels is 0.283 normalised."""
    assert to_pixels(0.1, "normalized", "fashion-mnist") == 0.0353
    assert to_normalized(0.1, "fashion-mnist") == pytest.approx(0.28329, abs=1e-5)


def test_multichannel_pixel_ball_lies_inside_the_normalised_ball_of_every_channel():
    """The smallest std makes the pixel Linf/L2 ball a subset of the paper's, channel by channel."""
    for dataset in ("cifar10", "svhn"):
        e = to_pixels(0.1, "normalized", dataset)
        assert all(e <= 0.1 * s + 1e-12 for s in STD[dataset])
        assert e == pytest.approx(0.1 * min(STD[dataset]), rel=1e-5)  # and not smaller than it must be


def test_units_are_checked():
    with pytest.raises(BenchError, match="epsilon_units.*'pixel', 'normalized'"):
        to_pixels(0.1, "normalised", "mnist")
    with pytest.raises(BenchError, match="epsilon_units.*expected one of"):
        resolve_config("smoke", ["eval.epsilon_units='pixels'"])


def _specs(overrides):
    s = resolve_config("smoke", overrides)
    return s, {sp.key(): sp for sp in sweep_specs(s.eval.sweep, s.eval.epsilon_units)}


def test_a_normalised_preset_resolves_once_to_pixels_and_its_specs_say_so():
    s, specs = _specs(["eval.epsilon_units='normalized'", "eval.large_epsilon=1.0", "eval.cw_radius=2.0"])
    assert s.eval.epsilon_units == "normalized"
    assert s.eval.epsilon == pytest.approx(0.1 * 0.3530)
    assert s.eval.large_epsilon == pytest.approx(0.3530) and s.eval.cw_radius == pytest.approx(0.7060)
    fgsm = sorted(sp.eps for sp in specs.values() if sp.name == "fgsm")
    assert fgsm == pytest.approx([0.0353] * 3 + [0.1059] * 3)        # smoke: fgsm eps 0.1|0.3, three modes
    ifgsm = sorted((sp.eps, sp.step_size) for sp in specs.values() if sp.name == "ifgsm")
    assert [e for e, _ in ifgsm] == pytest.approx([0.0353, 0.1765])       # smoke: ifgsm eps 0.1|0.5
    assert [k for _, k in ifgsm] == pytest.approx([0.00353, 0.01765])     # step eps/10 of the pixel value
    assert {sp.units for sp in specs.values()} == {"normalized"}
    # rows stay comparable: the same attack typed in pixels has the same key
    _, pixel = _specs(["eval.sweep=['fgsm:eps=0.0353|0.1059,mode=untargeted|random|worst', "
                       "'ifgsm:eps=0.0353|0.1765', 'none']"])
    assert set(pixel) == set(specs)
    assert {sp.units for sp in pixel.values()} == {"pixel"}


def test_a_pixel_preset_is_left_as_it_was():
    s, specs = _specs([])
    assert s.eval.epsilon == 0.1 and s.eval.epsilon_units == "pixel"
    assert s.eval.sweep == ("none", "fgsm:eps=0.1|0.3,mode=untargeted|random|worst", "ifgsm:eps=0.1|0.5")


def test_step_is_converted_and_attack_specific_parameters_are_not():
    out = pixel_sweep(["ifgsm:eps=0.1,step=0.02,n=50", "l2min:eps=1|2,cw_steps=20,fmn-warm_init_eps=3", "none"],
                      "normalized", "fashion-mnist")
    assert out == ("ifgsm:eps=0.0353,step=0.00706,n=50", "l2min:eps=0.353|0.706,cw_steps=20,fmn-warm_init_eps=3",
                   "none")


def test_a_normalised_sweep_entry_without_eps_is_refused():
    """The registry's default epsilon is a pixel value: in a normalised preset it must be written."""
    with pytest.raises(BenchError, match="'fgsm' has no eps=|'fgsm'.*no eps="):
        resolve_config("smoke", ["eval.epsilon_units='normalized'", "eval.sweep=['none', 'fgsm']"])
    with pytest.raises(BenchError, match=r"eval.epsilon \(in pixels\)"):  # 3 / 0.353 > 1 pixel
        resolve_config("smoke", ["eval.epsilon_units='normalized'", "eval.epsilon=3.0"])


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


def test_rows_record_the_units_and_old_csvs_load_as_pixel(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = EvalSet(torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g), 4, "toy")
    out = tmp_path / "rob.csv"
    rows = evaluate([Subject(_net(), "net", 0, "toy", "0" * 64)], data,
                    sweep_specs(["none", "fgsm:eps=0.0353"], "normalized"), out)
    assert [r["epsilon_units"] for r in read_rows(out)] == ["normalized", "normalized"]
    assert float(rows[1]["epsilon"]) == 0.0353  # pixels in the epsilon column, as always
    # a CSV written before the column existed: loads, every row "pixel", and merges new rows
    old = tmp_path / "old.csv"
    fields = [f for f in ROW_FIELDS if f not in LATER_FIELDS]
    with old.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerow({k: rows[1][k] for k in fields})
    assert "epsilon_units" in LATER_FIELDS
    upgraded = upgrade_rows(old, read_rows(old))
    assert upgraded[0]["epsilon_units"] == "pixel" and set(upgraded[0]) == set(ROW_FIELDS)
    merged = evaluate([Subject(_net(), "net", 0, "toy", "0" * 64)], data, sweep_specs(["none"]), old)
    assert {r["epsilon_units"] for r in merged} == {"pixel"} and len(merged) == 2


def _row(eps, units, attack="fgsm", dataset="fashion-mnist"):
    return {k: "" for k in ROW_FIELDS} | {
        "dataset": dataset, "defense": "baseline", "seed": 0, "attack": attack, "norm": "Linf", "epsilon": eps,
        "mode": "untargeted", "accuracy": 0.5, "n": 10, "correct_mask": pack_mask(torch.arange(10) < 5),
        "epsilon_units": units}


def test_captions_give_both_values():
    pixel = caption(build_tables([_row(0.0, "pixel", "none"), _row(0.1, "pixel")], 0.1)[0])
    assert "epsilon = 0.1 (Linf, pixel units; = 0.283 in the paper's normalised units, std 0.353)" in pixel
    normalised = caption(build_tables([_row(0.0, "pixel", "none"), _row(0.0353, "normalized")], 0.0353)[0])
    assert "epsilon = 0.1 (Linf, the paper's normalised units, std 0.353; = 0.0353 in pixel units)" in normalised
    # rows from before the column: pixel units, and still both values
    old = [{k: v for k, v in _row(0.1, "").items() if k != "epsilon_units"}]
    assert "pixel units; = 0.283 in the paper's normalised units" in caption(build_tables(old, 0.1)[0])
    cifar = caption(build_tables([_row(0.02435, "normalized", dataset="cifar10")], 0.02435)[0])
    assert ("epsilon = 0.1 (Linf, the paper's normalised units, std 0.2435 (smallest channel); = 0.02435 in pixel "
            "units)") in cifar
    assert "no registered std" in epsilon_phrase(0.1, "pixel", "toy")


def test_list_prints_the_models_each_datasets_std_and_the_presets_units(capsys):
    assert main(["list", "--preset", "smoke", "--set", "eval.epsilon_units='normalized'"]) == 0
    out = capsys.readouterr().out
    assert "small-resnet" in out and "small-cnn" in out
    assert "fashion-mnist    1x28x28, mean 0.286, std 0.353; normalised 0.1 = 0.0353 pixels" in out
    assert "cifar10" in out and "normalised 0.1 = 0.02435 pixels" in out
    assert ("epsilon (smoke): eval.epsilon_units = 'normalized'; eval.epsilon = 0.1 (Linf, the paper's "
            "normalised units, std 0.353; = 0.0353 in pixel units)") in out


def test_the_caption_says_how_many_targets_apgd_t_took():
    """Issue 27: the quick preset runs APGD-T on the 3 most likely other classes; the caption
    reads that from the rows' parameters, not from the preset."""
    def apgd(k):
        return _row(0.1, "pixel", "apgd") | {"params": json.dumps({"dlr_targets": k})}

    assert "APGD-T against the 3 most likely other classes" in caption(build_tables([apgd(3)], 0.1)[0])
    assert "APGD-T against the 9 most likely" in caption(build_tables([apgd(9)], 0.1)[0])
    assert "untargeted APGD-DLR" in caption(build_tables([apgd(0)], 0.1)[0])
