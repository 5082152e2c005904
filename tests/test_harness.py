"""The harness against torchattacks called directly, and its protocol (eval mode, skipping
clean errors, bounds, CSV resume, CW radii from one run, bad run directories)."""
import json

import pytest
import torch
import torch.nn as nn
import torchattacks

from bench.eval import evaluate as ev
from bench.eval.evaluate import evaluate, evaluate_subject
from attacks.perturbation import check_perturbation
from bench.eval.schema import ROW_FIELDS, unpack_mask
from bench.eval.subjects import EvalSet, Subject, subject_from_factory, subject_from_run
from bench.csv_files import read_rows
from attacks.registry import parse_spec, sweep
from attacks.targets import random_targets
from bench.checkpoint import save_weights
from core.errors import BenchError
from bench.models import ModelSpec, build_model


class Recorder(nn.Module):
    """Wraps a model; records the training flag and batch sizes of every forward."""

    def __init__(self, net):
        super().__init__()
        self.net, self.modes, self.sizes = net, [], []

    def forward(self, x):
        self.modes.append(self.training)
        self.sizes.append(len(x))
        return self.net(x)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(32, 4))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    return EvalSet(x, y, 4, "toy")


def subject(net, name="toy-net", sha="0" * 64):
    return Subject(net, name, 0, "toy", sha)


def direct_accuracy(net, atk, x, y, labels):
    """torchattacks called by hand, with the harness's protocol: clean errors stay errors."""
    net.eval()
    with torch.no_grad():
        clean_ok = net(x).argmax(1) == y
    adv = atk(x[clean_ok], labels[clean_ok])
    with torch.no_grad():
        ok = net(adv).argmax(1) == y[clean_ok]
    return float(ok.sum()) / len(y)


@pytest.mark.parametrize("text", ["fgsm:eps=0.1", "ifgsm:eps=0.1", "fgsm:eps=0.1,mode=random",
                                  "ifgsm:eps=0.05,mode=random", "pgd:eps=0.1,steps=5"])
def test_same_accuracy_as_torchattacks_called_directly(data, text):
    net = tiny_net()
    spec = parse_spec(text)
    [row] = evaluate_subject(subject(net), data, [spec], eval_seed=7, batch_size=1000)
    builders = {"fgsm": lambda: torchattacks.FGSM(net, eps=spec.eps),
                "ifgsm": lambda: torchattacks.BIM(net, eps=spec.eps, alpha=spec.eps / 10, steps=10),
                "pgd": lambda: torchattacks.PGD(net, eps=spec.eps, alpha=2.5 * spec.eps / 5, steps=5,
                                                random_start=True)}
    atk = builders[spec.name]()
    labels = data.y
    if spec.mode == "random":
        atk.set_mode_targeted_by_label(quiet=True)
        labels = random_targets(data.y, 4, seed=7)
    torch.manual_seed(7)  # the harness seeds each batch with eval_seed + offset (one batch here)
    assert row["accuracy"] == pytest.approx(direct_accuracy(net, atk, data.x, data.y, labels), abs=1e-9)


def test_perturbations_stay_in_the_box_and_within_epsilon(data):
    net = tiny_net().eval()
    for text in ["fgsm:eps=0.1", "ifgsm:eps=0.2,mode=worst", "pgd:eps=0.1,steps=5", "pgd:eps=0.5,norm=L2,steps=5",
                 "square:eps=0.1,queries=30"]:
        spec = parse_spec(text)
        from attacks.registry import build_attack

        adv = build_attack(net, spec, 4, 0)(data.x, data.y)
        delta = (adv - data.x).flatten(1)
        size = delta.abs().amax(1) if spec.norm == "Linf" else delta.norm(dim=1)
        assert adv.min() >= 0 and adv.max() <= 1
        assert float(size.max()) <= spec.eps + 1e-5, text


def test_out_of_bounds_perturbations_are_caught(data):
    spec = parse_spec("fgsm:eps=0.1")
    with pytest.raises(BenchError, match="exceeds epsilon"):
        check_perturbation(data.x + 0.2 * (data.x < 0.5), data.x, spec)
    with pytest.raises(BenchError, match=r"leave \[0, 1\]"):
        check_perturbation(data.x + 0.05, data.x, spec)


def test_eval_mode_clean_errors_not_attacked_and_targeted_hits(data):
    net = Recorder(tiny_net()).train()
    [clean, atk] = evaluate_subject(subject(net), data, sweep(["none", "ifgsm:eps=0.3,mode=random"]),
                                    batch_size=1000)
    assert not any(net.modes), "every forward pass ran in eval mode"
    n_ok = clean["n_clean_correct"]
    assert 0 < n_ok < len(data)
    assert clean["accuracy"] == pytest.approx(n_ok / len(data))
    # the attack only saw the clean-correct points (clean pass of all, then batches of n_ok);
    # before the clean pass, attacks.layout's check of the faster layout sees a few examples
    clean_pass = net.sizes.index(len(data))
    assert set(net.sizes[clean_pass + 1:]) == {n_ok}
    assert atk["accuracy"] <= clean["accuracy"] and atk["target_hit_rate"] > 0
    assert atk["n"] == len(data) and atk["n_clean_correct"] == n_ok


