"""The distillation track end to end on tiny data: regimes, shared subsets, reuse, reports,
teacher validation, bad input through the CLI, and the ImageFolder (mini-ImageNet) path."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.checkpoint import save_weights
from bench.cli import main
from bench.config.presets import apply_overrides, load_preset
from bench.config.settings import parse
from bench.distill.imagefolder import load_image_folder
from bench.distill.track import run_track, sparse_subset
from core.errors import BenchError
from bench.models import MODELS, ModelSpec, build_model
from bench.splits import load_splits

FAST = ["distill.methods=['baseline', 'kd']", "distill.epochs=1", "distill.sparse_epochs=1",
        "distill.teacher_epochs=1", "distill.sparse_fraction=0.05", "train.device='cpu'", "eval.n_test=32"]


def cfg_with(*overrides):
    return parse(apply_overrides(load_preset("smoke"), [*FAST, *overrides]))


@pytest.fixture(scope="module")
def track_run(tmp_path_factory, tiny_data_dir):
    """One smoke-sized run of the track: two seeds, baseline and kd, dense and 5% sparse."""
    import bench.data as data

    out = tmp_path_factory.mktemp("distill")
    cfg = cfg_with("distill.seeds=[0, 1]")
    with pytest.MonkeyPatch.context() as mp:  # the module fixture runs outside the autouse one
        mp.setattr(data, "DEFAULT_DATA_DIR", tiny_data_dir)
        mp.setattr(data, "_CACHE", {})
        rows = run_track(cfg, runs_root=out / "runs", results_dir=out / "results", quiet=True, log=lambda s: None)
        train, _ = load_splits(cfg.data, torch.device("cpu"), None)
    return cfg, out, rows, train


def student_metas(out: Path, regime: str):
    return {p.parent.parent.name + "/" + p.parent.name: json.loads(p.read_text())
            for p in (out / "runs" / "distill").glob(f"*/*/{regime}/*/seed*/meta.json")}


def test_sparse_regime_uses_five_percent_and_the_same_subset_for_every_method(track_run):
    cfg, out, rows, train = track_run
    expected = sparse_subset(train, 0.05, seed=0)
    assert len(expected) == round(0.05 * len(train)) == 13
    sparse = student_metas(out, "sparse")
    dense = student_metas(out, "dense")
    assert set(sparse) == set(dense) == {"baseline/seed0", "baseline/seed1", "kd/seed0", "kd/seed1"}
    assert {m["n_train"] for m in sparse.values()} == {13}
    assert {m["dataset_fingerprint"] for m in sparse.values()} == {expected.fingerprint()}
    assert {m["dataset_fingerprint"] for m in dense.values()} == {train.fingerprint()}
    assert {m["n_train"] for m in dense.values()} == {len(train)}
    # Every student learnt from the same cached teacher.
    assert len({m["teacher_sha256"] for m in {**sparse, **dense}.values()}) == 1


def test_reports_are_tidy_rows_and_a_table3_view(track_run):
    cfg, out, rows, _ = track_run
    with open(out / "results" / "distillation.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 2 * 2 * 2  # methods x regimes x seeds
    for col in ("method", "regime", "seed", "test_acc", "teacher_acc", "student", "teacher", "seconds",
                "fgsm_acc", "ifgsm_acc"):
        assert col in table[0]
    for r in table:
        assert 0 <= float(r["ifgsm_acc"]) <= float(r["clean_acc"]) + 1e-9 <= 1 + 1e-9
    md = (out / "results" / "distillation.md").read_text()
    assert "| baseline |" in md and "| kd |" in md and "| Teacher |" in md and " ± " in md
    assert "100%" in md and "5%" in md


def test_finished_students_and_teacher_are_reused(track_run):
    cfg, out, rows, _ = track_run
    metas = sorted((out / "runs").rglob("meta.json"))
    stamps = [p.stat().st_mtime_ns for p in metas]
    again = run_track(cfg, runs_root=out / "runs", results_dir=None, quiet=True, log=lambda s: None)
    assert [p.stat().st_mtime_ns for p in metas] == stamps
    assert [r["test_acc"] for r in again] == [r["test_acc"] for r in rows]


def fake_teacher(folder: Path, model: str, *, dataset="fashion-mnist", num_classes=10, weights_of=None) -> Path:
    """A finished run directory with the given metadata (weights of ``weights_of`` or ``model``)."""
    spec = ModelSpec(1, 28, num_classes, (0.286,), (0.353,))
    sha = save_weights(build_model(weights_of or model, spec), folder / "model.safetensors")
    meta = {"status": "finished", "model": model, "dataset": dataset, "model_spec": spec.__dict__,
            "files": {"model.safetensors": {"sha256": sha}}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("kind, match", [
    ("architecture", "is a 'small-cnn' network, but the preset's teacher is 'cnn5'"),
    ("dataset", "trained on 'mnist'"),
    ("classes", "predicts 5 classes but the student data has 10"),
    ("weights", "do not fit"),
    ("missing", "is not a directory"),
])
def test_bad_teacher_checkpoint_is_a_clear_error_and_nonzero_exit(tmp_path, capsys, kind, match):
    t = tmp_path / "teacher"
    t.mkdir()
    if kind == "architecture":
        fake_teacher(t, "small-cnn")
    elif kind == "dataset":
        fake_teacher(t, "cnn5", dataset="mnist")
    elif kind == "classes":
        fake_teacher(t, "cnn5", num_classes=5)
    elif kind == "weights":
        fake_teacher(t, "cnn5", weights_of="small-cnn")
    else:
        t = tmp_path / "nowhere"
    code = main(["distill", "--preset", "smoke", "--teacher", str(t), "--out", str(tmp_path / "runs"),
                 "--results", str(tmp_path / "results"), "--quiet", *sum((["--set", o] for o in FAST), [])])
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    assert not list((tmp_path / "runs").rglob("meta.json")) if (tmp_path / "runs").exists() else True


@pytest.mark.parametrize("fraction", ["0", "-0.1", "1.5", "'half'"])
def test_sparse_fraction_outside_0_1_is_rejected_before_anything_runs(tmp_path, capsys, fraction):
    code = main(["distill", "--preset", "smoke", "--set", f"distill.sparse_fraction={fraction}",
                 "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    assert code == 2
    assert "distill.sparse_fraction" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("overrides, match", [
    (["distill.kd_alpha=1.5"], "kd_alpha"),
    (["distill.methods=['kd', 'hinton']"], "unknown distiller 'hinton'"),
    (["distill.seeds=[]"], "distill.seeds"),
    (["distill.epochs=0"], "epochs"),
])
def test_bad_distill_settings(overrides, match):
    cfg = apply_overrides(load_preset("smoke"), overrides)
    with pytest.raises(BenchError, match=match):
        parse(cfg)


def test_presets_declare_a_valid_distill_section():
    regime = lambda pair, name: next(r for r in pair.regimes if r.name == name)
    for name in ("smoke", "quick", "cifar10-paper"):
        d = parse(load_preset(name)).distill
        assert set(d.methods) == {"baseline", "kd", "great", "sobolev"}
        for p in d.pairs:
            assert regime(p, "dense").hp["great_alpha"] == 0.1
    pairs = parse(load_preset("cifar10-paper")).distill.pairs
    assert [(p.student, p.teacher.arch) for p in pairs] == [("cnn5", "resnet18"), ("resnet18", "resnext29-8x64d")]
    assert regime(pairs[1], "sparse").hp["kd_alpha"] == 0.95 and regime(pairs[0], "sparse").hp["kd_alpha"] == 0.99


def write_png_tree(root: Path, classes=("bird", "cat", "dog"), per_class=3, test_classes=None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("val", test_classes or classes)):
        for k, c in enumerate(names):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = 20 + 4 * i, 16 + 8 * k  # odd sizes: everything is resized
                arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                img = Image.fromarray(arr if i % 2 == 0 else arr[:, :, 0])  # RGB and greyscale files
                img.save(root / split / c / f"{i}.png")
    return root


def test_image_folder_loads_resized_uint8_rgb_with_sorted_class_labels(tmp_path):
    root = write_png_tree(tmp_path / "mini")
    train = load_image_folder(root, "train", size=16)
    test = load_image_folder(root, "test", size=16)
    assert train.images.dtype == torch.uint8 and train.images.shape == (9, 3, 16, 16)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and train.num_classes == 3
    assert len(test) == 9
    with pytest.raises(BenchError, match="different class folders"):
        load_image_folder(write_png_tree(tmp_path / "bad", test_classes=("bird", "cat", "eel")), "test", size=16)
    (tmp_path / "notrain").mkdir()
    with pytest.raises(BenchError, match="not an ImageFolder tree"):
        load_image_folder(tmp_path / "notrain", "train", size=16)


def test_image_folder_data_dir_runs_the_mini_imagenet_setting(tmp_path):
    root = write_png_tree(tmp_path / "mini", per_class=4)
    raw = apply_overrides(load_preset("smoke"), [*FAST, "distill.methods=['baseline']"])
    raw["distill"]["imagefolder"] = {"image_size": 16, "student": "small-cnn", "teacher": "cnn5",
                                     "sparse_fraction": 0.5, "batch_size": 8}
    rows = run_track(parse(raw), runs_root=tmp_path / "runs", results_dir=None, data_dir=str(root), quiet=True,
                     log=lambda s: None)
    assert {(r["dataset"], r["student"], r["teacher"]) for r in rows} == {("imagefolder", "small-cnn", "cnn5")}
    assert {r["n_train"] for r in rows if r["regime"] == "sparse"} == {6}
    meta = json.loads(next((tmp_path / "runs").rglob("teacher-*/meta.json")).read_text())
    assert meta["model_spec"]["num_classes"] == 3 and meta["model_spec"]["image_size"] == 16


def test_distillation_models_build_and_run():
    assert build_model("resnext29-8x64d", ModelSpec(3, 8, 10))(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    assert build_model("resnet18-w16", ModelSpec(1, 28, 10))(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    net = build_model("tv-resnet18", ModelSpec(3, 32, 200, leaky=True, normalize=False))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 200)
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())  # auxiliary: LeakyReLU only
    assert "tv-resnet152" in MODELS  # same torchvision wrapper as tv-resnet18 (60M parameters: not built here)


def test_the_teacher_set_comes_from_the_whole_training_split_not_the_students_subset():
    """[data] train_subset caps the students' images, not the pre-trained teacher's: asking the
    teacher for more than [data] holds gets more (the study asked for 12000 and silently got
    5000), and asking for as many draws exactly [data]'s examples (same seed)."""
    from bench.distill.track import load_data
    from bench.pipeline import resolve_config

    base = ["data.train_subset=64", "distill.train_subset=32"]
    s = resolve_config("smoke", [*base, "distill.teacher_train_subset=160"])
    _, train, teacher_train, *_ = load_data(s, torch.device("cpu"), None)
    assert len(train) == 32 and len(teacher_train) == 160
    s = resolve_config("smoke", [*base, "distill.teacher_train_subset=64"])
    _, _, same, *_ = load_data(s, torch.device("cpu"), None)
    full = s.data.split("train")
    assert len(full) == 64 and same.fingerprint() == full.fingerprint()
