"""The one training loop: epochs, schedules, logging, checkpointing and resume.

Every track (defenses, distillation, multi-task) hands ``fit`` a ``Defense``-like object
that implements one step; ``fit`` does everything around it. ``train_defense`` builds
the data, model and defense for the defense track from a config.
"""
from __future__ import annotations

import csv
import io
import math
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch

from bench.atomic import write_json, write_text
from bench.checkpoint import STATE_FILE, load_training_state, save_training_state, save_weights
from bench.config import defense_hp, validate
from bench.data import DATASETS, Batches, ImageData, load_dataset, to_float
from bench.errors import BenchError
from bench.models import ModelSpec, build_model
from bench.progress import progress
from defenses.base import Context, Defense, Ramp


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def epoch(self, g: torch.Generator) -> Iterable[tuple[torch.Tensor, Any]]: ...


def ramp(epoch: int, epochs: int, alpha_max: float = 0.0, beta_max: float = 0.0) -> Ramp:
    """Paper supplement: m = (1 - e/E)^0.9 multiplies the lr; alpha, beta = max * (1 - m)."""
    m = (1.0 - epoch / epochs) ** 0.9
    return Ramp(epoch, m, alpha_max * (1.0 - m), beta_max * (1.0 - m))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("torchvision", "torchattacks", "numpy", "safetensors"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # not installed: record its absence, do not fail training
            out[mod] = "missing"
    try:
        from importlib.metadata import version

        out["great-bench"] = version("great-bench")
    except Exception:
        out["great-bench"] = "source"
    return out


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


@torch.no_grad()
def accuracy_on(model: torch.nn.Module, data: ImageData, batch_size: int = 512) -> float:
    """Clean accuracy in eval mode."""
    was = model.training
    model.eval()
    correct = torch.zeros((), device=data.labels.device)
    for i in range(0, len(data), batch_size):
        x = to_float(data.images[i : i + batch_size])
        correct += (model(x).argmax(1) == data.labels[i : i + batch_size]).sum()
    model.train(was)
    return float(correct) / max(1, len(data))


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool) -> bool:
    """Decide what to do with an existing run directory; return True to resume."""
    finished = (run_dir / "meta.json").is_file()
    partial = (run_dir / STATE_FILE).is_file()
    if force:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        return False
    if finished:
        raise BenchError(f"{run_dir} already holds a finished run; pass --force to retrain it")
    if partial and not resume:
        raise BenchError(f"{run_dir} holds an interrupted run; pass --resume to continue it "
                         "or --force to start over")
    return partial and resume


