"""The training loop: determinism, resume, refusal to overwrite, bad input, the CLI."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.checkpoint import STATE_FILE, load_run, load_weights, read_weights
from bench.cli import main
from core.errors import BenchError
from bench.models import ModelSpec, build_model
from bench.defense_track import train_defense
from bench.pipeline import resolve_config
from bench.train import ramp

ROOT = Path(__file__).resolve().parent.parent


def weights(run_dir: Path) -> dict:
    return read_weights(run_dir / "model.safetensors")


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ramp_follows_the_paper_policy():
    r0, r5 = ramp(0, 10, 1.0, 2.0), ramp(5, 10, 1.0, 2.0)
    assert (r0.lr_mult, r0.alpha, r0.beta) == (1.0, 0.0, 0.0)
    m = 0.5 ** 0.9
    assert r5.lr_mult == pytest.approx(m) and r5.alpha == pytest.approx(1 - m) and r5.beta == pytest.approx(2 * (1 - m))


def test_run_writes_checkpoint_meta_and_log(smoke_cfg, tmp_path):
    run = train_defense(smoke_cfg, "great", 0, tmp_path, quiet=True)
    assert run == tmp_path / "fashion-mnist" / "great" / "seed0"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["defense"] == "great" and meta["seed"] == 0
    assert set(meta["files"]) == {"model.safetensors", "aux.safetensors"}
    for key in ("config", "versions", "git_revision", "dataset_fingerprint", "metrics", "hp"):
        assert key in meta
    assert 0 <= meta["metrics"]["test_acc"] <= 1 and "train_acc" in meta["metrics"]
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].split(",")[:2] == ["epoch", "loss"] and len(log) == 1 + smoke_cfg.train.epochs
    assert {"alpha", "beta", "lr", "seconds", "aux_loss"} <= set(log[0].split(","))
    assert not (run / STATE_FILE).exists()
    model, meta2 = load_run(run)
    assert not model.training and meta2 == meta


def test_same_seed_same_weights_and_different_seed_differs(smoke_cfg, tmp_path):
    a = train_defense(smoke_cfg, "great-ce", 0, tmp_path / "a", quiet=True)
    b = train_defense(smoke_cfg, "great-ce", 0, tmp_path / "b", quiet=True)
    c = train_defense(smoke_cfg, "great-ce", 1, tmp_path / "c", quiet=True)
    assert same(weights(a), weights(b))
    assert not same(weights(a), weights(c))


def test_resume_after_interrupt_reproduces_uninterrupted_run(smoke_cfg, tmp_path):
    cfg = resolve_config("smoke", ["train.epochs=3"])
    full = train_defense(cfg, "baseline", 0, tmp_path / "full", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        train_defense(cfg, "custom_defenses:InterruptInEpoch2", 0, tmp_path / "cut", quiet=True)
    cut = tmp_path / "cut" / "fashion-mnist" / "custom_defenses_InterruptInEpoch2" / "seed0"
    assert (cut / STATE_FILE).is_file() and not (cut / "meta.json").exists()
    with pytest.raises(BenchError, match="--resume"):
        train_defense(cfg, "custom_defenses:InterruptInEpoch2", 0, tmp_path / "cut", quiet=True)
    resumed = train_defense(cfg, "custom_defenses:InterruptInEpoch2", 0, tmp_path / "cut", resume=True, quiet=True)
    assert same(weights(full), weights(resumed))
    log = (resumed / "train_log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3"]


def test_resume_after_kill_9_reproduces_uninterrupted_run(tmp_path, tiny_data_dir):
    """A real process killed with SIGKILL after its first checkpoint, then --resume."""
    args = ["-m", "bench", "train", "--preset", "smoke", "--defense", "great", "--quiet",
            "--data-dir", str(tiny_data_dir), "--set", "train.epochs=4", "--set", "data.train_subset=128"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "full")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    state = tmp_path / "cut" / "fashion-mnist" / "great" / "seed0" / STATE_FILE
    proc = subprocess.Popen([sys.executable, *args, "--out", str(tmp_path / "cut")], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = state.parent.parent
    if (run / "meta.json").exists():
        pytest.skip("the run finished before it could be killed")
    # The test means something only if the child reached its first checkpoint alive: a
    # child that died earlier (bad arguments, a crash) must fail it, not pass it.
    assert alive, f"the child exited (code {proc.returncode}) before its first checkpoint"
    assert state.exists(), "no checkpoint was written before the deadline"
    resumed = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "cut"), "--resume"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert same(weights(tmp_path / "full" / "fashion-mnist" / "great" / "seed0"), weights(run))


def test_finished_run_is_not_overwritten_without_force(smoke_cfg, tmp_path):
    run = train_defense(smoke_cfg, "baseline", 0, tmp_path, quiet=True)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(BenchError, match="--force"):
        train_defense(smoke_cfg, "baseline", 0, tmp_path, quiet=True)
    assert (run / "model.safetensors").read_bytes() == before
    train_defense(smoke_cfg, "baseline", 0, tmp_path, force=True, quiet=True)


def test_nan_loss_stops_with_a_clear_error_and_no_finished_checkpoint(smoke_cfg, tmp_path):
    with pytest.raises(BenchError, match="non-finite in epoch 2"):
        train_defense(smoke_cfg, "custom_defenses:NanAfterFirstEpoch", 0, tmp_path, quiet=True)
    run = tmp_path / "fashion-mnist" / "custom_defenses_NanAfterFirstEpoch" / "seed0"
    assert not (run / "meta.json").exists()
    assert (run / STATE_FILE).is_file()  # the good epoch-1 state is kept


def test_wrong_architecture_and_corrupt_weights_are_clear_errors(smoke_cfg, tmp_path):
    run = train_defense(smoke_cfg, "baseline", 0, tmp_path, quiet=True)
    other = build_model("cnn5", ModelSpec(1, 28, 10))
    with pytest.raises(BenchError, match="do not fit .*wrong architecture"):
        load_weights(other, run / "model.safetensors")
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BenchError, match="sha256 does not match"):
        load_run(run)
    with pytest.raises(BenchError, match="not a readable safetensors"):
        load_weights(build_model("small-cnn", ModelSpec(1, 28, 10)), run / "model.safetensors")


@pytest.mark.parametrize("argv, message", [
    (["--defense", "gret"], r"unknown defense 'gret'; did you mean great\?; valid: .*baseline"),
    (["--defense", "great", "--preset", "nope"], r"unknown preset 'nope'; valid: .*quick"),
    (["--defense", "great", "--set", "model.name=vgg"], r"unknown model 'vgg'; valid:"),
    (["--defense", "great", "--set", "data.dataset=imagenet"], r"unknown dataset 'imagenet'; valid:"),
    (["--defense", "great", "--set", "hp.lr=-1"], r"hp.lr = -1 is invalid: .*finite and >= 0"),
    (["--defense", "great", "--set", "hp.alpha_max=nan"], r"alpha_max = nan is invalid"),
    (["--defense", "fgsm-at", "--set", "hp.fgsm_eps=1.5"], r"fgsm_eps = 1.5 is invalid: .*\[0, 1\]"),
    (["--defense", "great", "--epochs", "0"], r"train.epochs = 0 is invalid"),
    (["--defense", "custom_defenses:NotADefense"], r"not a subclass of defenses.base.Defense"),
    (["--defense", "no_such_module:X"], r"cannot import 'no_such_module'"),
    (["--defense", "great", "--set", "train"], r"must look like section.key=value"),
])
def test_cli_bad_input_exits_2_with_one_clear_message(argv, message, tmp_path, capsys):
    base = ["train", "--quiet", "--out", str(tmp_path)] + ([] if "--preset" in argv else ["--preset", "smoke"])
    code = main(base + argv)
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(message, err), err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not any(tmp_path.rglob("meta.json"))


def test_cli_list_names_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("great-ce", "datagrad-l2", "small-cnn", "fashion-mnist", "quick", "cifar10-paper"):
        assert word in out


def test_readme_example_defense_runs(tmp_path, monkeypatch, capsys):
    """The README's 'add your own defense' example is complete and runs as printed."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- example-defense -->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 25
    (tmp_path / "my_defense.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    cls_name = re.search(r"^class (\w+)", code, re.M).group(1)
    assert main(["train", "--preset", "smoke", "--quiet", "--out", str(tmp_path / "runs"),
                 "--defense", f"my_defense:{cls_name}"]) == 0
    assert list((tmp_path / "runs").rglob("meta.json"))


def test_builtin_noise_defense_is_the_readme_example(tmp_path, monkeypatch):
    """defenses/noise.py registers the README's example so a study can carry it: from the same
    seed, three steps of each leave identical weights (mutation: noise not clipped, or sigma
    read as 2 sigma, in either copy -> weights differ)."""
    from bench.method import Context
    from defenses import DEFENSES

    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- example-defense -->\s*```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "readme_defense.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    readme_cls = getattr(importlib.import_module("readme_defense"), re.search(r"^class (\w+)", code, re.M).group(1))
    spec = ModelSpec(1, 28, 10, (0.286,), (0.353,))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    weights = []
    for cls in (readme_cls, DEFENSES.get("noise")):
        assert cls.hp_defaults == {"sigma": 0.1}
        torch.manual_seed(0)
        method = cls(build_model("small-cnn", spec), Context("small-cnn", spec, {"lr": 1e-3, "sigma": 0.2}))
        for _ in range(3):
            method.step(x, y, None)
        weights.append(torch.cat([p.detach().flatten() for p in method.model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_logged_learning_rate_is_the_optimisers_own(tmp_path):
    """Issue 19: the log recomputed lr from Adam's default, so an SGD method with another rate
    (and no hp.lr) logged a rate it never used. The log now reads the optimiser."""
    from bench.method import Context, Method
    from bench.train import fit

    class SGDMethod(Method):
        def __init__(self, model, ctx):
            super().__init__(model, ctx)
            self.opt = torch.optim.SGD(model.parameters(), lr=0.05)  # not hp.lr, not Adam's default

        def step(self, x, y, r):
            self.zero(self.opt)
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            self.opt.step()
            return {"loss": loss.detach()}

    class Batches:
        def __len__(self):
            return 1

        def epoch(self, g):
            yield torch.rand(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 0, 1])

    spec = ModelSpec(1, 8, 2, (0.5,), (0.5,))
    torch.manual_seed(0)
    method = SGDMethod(build_model("small-cnn", spec), Context("small-cnn", spec, {}))
    fit(method, Batches(), epochs=3, run_dir=tmp_path, seed=0, meta={}, quiet=True)
    lines = (tmp_path / "train_log.csv").read_text().splitlines()
    col = lines[0].split(",").index("lr")
    logged = [float(line.split(",")[col]) for line in lines[1:]]
    assert logged == pytest.approx([0.05 * ramp(e, 3).lr_mult for e in range(3)], rel=1e-12)
