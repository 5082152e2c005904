"""The multi-task track: every method x seed trained through ``bench.train.fit`` on the same
data and initial weights, evaluated on the test split, reported in the Table 4 layout.

Runs live in ``<out>/multitask/<dataset>/<method>/seed<seed>`` (``bench.run.Run``: a finished run of
the same identity is reused, an interrupted one resumed, a stale one retrained); results are ``multitask.csv`` (tidy rows: method, seed, task, metric, value),
``multitask.md`` and ``multitask_weights.png`` in the results folder.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch

import bench.data as bdata
from bench.checkpoint import read_meta
from core.errors import BenchError
from bench.models import ModelSpec
from bench.multitask.data import MultiTaskBatches, derive_multitask
from bench.multitask.methods import MULTITASK_METHODS
from bench.multitask.network import build_multitask_net
from bench.multitask.report import read_log, write_outputs
from bench.multitask.settings import MultiTaskSettings
from bench.multitask.tasks import evaluate
from bench.splits import load_splits
from bench.run import Run, method_identity, run_path
from bench.train import fit, resolve_device
from bench.method import Context



# What the track reads of a parsed preset (``bench.config.settings.Settings`` is one): a protocol
# rather than an import, since that parser imports this package's settings to parse [multitask].
class Settings(Protocol):
    preset: str
    source: dict[str, Any]
    train: Any  # .device: where to train
    multitask: MultiTaskSettings | None


def input_spec(s: MultiTaskSettings, size: int, num_classes: int) -> ModelSpec:
    """The encoder reads one grayscale channel; normalise with the dataset's channel-mean stats."""
    ds = bdata.DATASETS.get(s.dataset)
    return ModelSpec(1, size, num_classes, (sum(ds.mean) / len(ds.mean),), (sum(ds.std) / len(ds.std),))


def train_one(s: MultiTaskSettings, method: str, seed: int, train, test, spec: ModelSpec, run_dir: Path,
              device: torch.device, meta: dict[str, Any], data: dict[str, Any], *, force: bool,
              quiet: bool) -> dict[str, Any]:
    """Train (or reuse) one method x seed; return its finished meta (metrics = test errors)."""
    cls = MULTITASK_METHODS.get(method)
    identity = {**method_identity(method, cls, s.hp), "seed": seed, "epochs": s.epochs,
                "batch_size": s.data.batch_size, "encoder": s.encoder, "model_spec": asdict(spec),
                "tasks": [t.name for t in s.tasks], "data": data}
    run = Run(run_dir, f"multitask {method}/seed{seed}", identity)
    action = run.prepare(reuse=True, force=force)
    if action == "reuse":
        return read_meta(run_dir)
    torch.manual_seed(seed)  # the network is built first: every method starts from the same weights
    net = build_multitask_net(s.encoder, spec, s.tasks).to(device)
    m = cls(net, Context(s.encoder, spec, dict(s.hp), device, {"tasks": list(s.tasks)}))
    batches = MultiTaskBatches(train, s.tasks, s.data.batch_size)
    test_batches = MultiTaskBatches(test, s.tasks, 512, shuffle=False)
    meta = run.meta("multitask", **meta, method=method, hp=s.hp)
    return fit(m, batches, epochs=s.epochs, run_dir=run_dir, seed=seed, meta=meta, resume=action == "resume",
               quiet=quiet,
               final_metrics=lambda mm: evaluate(mm.model, test_batches, list(s.tasks)),
               label=f"multitask {method} seed {seed}")


def run_multitask(settings: Settings, *, out: Path, results: Path, data_dir: str | None = None,
                  force: bool = False, quiet: bool = False) -> dict[str, Path]:
    s = settings.multitask
    if s is None:
        raise BenchError(f"preset {settings.preset!r} lacks the [multitask] section (tasks, methods, encoder, ...); "
                         "presets with one: quick, smoke, cifar10-paper")
    device = resolve_device(settings.train.device)
    train_img, test_img = load_splits(s.data, device, data_dir)
    cache = Path(data_dir) if data_dir else bdata.DEFAULT_DATA_DIR
    train = derive_multitask(train_img, cache / "multitask", noise_seed=s.noise_seed)
    test = derive_multitask(test_img, cache / "multitask", noise_seed=s.noise_seed)
    spec = input_spec(s, train.image_size, train.num_classes)
    base_meta = {"preset": settings.preset, "config": settings.source, "dataset": s.dataset,
                 "tasks": [t.name for t in s.tasks], "encoder": s.encoder, "model_spec": asdict(spec),
                 "dataset_fingerprint": train_img.fingerprint(), "test_fingerprint": test_img.fingerprint(),
                 "n_train": len(train), "n_test": len(test), "noise_seed": s.noise_seed, "device": str(device)}
    data = {"dataset": s.dataset, "train": train_img.fingerprint(), "test": test_img.fingerprint(),
            "noise_seed": s.noise_seed}
    rows, logs = [], {}
    for seed in s.seeds:
        for method in s.methods:
            run_dir = run_path(out, "multitask", s.dataset, method, seed=seed)
            meta = train_one(s, method, seed, train, test, spec, run_dir, device, base_meta, data, force=force,
                             quiet=quiet)
            for t in s.tasks:
                if t.name not in meta.get("metrics", {}):
                    raise BenchError(f"{run_dir}/meta.json lacks the test metric of task {t.name!r}; "
                                     "it was trained with another task list: rerun with --force")
                rows.append({"method": method, "seed": seed, "task": t.name, "metric": t.metric,
                             "value": float(meta["metrics"][t.name])})
            logs.setdefault(method, []).extend(read_log(run_dir / "train_log.csv"))
    caption = (f"# Multi-task learning ({settings.preset}): {s.dataset}, encoder {s.encoder}, "
               f"{s.epochs} epochs, seeds {list(s.seeds)}\n\nTest errors, lower is better "
               f"(classification % error, RMSE for dense tasks), mean ± std [95% t-interval] over seeds; "
               f"best per column in bold. "
               f"Weight trajectories: multitask_weights.png.")
    return write_outputs(Path(results), rows, list(s.tasks), list(s.methods), logs, caption)