def fit(method: Defense, batches: BatchSource, *, epochs: int, run_dir: Path, seed: int,
        meta: dict[str, Any], alpha_max: float = 0.0, beta_max: float = 0.0, resume: bool = False,
        quiet: bool = False, final_metrics: Callable[[Defense], dict[str, float]] | None = None,
        label: str = "") -> dict[str, Any]:
    """Train ``method`` for ``epochs``; checkpoint every epoch; write the finished run.

    Writes ``<module>.safetensors`` for every module, ``train_log.csv`` and, last,
    ``meta.json`` (``meta`` plus files, metrics, timings). Returns the meta dict.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    device = method.ctx.device
    gen = torch.Generator().manual_seed(seed)
    modules, optimizers = method.modules(), method.optimizers()
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    log_rows: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        info = load_training_state(run_dir, modules, optimizers, gen, device)
        start_epoch, log_rows = info["epoch"] + 1, info["log"]
    t_start = time.time()
    for epoch in progress(range(start_epoch, epochs), total=epochs, initial=start_epoch,
                          desc=label or "epochs", quiet=quiet, unit="epoch"):
        r = ramp(epoch, epochs, alpha_max, beta_max)
        for opt in optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * r.lr_mult
        method.train(True)
        sums: dict[str, torch.Tensor] = {}
        t0 = time.time()
        n = 0
        for x, y in progress(batches.epoch(gen), total=len(batches), desc=f"epoch {epoch + 1}/{epochs}",
                             quiet=quiet, leave=False, unit="batch"):
            logs = method.step(x, y, r)
            for k, v in logs.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach().clone()
            n += 1
        # One synchronisation per epoch: per-step .item() calls would stall a GPU.
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: float(v) / max(n, 1) for k, v in sums.items()})
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            kept = f"the checkpoint of epoch {epoch} is kept" if epoch > start_epoch or resume else "nothing was saved"
            raise BenchError(f"{label or 'training'}: {', '.join(bad)} became non-finite in epoch {epoch + 1} "
                             f"({kept}); lower the learning rate or the alpha/beta/lambda hyper-parameters")
        row.update(alpha=r.alpha, beta=r.beta, lr=float(method.ctx.hp.get("lr", 1e-3)) * r.lr_mult,
                   seconds=round(time.time() - t0, 3))
        log_rows.append(row)
        save_training_state(run_dir, modules, optimizers, gen, {"epoch": epoch, "log": log_rows})

    method.train(False)
    files = {f"{name}.safetensors": {"sha256": save_weights(m, run_dir / f"{name}.safetensors")}
             for name, m in modules.items()}
    write_text(run_dir / "train_log.csv", _csv(log_rows))
    metrics = final_metrics(method) if final_metrics else {}
    meta = dict(meta)
    meta.update(status="finished", seed=seed, epochs=epochs, files=files, metrics=metrics,
                versions=versions(), git_revision=git_revision(),
                train_seconds=round(sum(r["seconds"] for r in log_rows), 3),
                wall_seconds_last_session=round(time.time() - t_start, 3))
    write_json(run_dir / "meta.json", meta)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return meta


# ---------------------------------------------------------------- defense track

def run_dir_for(out: Path, cfg: dict[str, Any], defense: str, seed: int) -> Path:
    safe = defense.replace(":", "_").replace("/", "_")
    return Path(out) / cfg["data"]["dataset"] / safe / f"seed{seed}"


def load_splits(cfg: dict[str, Any], device: torch.device, data_dir: str | None):
    d = cfg["data"]
    train = load_dataset(d["dataset"], "train", data_dir=data_dir, device=device)
    test = load_dataset(d["dataset"], "test", data_dir=data_dir, device=device)
    seed = int(d.get("subset_seed", 0))
    return train.subset(d.get("train_subset"), seed=seed), test.subset(d.get("test_subset"), seed=seed)


def model_spec_for(cfg: dict[str, Any], data: ImageData) -> ModelSpec:
    ds = DATASETS.get(cfg["data"]["dataset"])
    c, h, _ = data.shape
    return ModelSpec(c, h, data.num_classes, ds.mean, ds.std)


def resolve_defense(name: str) -> type[Defense]:
    from defenses import DEFENSES

    cls = DEFENSES.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Defense)):
        raise BenchError(f"defense {name!r} is not a subclass of defenses.base.Defense")
    return cls


def train_defense(cfg: dict[str, Any], defense: str, seed: int, out: str | Path, *,
                  data_dir: str | None = None, resume: bool = False, force: bool = False,
                  skip_finished: bool = False, quiet: bool = False) -> Path:
    """Train one (defense, seed) of a config; return the finished run directory."""
    validate(cfg)
    cls = resolve_defense(defense)
    run_dir = run_dir_for(Path(out), cfg, defense, seed)
    if skip_finished and (run_dir / "meta.json").is_file() and not force:
        return run_dir
    hp = defense_hp(cfg, defense)
    missing = [k for k in cls.hyperparameters if k not in hp]
    if missing:
        raise BenchError(f"defense {defense!r} needs hyper-parameters {missing} (set them under [hp])")
    device = resolve_device(cfg["train"].get("device", "auto"))
    train, test = load_splits(cfg, device, data_dir)
    do_resume = prepare_run_dir(run_dir, resume=resume, force=force)
    spec = model_spec_for(cfg, train)
    torch.manual_seed(seed)  # same seed + config -> same initial weights and same run
    model = build_model(cfg["model"]["name"], spec).to(device)
    method = cls(model, Context(cfg["model"]["name"], spec, hp, device))
    augment = cfg["data"].get("augment") or DATASETS.get(cfg["data"]["dataset"]).augment
    batches = Batches(train, int(cfg["data"]["batch_size"]), augment)
    n_train_eval = int(cfg["train"].get("train_eval_subset", len(train)))

    def final_metrics(m: Defense) -> dict[str, float]:
        return {"train_acc": accuracy_on(m.model, train.subset(n_train_eval, seed=seed)),
                "test_acc": accuracy_on(m.model, test)}

    meta = {"kind": "defense", "preset": cfg.get("preset"), "config": cfg, "defense": defense,
            "hp": hp, "model": cfg["model"]["name"], "model_spec": asdict(spec),
            "dataset": cfg["data"]["dataset"], "dataset_fingerprint": train.fingerprint(),
            "test_fingerprint": test.fingerprint(), "n_train": len(train), "n_test": len(test),
            "device": str(device), "command": " ".join(sys.argv)}
    fit(method, batches, epochs=int(cfg["train"]["epochs"]), run_dir=run_dir, seed=seed, meta=meta,
        alpha_max=float(hp.get("alpha_max", 0.0)), beta_max=float(hp.get("beta_max", 0.0)),
        resume=do_resume, quiet=quiet, final_metrics=final_metrics, label=f"{defense} seed {seed}")
    return run_dir
