"""Run integrity (issue 10): stale checkpoints are never reused, typos are refused, concurrent
writers keep every row, and variants are runs of their own."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from core.atomic import write_text
from core.errors import BenchError
from bench.pipeline import resolve_config, train_all
from bench.defense_track import train_defense
import concurrent_writer
from bench.csv_files import read_rows
from bench.run import Run
from bench.config.settings import Variant, parse_variant_arg

TINY = ["data.train_subset=64", "data.test_subset=32", "train.epochs=1", "eval.n_test=32"]


def tiny(*overrides: str, preset: str = "smoke") -> dict:
    return resolve_config(preset, [*TINY, *overrides])


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


# ---------------------------------------------------------------- one run identity

def test_stale_checkpoint_is_retrained_not_reused(tmp_path, capsys):
    """The issue's reproduction: `train --defense great`, then `run` with hp.alpha_max=0.1.
    Two epochs: the ramp holds alpha at 0 in the first (paper supplement), so only then
    does alpha_max change the weights."""
    first = train_defense(tiny("train.epochs=2"), "great", 0, tmp_path, quiet=True)
    sha = meta(first)["files"]["model.safetensors"]["sha256"]
    assert meta(first)["hp"]["alpha_max"] == 1.0
    # Same settings: reused, not retrained.
    assert train_all(tiny("train.epochs=2", "train.defenses=['great']"), tmp_path, quiet=True) == [first]
    assert meta(first)["files"]["model.safetensors"]["sha256"] == sha
    capsys.readouterr()
    (run,) = train_all(tiny("train.epochs=2", "hp.alpha_max=0.1", "train.defenses=['great']"), tmp_path, quiet=True)
    assert run == first
    out = capsys.readouterr().out
    assert "great/seed0: hp.alpha_max 1.0 -> 0.1; retraining" in out
    assert meta(run)["hp"]["alpha_max"] == 0.1 and meta(run)["identity"]["hp"]["alpha_max"] == 0.1
    assert meta(run)["files"]["model.safetensors"]["sha256"] != sha


def test_train_refuses_a_stale_run_with_what_changed(tmp_path):
    train_defense(tiny(), "baseline", 0, tmp_path, quiet=True)
    with pytest.raises(BenchError, match=r"baseline/seed0: epochs 1 -> 2; .*--force"):
        train_defense(tiny("train.epochs=2"), "baseline", 0, tmp_path, quiet=True)
    # Hyper-parameters the method does not read are not part of its identity.
    with pytest.raises(BenchError, match="finished run of these settings"):
        train_defense(tiny("hp.alpha_max=0.3"), "baseline", 0, tmp_path, quiet=True)
    run = train_defense(tiny("train.epochs=2"), "baseline", 0, tmp_path, force=True, quiet=True)
    assert meta(run)["epochs"] == 2


def test_run_prepare_policies(tmp_path):
    lines: list[str] = []
    run = Run(tmp_path / "r", "m/seed0", {"hp": {"a": 1}, "seed": 0})
    assert run.prepare(reuse=True, log=lines.append) == "fresh"
    with pytest.raises(BenchError, match="no saved training state"):
        Run(tmp_path / "other", "m/seed0", {}).prepare(reuse=False, resume=True)
    (run.path / "meta.json").write_text(json.dumps({"identity": run.identity, "status": "finished"}))
    assert Run(run.path, "m/seed0", {"hp": {"a": 1}, "seed": 0}).prepare(reuse=True, log=lines.append) == "reuse"
    stale = Run(run.path, "m/seed0", {"hp": {"a": 2}, "seed": 0})
    with pytest.raises(BenchError, match=r"m/seed0: hp.a 1 -> 2"):
        stale.prepare(reuse=False)
    assert stale.prepare(reuse=True, log=lines.append) == "fresh"
    assert lines == ["m/seed0: hp.a 1 -> 2; retraining"]
    assert not (run.path / "meta.json").exists()
    assert json.loads((run.path / "identity.json").read_text()) == stale.identity


def test_code_version_is_part_of_the_identity(tmp_path, monkeypatch):
    from defenses.baseline import Baseline

    run = train_defense(tiny(), "baseline", 0, tmp_path, quiet=True)
    monkeypatch.setattr(Baseline, "version", "2")
    with pytest.raises(BenchError, match=r"baseline/seed0: code \w+ -> \w+"):
        train_defense(tiny(), "baseline", 0, tmp_path, quiet=True)
    assert run.exists()


# ---------------------------------------------------------------- typed settings

@pytest.mark.parametrize("override, message", [
    ("hp.alpah_max=0.5", r"unknown key hp.alpah_max; did you mean hp.alpha_max\?"),
    ("nosuch.key=1", r"unknown section nosuch"),
    ("trian.epochs=1", r"unknown section trian; did you mean train\?"),
    ("data.batch_sise=3", r"unknown key data.batch_sise; did you mean data.batch_size\?"),
    ("eval.n_tset=3", r"unknown key eval.n_tset; did you mean eval.n_test\?"),
    ("defense_hp.great.alpah_max=1", r"unknown key defense_hp.great.alpah_max; did you mean defense_hp.great.alpha_max\?"),
    ("defense_hp.graet.alpha_max=1", r"unknown section defense_hp.graet; did you mean great\?"),
    ("distill.great_alpah=0.1", r"unknown key distill.great_alpah; did you mean distill.great_alpha\?"),
    ("multitask.gradnorm_alfa=1", r"unknown key multitask.gradnorm_alfa; did you mean multitask.gradnorm_alpha\?"),
    ("train.seeds=true", r"train.seeds = True is invalid"),
    ("distill.seeds=[true]", r"distill.seeds = \[True\] is invalid"),
    ("multitask.seeds=[-1]", r"multitask.seeds = \[-1\] is invalid"),
    # issue 29: checked at parse time, not inside each job (nor written unchecked into an export)
    ("model.name=small-cnnn", r"unknown model 'small-cnnn'; did you mean small-cnn\?"),
    # issue 29: a value where a table belongs is a clear error, not an AttributeError
    ("hp=3", r"\[hp\] = 3 is invalid: expected a table"),
    ("defense_hp=1", r"\[defense_hp\] = 1 is invalid: expected a table"),
    ("defense_hp.great=2", r"defense_hp.great = 2 is invalid: expected a table"),
])
def test_typo_in_set_is_refused_with_the_nearest_name(override, message):
    with pytest.raises(BenchError, match=message):
        resolve_config("smoke", [override])


def test_typo_in_a_preset_file_is_refused(tmp_path):
    text = (Path(__file__).parent.parent / "bench" / "presets" / "smoke.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace("alpha_max = 1.0", "alpha_mx = 1.0"))
    with pytest.raises(BenchError, match=r"unknown key hp.alpha_mx; did you mean hp.alpha_max\?"):
        resolve_config(str(path))
    path.write_text(text.replace("[eval]", "[evaluate]"))
    with pytest.raises(BenchError, match=r"unknown section evaluate; did you mean eval\?"):
        resolve_config(str(path))


def test_defense_specific_and_user_hyperparameters_stay_valid():
    s = tiny("defense_hp.datagrad-l1.datagrad_lambda=0.02")
    assert s.method_hp("datagrad-l1")["datagrad_lambda"] == 0.02
    with pytest.raises(BenchError, match="unknown key hp.loss_scale"):
        tiny("hp.loss_scale=0.5")  # no defense named in the preset reads it
    s = tiny("hp.loss_scale=0.5", "train.defenses=['custom_defenses:ScaledLoss']")
    assert s.method_hp("custom_defenses:ScaledLoss")["loss_scale"] == 0.5


# ---------------------------------------------------------------- writers that never lose data

def test_concurrent_writers_keep_every_row(tmp_path):
    path = str(tmp_path / "robustness.csv")
    ctx = mp.get_context("spawn")  # fresh interpreters, like separate `great-bench evaluate` processes
    procs = [ctx.Process(target=concurrent_writer.write, args=(path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = read_rows(path)
    assert len(rows) == 4 * 40
    assert {(r["writer"], r["i"]) for r in rows} == {(str(w), str(i)) for w in range(4) for i in range(40)}


@pytest.mark.parametrize("damage", ["cut", "extra"])
def test_a_row_with_the_wrong_field_count_is_refused_and_nothing_is_rewritten(tmp_path, damage):
    """A robustness.csv whose last row was cut mid-line (a crash, a full disk) or has a field
    too many is refused with the file and line; it is never rewritten with empty fields."""
    from bench.eval.schema import ROW_FIELDS, row_key
    from bench.csv_files import merge_rows
    path = tmp_path / "robustness.csv"
    text = ",".join(ROW_FIELDS) + "\n" + ",".join(f"v{i}" for i in range(len(ROW_FIELDS))) + "\n"
    second = ",".join(f"w{i}" for i in range(len(ROW_FIELDS)))
    text += (second[: len(second) // 2] if damage == "cut" else second + ",extra") + "\n"
    path.write_text(text)
    with pytest.raises(BenchError, match=r"robustness\.csv, line 3: .* fields where the header has") as exc:
        merge_rows(path, [], row_key, ROW_FIELDS)
    assert "Remove or repair that line" in str(exc.value)
    assert path.read_text() == text


# ---------------------------------------------------------------- named variants

VARIANT = "variants.great-a01={defense='great', hp={alpha_max=0.1}}"


def test_variants_train_into_their_own_runs_and_rows(tmp_path):
    cfg = tiny(VARIANT, "train.defenses=['great']")
    runs = train_all(cfg, tmp_path, quiet=True)
    assert [r.parent.name for r in runs] == ["great", "great-a01"]
    base, variant = (meta(r) for r in runs)
    assert (base["hp"]["alpha_max"], variant["hp"]["alpha_max"]) == (1.0, 0.1)
    assert variant["defense"] == "great-a01" and variant["base_defense"] == "great"
    from bench.eval.subjects import subject_from_run

    assert subject_from_run(runs[1]).defense == "great-a01"  # the name every row, table and plot shows


def test_variant_from_the_command_line_and_for_a_user_defense():
    assert parse_variant_arg("great-a01=great:alpha_max=0.1") == ("great-a01", {"defense": "great", "hp": {"alpha_max": 0.1}})
    assert parse_variant_arg("mine=custom_defenses:ScaledLoss:loss_scale=2") == (
        "mine", {"defense": "custom_defenses:ScaledLoss", "hp": {"loss_scale": 2}})
    assert parse_variant_arg("plain=baseline") == ("plain", {"defense": "baseline", "hp": {}})
    s = resolve_config("smoke", TINY, variants=["mine=custom_defenses:ScaledLoss:loss_scale=2"])
    assert s.method_hp("mine")["loss_scale"] == 2 and "mine" in s.defenses_to_train()


def test_jobs_run_every_seed_of_the_main_defenses_before_the_variants():
    # A study stopped early (or cut to its time budget) then has its main table complete.
    s = resolve_config("smoke", [*TINY, "train.defenses=['baseline', 'great']", "train.seeds=[0, 1]"],
                       variants=["g2=great:alpha_max=0.1"])
    assert s.jobs() == [("baseline", 0), ("great", 0), ("baseline", 1), ("great", 1), ("g2", 0), ("g2", 1)]


def test_variant_keys_are_checked_against_the_base_defense():
    with pytest.raises(BenchError, match=r"unknown key variants.x.hp.alpah_max; did you mean variants.x.hp.alpha_max\?"):
        resolve_config("smoke", variants=["x=great:alpah_max=0.1"])
    with pytest.raises(BenchError, match=r"unknown key variants.x.hp.fgsm_eps"):
        resolve_config("smoke", variants=["x=great:fgsm_eps=0.1"])  # great does not read it
    with pytest.raises(BenchError, match="already a registered defense"):
        resolve_config("smoke", variants=["great=great:alpha_max=0.1"])
    with pytest.raises(BenchError, match="unknown defense 'graet'"):
        resolve_config("smoke", variants=["x=graet"])
    with pytest.raises(BenchError, match="a variant name is letters"):
        resolve_config("smoke", variants=["a/b=great:alpha_max=0.1"])


def test_badly_typed_variant_value_is_refused_before_any_folder_is_made(tmp_path, capsys):
    """Issue 19: ``alpha_max=abc`` ended in a float() traceback and left an empty run folder."""
    from bench.cli import main

    out = tmp_path / "runs"
    code = main(["train", "--preset", "smoke", "--variant", "x=great:alpha_max=abc", "--defense", "x",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "variants.x.hp.alpha_max = 'abc' is invalid: expected a number" in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("override, message", [
    ("hp.alpha_max='1'", r"hp.alpha_max = '1' is invalid: expected a number"),
    ("hp.lr=fast", r"hp.lr = 'fast' is invalid: expected a number"),
    ("hp.detach_confidence=1", r"hp.detach_confidence = 1 is invalid: expected true or false"),
    ("hp.aux_input_scale=2", r"hp.aux_input_scale = 2 is invalid: expected a string"),
    ("defense_hp.great-ce.beta_max=true", r"defense_hp.great-ce.beta_max = True is invalid: expected a number"),
    ("multitask.gal_min=small", r"multitask.gal_min = 'small' is invalid: expected a number"),
])
def test_hyperparameter_values_are_checked_against_their_kind(override, message):
    with pytest.raises(BenchError, match=message):
        resolve_config("smoke", [override])
    resolve_config("smoke", ["hp.detach_confidence=true", "hp.aux_input_scale='none'", "hp.aux_model='cnn5'"])


def test_list_shows_a_presets_variants(capsys):
    from bench.cli import main

    assert main(["list", "--preset", "smoke", "--variant", "great-a01=great:alpha_max=0.1"]) == 0
    assert "great-a01 = great with alpha_max=0.1" in capsys.readouterr().out


def test_two_names_with_equal_checkpoints_keep_a_row_each(tmp_path):
    """A variant whose weights equal its base's (e.g. alpha ramped to 0 in a one-epoch run)
    is still its own row: the row key holds the defense's name, not only the checkpoint."""
    import torch

    from bench.eval.evaluate import evaluate
    from bench.eval.subjects import EvalSet, Subject
    from attacks.registry import sweep

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    data = EvalSet(torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,)), 3, "toy")
    subjects = [Subject(model, name, 0, "toy", "f" * 64) for name in ("great", "great-a01")]
    rows = evaluate(subjects, data, sweep(["none", "fgsm:eps=0.1"]), tmp_path / "r.csv")
    assert sorted((r["defense"], r["attack"]) for r in rows) == [
        ("great", "fgsm"), ("great", "none"), ("great-a01", "fgsm"), ("great-a01", "none")]
    assert len(read_rows(tmp_path / "r.csv")) == 4


