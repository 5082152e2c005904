"""``great-bench tune`` (issue 30 item 3): Ray Tune + ASHA on the validation split only; one row
per trial; a diverging trial is recorded as failed; a rerun resumes; bad input refused early."""
from __future__ import annotations

import csv
import json
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.config.presets import load_preset
from core.errors import BenchError
from bench.tune import (Dimension, TuneRequest, best_row, best_toml, check_request, objective,
                        parse_dimension, pgd_accuracy, trial_settings, variant_line)

SMALL = ("data.train_subset=64", "data.val_subset=32", "data.batch_size=32")


def _req(**kw):
    base = dict(name="t", preset="smoke", defense="great", space=("alpha_max=log:0.01:1",), trials=2,
                overrides=SMALL, epochs=1)
    return TuneRequest(**{**base, **kw})


# ---------------------------------------------------------------- search space and objective

def test_dimensions_parse_to_ray_samplers():
    pytest.importorskip("ray.tune")
    keys = ["alpha_max", "beta_max", "lr"]
    assert parse_dimension("alpha_max=log:0.01:1", keys) == Dimension("alpha_max", "log", (0.01, 1.0))
    assert parse_dimension("lr=lin:0.001:0.01", keys).values == (0.001, 0.01)
    assert parse_dimension("beta_max=list:0.1,0.5,1", keys).values == (0.1, 0.5, 1)
    lo, hi = parse_dimension("alpha_max=log:0.01:1", keys).ray().lower, 1
    assert lo == 0.01 and parse_dimension("alpha_max=log:0.01:1", keys).ray().upper == hi
    assert sorted(parse_dimension("beta_max=list:0.1,0.5", keys).ray().categories) == [0.1, 0.5]


@pytest.mark.parametrize("text, match", [
    ("alpha_mx=log:0.01:1", "did you mean.*alpha_max"),
    ("alpha_max=log:1:0.01", "low end 1 is above the high end 0.01"),
    ("alpha_max=log:0:1", "log range needs a low end > 0"),
    ("alpha_max=cube:0:1", "unknown scale"),
    ("alpha_max=lin:0", "two numbers"),
    ("alpha_max=list:", "list is empty"),
    ("alpha_max", "must look like"),
])
def test_bad_dimensions_are_refused(text, match):
    with pytest.raises(BenchError, match=match):
        parse_dimension(text, ["alpha_max", "beta_max"])


def test_objective_is_robust_accuracy_above_the_clean_floor_and_below_every_feasible_trial_under_it():
    assert objective(0.8, 0.3, 0.0) == 0.3
    assert objective(0.8, 0.3, 0.7) == 0.3
    assert objective(0.6, 0.5, 0.7) == pytest.approx(-0.4)
    assert objective(0.6, 0.5, 0.7) < objective(0.7, 0.0, 0.7)   # a floor is a floor
    assert objective(0.65, 0.5, 0.7) > objective(0.6, 0.5, 0.7)   # under it, closer is better


def test_best_row_is_the_finished_trial_with_the_highest_objective():
    rows = [{"trial": "a", "status": "finished", "objective": 0.2, "epochs_run": 2},
            {"trial": "b", "status": "stopped", "objective": 0.9, "epochs_run": 1},
            {"trial": "c", "status": "failed", "objective": "", "epochs_run": 0},
            {"trial": "d", "status": "finished", "objective": 0.4, "epochs_run": 2}]
    assert best_row(rows)["trial"] == "d"
    assert best_row(rows[1:3]) is None


def test_best_config_is_a_variant_run_accepts(tmp_path):
    from bench.config.presets import load_preset
    from bench.pipeline import resolve_config
    from bench.config.settings import parse

    row = {"trial": "x", "config": json.dumps({"alpha_max": 0.0123456789, "lr": 0.005}),
           "val_clean_acc": 0.7, "val_robust_acc": 0.3, "epochs_run": 2}
    text = best_toml(_req(), row)
    import tomllib
    block = tomllib.loads(text)["variants"]
    cfg = load_preset("smoke")
    cfg["variants"] = block
    s = parse(cfg)
    assert s.method_hp("great-tuned")["alpha_max"] == pytest.approx(0.0123457)
    line = text.splitlines()[1].split("--variant ")[1]
    assert resolve_config("smoke", variants=[line]).method_hp("great-tuned") == s.method_hp("great-tuned")
    assert variant_line("v", "great", {}) == "v=great"