def test_cw_one_run_gives_accuracy_at_every_radius(data, monkeypatch):
    calls = []
    real = ev.run_attack
    monkeypatch.setattr(ev, "run_attack", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = tiny_net()
    rows = evaluate_subject(subject(net), data, sweep(["cw:eps=0.1|0.5|1|100,steps=30"]))
    assert len(calls) == 1
    accs = [r["accuracy"] for r in sorted(rows, key=lambda r: r["epsilon"])]
    assert accs == sorted(accs, reverse=True) and accs[0] > accs[-1]
    # per example: broken at radius r exactly when CW found an adversarial example within r
    assert all(r["max_perturbation"] <= r["epsilon"] + 1e-5 for r in rows)


def test_best_of_keeps_per_example_the_smallest_adversarial_norm():
    y = torch.tensor([0, 1, 2, 3])
    cw = (torch.tensor([5, 1, 7, 3]), torch.tensor([0.9, 0.1, 2.0, 0.0]), 2.0)   # example 1: not adversarial
    fmn = (torch.tensor([6, 8, 2, 3]), torch.tensor([0.5, 1.5, 0.3, 0.0]), 1.5)  # examples 2, 3: not adversarial
    p, d, top = ev.best_of([cw, fmn], y)
    assert d.tolist() == [0.5, 1.5, 2.0, float("inf")]  # a small norm that did not flip the label is no adversarial
    assert p.tolist() == [6, 8, 7, 3] and top == 2.0


def test_l2min_is_the_per_example_and_of_its_parts_and_reuses_their_runs(data, monkeypatch):
    calls = []
    real = ev.run_attack
    monkeypatch.setattr(ev, "run_attack", lambda m, s, *a, **k: calls.append(s.name) or real(m, s, *a, **k))
    radii = (0.05, 0.2, 0.5, 1.0)
    eps = "|".join(map(str, radii))
    specs = sweep([f"cw:eps={eps},steps=10", f"fmn:eps={eps},steps=10", f"fmn-warm:eps={eps},steps=10,init_steps=10",
                   f"l2min:eps={eps},cw_steps=10,fmn_steps=10,fmn-warm_steps=10,fmn-warm_init_steps=10"])
    rows = evaluate_subject(subject(tiny_net()), data, specs)
    assert sorted(calls) == ["cw", "fmn", "fmn-warm"], "each part runs once; the combined rows reuse the runs"
    by = {(r["attack"], r["epsilon"]): r for r in rows}
    parts = ("cw", "fmn", "fmn-warm")
    differ = 0
    for eps in radii:
        n = by["cw", eps]["n"]
        masks = {a: unpack_mask(by[a, eps]["correct_mask"], n) for a in (*parts, "l2min")}
        assert (masks["l2min"] == (masks["cw"] & masks["fmn"] & masks["fmn-warm"])).all()
        differ += int((masks["cw"] != masks["fmn"]).sum())
        assert by["l2min", eps]["accuracy"] <= min(by[a, eps]["accuracy"] for a in parts)
    assert by["l2min", 1.0]["accuracy"] < by["l2min", 0.05]["accuracy"]
    assert differ > 0, "cw and fmn break different examples somewhere, so the AND is not trivial"


def test_csv_rows_are_skipped_when_present_and_recomputed_with_force(data, tmp_path, monkeypatch):
    out = tmp_path / "rob.csv"
    specs = sweep(["none", "fgsm:eps=0.1|0.2"])
    s = subject(tiny_net())
    rows = evaluate([s], data, specs, out)
    assert len(rows) == 3 and len(read_rows(out)) == 3
    assert set(read_rows(out)[0]) == set(ROW_FIELDS)
    assert not list(tmp_path.glob(".*tmp")), "atomic writes leave no temporary files"
    calls = []
    real = ev.run_attack
    monkeypatch.setattr(ev, "run_attack", lambda *a, **k: calls.append(1) or real(*a, **k))
    evaluate([s], data, specs, out)
    assert calls == []
    evaluate([s], data, specs, out, force=True)
    assert len(calls) == 3 and len(read_rows(out)) == 3
    # a retrained checkpoint of the same run supersedes the old rows
    evaluate([subject(tiny_net(1), sha="1" * 64)], data, specs[:1], out)
    assert {r["checkpoint_sha256"] for r in read_rows(out)} == {"1" * 64}


def _run_dir(tmp_path, spec=ModelSpec(1, 8, 4)):
    d = tmp_path / "run"
    d.mkdir()
    model = build_model("small-cnn", spec)
    sha = save_weights(model, d / "model.safetensors")
    meta = {"status": "finished", "model": "small-cnn", "model_spec": spec.__dict__, "defense": "toy",
            "seed": 0, "dataset": "toy", "files": {"model.safetensors": {"sha256": sha}}, "metrics": {}}
    (d / "meta.json").write_text(json.dumps(meta))
    return d, meta


def test_run_directories_are_loaded_with_their_sha256_checked(tmp_path):
    d, meta = _run_dir(tmp_path)
    s = subject_from_run(d)
    assert s.defense == "toy" and s.sha256 == meta["files"]["model.safetensors"]["sha256"]
    assert not s.model.training
    meta["files"]["model.safetensors"]["sha256"] = "f" * 64
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BenchError, match="sha256"):
        subject_from_run(d)
    (d / "meta.json").unlink()
    with pytest.raises(BenchError, match="no finished checkpoint"):
        subject_from_run(d)


def test_user_model_factory_and_weights(tmp_path, monkeypatch):
    import sys
    import types

    mod = types.ModuleType("user_models_for_test")
    mod.make = lambda: build_model("small-cnn", ModelSpec(1, 8, 4))
    mod.other = lambda: build_model("small-cnn", ModelSpec(1, 8, 5))
    monkeypatch.setitem(sys.modules, "user_models_for_test", mod)
    w = tmp_path / "w.safetensors"
    save_weights(mod.make(), w)
    s = subject_from_factory("user_models_for_test:make", w, None, "toy", name="mine")
    assert s.defense == "mine" and len(s.sha256) == 64
    with pytest.raises(BenchError, match="do not fit"):
        subject_from_factory("user_models_for_test:other", w, None, "toy")
