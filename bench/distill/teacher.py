"""The teacher: trained once through the same ``fit`` loop and cached, or loaded and checked.

The paper distils from pre-trained teachers; here the track trains its own (CE only, the
``baseline`` distiller on the teacher architecture) and caches it under
``<runs>/distill/<dataset>/teacher-<arch>-<key>/`` where ``key`` hashes everything the
teacher depends on (architecture, data fingerprint, epochs, optimiser, seed): a changed
setting gives a new teacher instead of silently reusing a stale one. A user-supplied
teacher run directory is validated (architecture, dataset, class count, image shape,
weights' sha256) before use.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench.checkpoint import load_run, read_meta
from bench.data import Batches, ImageData
from bench.distill.registry import DISTILLERS
from bench.distill.settings import TeacherSettings
from core.errors import BenchError
from bench.method import Context, code_version
from bench.models import ModelSpec, build_model
from bench.run import Run, run_path
from bench.train import accuracy_on, fit

def teacher_identity(t: TeacherSettings, train: ImageData, batch_size: int, augment: str) -> dict[str, Any]:
    """Everything the teacher's weights depend on (its folder name carries its fingerprint)."""
    return {"teacher": t.arch, "teacher_epochs": t.epochs, "teacher_seed": t.seed, "hp": t.hp,
            "data": train.fingerprint(), "batch_size": batch_size, "augment": augment,
            "code": code_version(DISTILLERS.get("baseline"))}


def check_teacher_meta(meta: dict[str, Any], where: Path | str, *, model: str | None, dataset: str,
                       num_classes: int, image_shape: tuple[int, int, int]) -> None:
    """Reject a teacher that cannot teach this student on this data."""
    got = meta.get("model")
    if model is not None and got != model:
        raise BenchError(f"teacher checkpoint {where} is a {got!r} network, but the preset's teacher is "
                         f"{model!r}; pass a {model!r} teacher or set distill.teacher = \"{got}\"")
    if meta.get("dataset") != dataset:
        raise BenchError(f"teacher checkpoint {where} was trained on {meta.get('dataset')!r}, but the students "
                         f"train on {dataset!r}; a teacher must come from the same dataset")
    spec = meta.get("model_spec") or {}
    if spec.get("num_classes") != num_classes:
        raise BenchError(f"teacher checkpoint {where} predicts {spec.get('num_classes')} classes but the student "
                         f"data has {num_classes}; student and teacher must share the label set")
    shape = (spec.get("in_channels"), spec.get("image_size"), spec.get("image_size"))
    if shape != tuple(image_shape):
        raise BenchError(f"teacher checkpoint {where} takes images of shape {shape}, the data has {tuple(image_shape)}")


def load_teacher(run_dir: str | Path, *, model: str | None, dataset: str, num_classes: int,
                 image_shape: tuple[int, int, int], device: torch.device):
    """(frozen teacher in eval mode, meta) from a finished run directory, validated."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BenchError(f"teacher checkpoint {run_dir} is not a directory (expected a run folder "
                         "holding model.safetensors and meta.json)")
    check_teacher_meta(read_meta(run_dir), run_dir, model=model, dataset=dataset, num_classes=num_classes,
                       image_shape=image_shape)
    teacher, meta = load_run(run_dir, device)  # sha256 check + clear error if the weights do not fit
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, meta


def train_teacher(t: TeacherSettings, spec: ModelSpec, train: ImageData, test: ImageData, *,
                  dataset: str, runs_root: Path, batch_size: int, augment: str, device: torch.device,
                  quiet: bool = False) -> Path:
    """Train (or reuse the cached) teacher for these settings; return its run directory."""
    identity = teacher_identity(t, train, batch_size, augment)
    key = Run(Path(), "", identity).fingerprint[:10]
    run = Run(run_path(runs_root, "distill", dataset, f"teacher-{t.arch}-{key}"), f"teacher {t.arch}", identity)
    action = run.prepare(reuse=True)
    if action == "reuse":
        return run.path
    torch.manual_seed(t.seed)
    model = build_model(t.arch, spec).to(device)
    method = DISTILLERS.get("baseline")(model, Context(t.arch, spec, dict(t.hp), device))
    meta = run.meta("distill-teacher", model=t.arch, model_spec=asdict(spec), dataset=dataset,
                    dataset_fingerprint=train.fingerprint(), test_fingerprint=test.fingerprint(), n_train=len(train),
                    n_test=len(test), hp=t.hp, batch_size=batch_size, augment=augment, device=str(device))
    fit(method, Batches(train, batch_size, augment), epochs=t.epochs, run_dir=run.path,
        seed=t.seed, meta=meta, resume=action == "resume", quiet=quiet,
        final_metrics=lambda m: {"test_acc": accuracy_on(m.model, test)}, label=f"teacher {t.arch}")
    return run.path
