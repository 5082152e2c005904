"""The one training loop: epochs, schedules, logging, checkpointing and resume.

Every track (defenses, distillation, multi-task) hands ``fit`` a ``bench.method.Method``
that implements one step; ``fit`` does everything around it. Which run directory to train
into, and whether to reuse it, is ``bench/run.py``'s business; the defense track itself is
``bench/defense_track.py``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch

from core.atomic import write_json, write_text
from bench.checkpoint import STATE_FILE, load_training_state, save_training_state, save_weights
from bench.data import ImageData, to_float
from core.errors import BenchError
from bench.method import Method, Ramp
from bench.progress import progress
from bench.csv_files import csv_text
from bench.run import git_revision, versions


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def epoch(self, g: torch.Generator) -> Iterable[tuple[torch.Tensor, Any]]: ...


def ramp(epoch: int, epochs: int, alpha_max: float = 0.0, beta_max: float = 0.0) -> Ramp:
    """Paper supplement: m = (1 - e/E)^0.9 multiplies the lr; alpha, beta = max * (1 - m)."""
    m = (1.0 - epoch / epochs) ** 0.9
    return Ramp(epoch, m, alpha_max * (1.0 - m), beta_max * (1.0 - m))


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


def train_epoch(method: Method, batches: BatchSource, gen: torch.Generator, r, *, epoch: int, epochs: int,
                quiet: bool) -> dict[str, Any]:
    """One epoch of steps; returns its train_log.csv row: the step logs averaged, the ramp's
    alpha and beta, the rate the main optimiser used and the seconds it took."""
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
    # The rate the main optimiser actually used (an SGD preset's default is not Adam's).
    optimizers = method.optimizers()
    main_opt = optimizers.get("model") or next(iter(optimizers.values()))
    row.update(alpha=r.alpha, beta=r.beta, lr=float(main_opt.param_groups[0]["lr"]),
               seconds=round(time.time() - t0, 3))
    return row


def finished_meta(method: Method, run_dir: Path, log_rows: list[dict[str, Any]], meta: dict[str, Any], *, seed: int,
                  epochs: int, final_metrics: Callable[[Method], dict[str, float]] | None,
                  t_start: float) -> dict[str, Any]:
    """Write the finished run (weights, train_log.csv, then meta.json last) and drop the resume state."""
    files = {f"{name}.safetensors": {"sha256": save_weights(m, run_dir / f"{name}.safetensors")}
             for name, m in method.modules().items()}
    write_text(run_dir / "train_log.csv", csv_text(log_rows))
    metrics = final_metrics(method) if final_metrics else {}
    meta = dict(meta)
    meta.update(status="finished", seed=seed, epochs=epochs, files=files, metrics=metrics,
                versions=versions(), git_revision=git_revision(),
                train_seconds=round(sum(r["seconds"] for r in log_rows), 3),
                wall_seconds_last_session=round(time.time() - t_start, 3))
    write_json(run_dir / "meta.json", meta)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return meta


def fit(method: Method, batches: BatchSource, *, epochs: int, run_dir: Path, seed: int,
        meta: dict[str, Any], alpha_max: float = 0.0, beta_max: float = 0.0, resume: bool = False,
        quiet: bool = False, final_metrics: Callable[[Method], dict[str, float]] | None = None,
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
        row = train_epoch(method, batches, gen, r, epoch=epoch, epochs=epochs, quiet=quiet)
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            kept = f"the checkpoint of epoch {epoch} is kept" if epoch > start_epoch or resume else "nothing was saved"
            raise BenchError(f"{label or 'training'}: {', '.join(bad)} became non-finite in epoch {epoch + 1} "
                             f"({kept}); lower the learning rate or the alpha/beta/lambda hyper-parameters")
        log_rows.append(row)
        save_training_state(run_dir, modules, optimizers, gen, {"epoch": epoch, "log": log_rows})

    method.train(False)
    meta = finished_meta(method, run_dir, log_rows, meta, seed=seed, epochs=epochs, final_metrics=final_metrics,
                         t_start=t_start)
    return meta