def test_multitask_track_retrains_only_the_stale_method(tmp_path, capsys):
    from bench.multitask.track import run_multitask

    sets = ["multitask.methods=['equal', 'gradnorm']", "multitask.train_subset=64", "multitask.test_subset=32"]
    run_multitask(tiny(*sets), out=tmp_path / "runs", results=tmp_path / "res", quiet=True)
    equal, gradnorm = (tmp_path / "runs" / "multitask" / "fashion-mnist" / m / "seed0" / "meta.json"
                       for m in ("equal", "gradnorm"))
    stamps = equal.stat().st_mtime_ns, gradnorm.stat().st_mtime_ns
    capsys.readouterr()
    run_multitask(tiny(*sets, "multitask.gradnorm_alpha=0.6"), out=tmp_path / "runs", results=tmp_path / "res", quiet=True)
    assert "multitask gradnorm/seed0: hp.gradnorm_alpha 1.5 -> 0.6; retraining" in capsys.readouterr().out
    assert equal.stat().st_mtime_ns == stamps[0] and gradnorm.stat().st_mtime_ns != stamps[1]
    assert json.loads(gradnorm.read_text())["hp"]["gradnorm_alpha"] == 0.6


def test_distill_track_retrains_only_the_stale_students(tmp_path):
    from bench.distill.track import run_track

    sets = ["distill.methods=['baseline', 'great']", "distill.train_subset=64", "distill.n_eval=16"]
    lines: list[str] = []
    run_track(tiny(*sets), runs_root=tmp_path, results_dir=None, quiet=True, log=lambda s: None)
    metas = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("meta.json")}
    assert len(metas) == 5  # teacher + 2 methods x 2 regimes
    run_track(tiny(*sets, "distill.great_alpha=0.2"), runs_root=tmp_path, results_dir=None, quiet=True,
              log=lines.append)
    changed = sorted(p.parent.parent.name + "/" + p.parent.parent.parent.name
                     for p, t in metas.items() if p.stat().st_mtime_ns != t)
    assert changed == ["great/dense", "great/sparse"]
    assert sum("great/seed0: hp.great_alpha 0.1 -> 0.2; retraining" in line for line in lines) == 2, lines