def test_a_variant_is_tuned_on_its_base_defense_with_its_own_hp():
    req = _req(defense="mine", variants=("mine=great:lr=0.003",))
    hp = trial_settings(req, {"alpha_max": 0.2}).method_hp("trial")
    assert hp["alpha_max"] == 0.2 and hp["lr"] == 0.003


def test_a_users_defense_is_tuned_by_the_same_command(tiny_data_dir):
    """README, "Add your own defense": a ``module:Class`` defense takes the same request, its
    declared hyper-parameters are the space's valid keys, and a trial's config reaches it."""
    req = _req(defense="tests.custom_defenses:ScaledLoss", space=("loss_scale=lin:0.5:2",))
    _, dims = check_request(req, str(tiny_data_dir))
    assert [d.key for d in dims] == ["loss_scale"]
    assert trial_settings(req, {"loss_scale": 1.5}).method_hp("trial")["loss_scale"] == 1.5
    with pytest.raises(BenchError, match="did you mean.*loss_scale"):
        check_request(_req(defense="tests.custom_defenses:ScaledLoss", space=("loss_scal=lin:0.5:2",)),
                      str(tiny_data_dir))


# ---------------------------------------------------------------- the validation split only

def test_tuning_never_loads_the_test_split(monkeypatch, tiny_data_dir, one_thread):
    """check_request and a whole trial (training + PGD scoring) in process, with the loader
    refusing the test split: the study reads training examples only."""
    pytest.importorskip("ray.tune")
    import ray.tune

    import bench.splits as splits
    real = splits.load_dataset
    seen = []

    def guarded(name, which, **kw):
        seen.append(which)
        if which != "train":
            raise AssertionError(f"tuning loaded the {which} split")
        return real(name, which, **kw)

    monkeypatch.setattr(splits, "load_dataset", guarded)
    reports = []
    monkeypatch.setattr(ray.tune, "report", lambda m: reports.append(m))
    from bench.tune import _trainable
    req = _req(epochs=2)
    check_request(req, str(tiny_data_dir))
    _trainable({"trial": 0}, req, str(tiny_data_dir), [{"alpha_max": 0.1}])
    assert set(seen) == {"train"} and [r["epochs_run"] for r in reports] == [1, 2]
    assert all(0 <= r["val_robust_acc"] <= r["val_clean_acc"] <= 1 for r in reports)


def test_the_validation_robust_accuracy_is_an_attack(tiny_data_dir, one_thread):
    """PGD at eps > 0 lowers accuracy against clean; eps = 0 leaves it; it is scored on val."""
    from bench.defense_track import model_spec_for
    from bench.models import build_model

    s = trial_settings(_req(), {})
    val = s.data.split("val", data_dir=tiny_data_dir)
    torch.manual_seed(0)
    model = build_model(s.model.name, model_spec_for(s.data.dataset, val.shape, val.num_classes))
    clean, robust = pgd_accuracy(model, val, 0.3, seed=0)
    assert robust < clean
    assert pgd_accuracy(model, val, 0.0, seed=0) == (clean, clean)


# ---------------------------------------------------------------- bad input: message, exit 2, nothing written