def test_run_takes_epochs_and_seeds_like_train(monkeypatch):
    from bench.cli import build_parser
    import bench.commands.train as commands

    seen = {}
    monkeypatch.setattr(commands, "benchmark", lambda cfg, **kw: seen.update(cfg=cfg))
    args = build_parser().parse_args(["run", "--preset", "smoke", "--epochs", "3", "--seeds", "1", "2",
                                      "--variant", "g=great:alpha_max=0.2"])
    assert args.func(args) == 0
    assert seen["cfg"].train.epochs == 3 and seen["cfg"].train.seeds == (1, 2)
    assert seen["cfg"].variants["g"] == Variant("g", "great", {"alpha_max": 0.2})
    args = build_parser().parse_args(["run", "--preset", "smoke", "--seed", "4"])
    assert args.func(args) == 0 and seen["cfg"].train.seeds == (4,)


def test_resume_with_no_saved_state_says_so(tmp_path, capsys):
    from bench.cli import main

    assert main(["train", "--preset", "smoke", "--defense", "baseline", "--quiet", "--resume",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot resume" in err[0] and "no saved training state" in err[0]


def test_atomic_writes_get_the_permissions_of_a_normal_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "shared.html", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.html").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600


def test_one_run_folder_layout_with_one_escaping_rule():
    from bench.run import run_path

    assert run_path("r", "", "fashion-mnist", "custom_defenses:ScaledLoss", seed=0) == \
        Path("r/fashion-mnist/custom_defenses_ScaledLoss/seed0")
    assert run_path("r", "multitask", "svhn", "my_mod:Weights", seed=2) == Path("r/multitask/svhn/my_mod_Weights/seed2")
    assert run_path("r", "distill", "cifar10", "cnn5+resnet18", "sparse", "kd", seed=1) == \
        Path("r/distill/cifar10/cnn5+resnet18/sparse/kd/seed1")
    assert run_path("r", "distill", "cifar10", "teacher-a/b-1") == Path("r/distill/cifar10/teacher-a_b-1")


def test_evaluation_takes_the_test_split_from_the_recorded_identity_not_the_config(tmp_path):
    """Issue 19: the config dict in meta.json is a record, not a file format evaluation reads."""
    from bench.eval.subjects import eval_set_for, recorded_data, subject_from_run
    from bench.pipeline import evaluate_runs
    from bench.splits import DataSettings
    from bench.config.eval_settings import sweep_specs
    import torch

    s = tiny("data.subset_seed=3")
    run = train_defense(s, "baseline", 0, tmp_path, quiet=True)
    meta = json.loads((run / "meta.json").read_text())
    del meta["config"]
    (run / "meta.json").write_text(json.dumps(meta))
    subject = subject_from_run(run)
    assert recorded_data(subject) == DataSettings("fashion-mnist", s.data.batch_size, 64, 32, 3, s.data.augmentation)
    data = eval_set_for(recorded_data(subject), 8)
    test = s.data.split("test")
    assert torch.equal(data.y, test.labels[:8])
    rows, _ = evaluate_runs([run], sweep_specs(["none"]), tmp_path / "r.csv", s.eval, quiet=True)
    assert len(rows) == 1 and int(rows[0]["n"]) == 32