@pytest.mark.parametrize("args, match", [
    (["--space", "alpha_mx=log:0.01:1"], "did you mean.*alpha_max"),
    (["--space", "alpha_max=lin:1:0.1"], "above the high end"),
    (["--space", "alpha_max=log:0.01:1", "--trials", "0"], "trial budget is a positive integer"),
    (["--space", "alpha_max=log:0.01:1", "--val-subset", "200"], "overlaps the training examples"),
    (["--space", "alpha_max=log:0.01:1", "--val-subset", "256", "--set", "data.train_subset=1"],
     "at least one must remain"),
    (["--space", "alpha_max=log:0.01:1", "--set", "data.val_subset=0"], "data.val_subset"),
    (["--space", "alpha_max=log:0.01:1", "--defense", "grat"], "grat"),
    (["--space", "alpha_max=log:0.01:1", "--min-clean", "1.5"], "min-clean"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, tiny_data_dir, capsys, args, match):
    base = ["tune", "--preset", "smoke", "--defense", "great", "--trials", "2", "--name", "bad",
            "--val-subset", "32", "--data-dir", str(tiny_data_dir),
            "--results", str(tmp_path / "results"), "--out", str(tmp_path / "runs")]
    assert main(base + args) == 2
    import re
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_no_validation_split_is_refused(tmp_path, tiny_data_dir, capsys):
    assert main(["tune", "--preset", "smoke", "--defense", "great", "--trials", "2", "--name", "x",
                 "--space", "alpha_max=log:0.01:1", "--results", str(tmp_path / "r"),
                 "--out", str(tmp_path / "o"), "--data-dir", str(tiny_data_dir)]) == 2
    assert "validation split" in capsys.readouterr().err and not (tmp_path / "r").exists()


# ---------------------------------------------------------------- a real Ray study: failed trial and resume

def test_a_study_records_a_diverging_trial_as_failed_and_resumes(tmp_path, tiny_data_dir):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    cmd = ["tune", "--preset", "smoke", "--defense", "great", "--space", "alpha_max=log:0.01:1",
           "--space", "lr=list:0.001,1e30", "--trials", "3", "--name", "study", "--epochs", "1",
           *[a for o in SMALL for a in ("--set", o)], "--device", "cpu", "--quiet",
           "--data-dir", str(tiny_data_dir), "--results", str(tmp_path / "results"), "--out", str(tmp_path / "runs")]
    try:
        assert main(cmd) == 0
        path = tmp_path / "results" / "study" / "tuning.csv"
        rows = list(csv.DictReader(open(path)))
        assert len(rows) == 3
        status = {json.loads(r["config"])["lr"]: r["status"] for r in rows}
        assert status == {1e30: "failed", 0.001: "finished"}, rows   # seed 0 draws both
        failed = [r for r in rows if r["status"] == "failed"]
        assert all("non-finite" in r["error"] and json.loads(r["config"])["alpha_max"] > 0 for r in failed)
        ok = [r for r in rows if r["status"] == "finished"]
        assert all(r["epochs_run"] == "1" and 0 <= float(r["val_robust_acc"]) <= float(r["val_clean_acc"])
                   for r in ok)
        best = (tmp_path / "results" / "study" / "best.toml").read_text()
        assert "[variants.great-tuned]" in best and "lr = 0.001" in best
        trial_dirs = sorted((tmp_path / "runs" / "tune" / "study").glob("_trainable_*/result.json"))
        stamps = [p.read_text() for p in trial_dirs]   # each holds its reports' timestamps
        assert main(cmd) == 0   # the rerun resumes the study: no trial trains again
        assert list(csv.DictReader(open(path))) == rows
        assert len(trial_dirs) == 3 and [p.read_text() for p in trial_dirs] == stamps
        other = [c if c != "3" else "4" for c in cmd]
        assert main(other) == 2   # another request under the same name is refused
        # An interrupted study: the last finished trial lost its row. The rerun trains that trial
        # alone, from great-bench's own files: Ray's pickled state is never restored.
        import ray.tune as rtune

        def refuse(*a, **k):
            raise AssertionError("Ray's pickled experiment state was read back")
        lost = max(int(r["trial"]) for r in rows if r["status"] == "finished")
        path.write_text("".join(line for line in open(path) if not line.startswith(f"{lost:05d},")))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(rtune.Tuner, "restore", refuse)
            mp.setattr(rtune.Tuner, "can_restore", refuse)
            assert main(cmd) == 0
        again = list(csv.DictReader(open(path)))
        assert [r for r in again if int(r["trial"]) != lost] == [r for r in rows if int(r["trial"]) != lost]
        redone = [r for r in again if int(r["trial"]) == lost]
        assert redone[0]["status"] == "finished" and redone[0]["config"] == rows[lost]["config"]
        assert len(sorted((tmp_path / "runs" / "tune" / "study").glob("_trainable_*/result.json"))) == 4
    finally:
        if ray.is_initialized():
            ray.shutdown()


def test_study3_uses_the_committed_tuning_results():
    """The third edition's [defense_hp.*] are the winners in results/tune-<name>/best.toml,
    so the study cannot silently drift from what tuning found."""
    preset = load_preset("study-3")
    root = Path(__file__).resolve().parent.parent / "results"
    for name in ("great", "great-ce", "greace"):
        best = tomllib.loads((root / f"tune-{name}" / "best.toml").read_text())["variants"][f"{name}-tuned"]
        assert best["defense"] == name
        assert preset["defense_hp"][name] == best["hp"], name
