"""The distillation track: every method x regime x seed for every student/teacher pair
(paper section 3.2, Table 3), written as tidy rows and a Table 3 view.

Dense = the preset's training set; sparse = ``sparse_fraction`` of it, one fixed subset
(``ImageData.subset(fraction=, seed=subset_seed)``) shared by every method and seed. Each
student is a finished run like a defense's (model.safetensors + meta.json via ``fit``), so
beside test accuracy the rows carry its clean, FGSM and iFGSM accuracy at the preset's
epsilon. Finished students whose settings are unchanged are reused; interrupted ones resume.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from core.atomic import write_text
from bench.checkpoint import read_meta
from bench.data import DATASETS, Batches, ImageData
from bench.distill import DISTILLERS
from bench.distill.base import OPTIMIZER_KEYS
from bench.distill.imagefolder import IMAGENET_MEAN, IMAGENET_STD, is_image_folder, load_image_folder
from bench.distill.report import table3_markdown
from bench.distill.robustness import robust_accuracy
from bench.distill.settings import DistillSettings, Pair, Regime, check_fraction
from bench.distill.teacher import load_teacher, train_teacher
from core.errors import BenchError
from bench.models import ModelSpec, build_model
from bench.method import Context, hp_keys
from bench.csv_files import csv_text
from bench.run import Run, method_identity, run_path
from bench.splits import DataSettings, load_splits
from bench.train import accuracy_on, fit, resolve_device




# What the track reads of a parsed preset (``bench.config.settings.Settings`` is one): a protocol
# rather than an import, since that parser imports this package's settings to parse [distill].
class Settings(Protocol):
    preset: str
    data: DataSettings
    train: Any  # .device: where to train
    distill: DistillSettings | None


def sparse_subset(train: ImageData, fraction: float, seed: int) -> ImageData:
    """The sparse regime's training set: the same ``fraction`` of ``train`` for every method."""
    return train.subset(fraction=check_fraction(fraction), seed=seed)


def load_data(s: Settings, device: torch.device, data_dir: str | None):
    """(dataset name, train, teacher's train, test, mean, std, the track's settings in force).

    An ImageFolder ``--data-dir`` switches to the mini-ImageNet setting (``[distill.imagefolder]``
    overrides ``[distill]``). ``train_subset`` draws the students' dense set from the preset's
    training data; ``teacher_train_subset`` the teacher's from the dataset's whole training
    split (default: the students' set).
    """
    d = s.distill
    if is_image_folder(data_dir):
        if d.imagefolder is None:
            raise BenchError(f"--data-dir {data_dir} is an ImageFolder tree but the preset has no "
                             "[distill.imagefolder] section (see the cifar10-paper preset)")
        d = d.imagefolder
        train = load_image_folder(data_dir, "train", size=d.image_size, device=device)
        test = load_image_folder(data_dir, "test", size=d.image_size, device=device)
        return "imagefolder", train, train, test, IMAGENET_MEAN, IMAGENET_STD, d
    full, test = load_splits(s.data, device, data_dir)
    pick = lambda n: full.subset(n, seed=s.data.subset_seed) if n is not None else None
    train = pick(d.train_subset) or full
    # The teacher is pre-trained (paper section 4.2): its images come from the dataset's whole
    # training split, not from the students' [data] subset, which would silently cap it (the
    # study's teacher asked for 12000 and got the 5000 of [data]). The same seed draws the same
    # examples, so a teacher set as large as [data]'s is exactly [data]'s set.
    teacher_train = (replace(s.data, train_subset=d.teacher_train_subset).split("train", device=device,
                                                                               data_dir=data_dir)
                     if d.teacher_train_subset is not None else train)
    ds = DATASETS.get(s.data.dataset)
    return s.data.dataset, train, teacher_train, test, ds.mean, ds.std, d


def train_student(method: str, pair: Pair, regime: Regime, seed: int, *, spec: ModelSpec,
                  train: ImageData, test: ImageData, eval_data: ImageData, teacher: torch.nn.Module,
                  teacher_info: dict[str, Any], dataset: str, runs_root: Path, batch_size: int, augment: str,
                  epsilon: float, device: torch.device, preset: str | None,
                  quiet: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or reuse) one student; return its meta."""
    cls, hp, epochs = DISTILLERS.get(method), regime.hp, regime.epochs
    missing = [k for k in cls.hyperparameters if k not in hp]
    if missing:
        raise BenchError(f"distillation method {method!r} needs {missing} in the [distill] section")
    run_dir = run_path(runs_root, "distill", dataset, f"{pair.student}+{pair.teacher.arch}", regime.name, method,
                       seed=seed)
    # The method's own hyper-parameters and the optimiser's: changing another method's
    # setting (great_alpha) or adding a seed or a method retrains nothing else.
    identity = {**method_identity(method, cls, hp, keys=hp_keys(cls) | set(OPTIMIZER_KEYS)),
                "seed": seed, "epochs": epochs, "model": pair.student, "data": train.fingerprint(),
                "test": test.fingerprint(), "eval": [eval_data.fingerprint(), epsilon],
                "teacher": teacher_info["sha256"], "batch_size": batch_size, "augment": augment}
    run = Run(run_dir, f"distill {pair.student}+{pair.teacher.arch} {regime.name} {method}/seed{seed}", identity)
    action = run.prepare(reuse=True, log=log)
    if action == "reuse":
        return read_meta(run_dir)
    torch.manual_seed(seed)  # same seed -> same initial student for every method
    model = build_model(pair.student, spec).to(device)
    distiller = cls(model, Context(pair.student, spec, hp, device, extras={"teacher": teacher}))

    def final_metrics(m) -> dict[str, float]:
        out = {"test_acc": accuracy_on(m.model, test)}
        out.update(robust_accuracy(m.model, eval_data, epsilon))
        return out

    meta = run.meta("distill-student", preset=preset, method=method, regime=regime.name, model=pair.student,
                    teacher=pair.teacher.arch, teacher_run=teacher_info["run_dir"], teacher_sha256=teacher_info["sha256"],
                    teacher_acc=teacher_info["test_acc"], hp=hp, model_spec=asdict(spec), dataset=dataset,
                    dataset_fingerprint=train.fingerprint(), test_fingerprint=test.fingerprint(), n_train=len(train),
                    n_test=len(test), n_eval=len(eval_data), epsilon=epsilon, batch_size=batch_size, augment=augment,
                    device=str(device))
    return fit(distiller, Batches(train, batch_size, augment), epochs=epochs, run_dir=run_dir, seed=seed,
               meta=meta, resume=action == "resume", quiet=quiet, final_metrics=final_metrics,
               label=f"{method} {regime.name} seed {seed}")


def run_track(s: Settings, *, runs_root: Path, results_dir: Path | None, data_dir: str | None = None,
              teacher_dir: str | None = None, quiet: bool = False, log=print) -> list[dict[str, Any]]:
    """Run the whole track of a preset; write distillation.csv/.md under ``results_dir``."""
    if s.distill is None:
        raise BenchError(f"preset {s.preset!r} has no [distill] section; use --preset quick, smoke or cifar10-paper")
    device = resolve_device(s.train.device)
    dataset, train, teacher_train, test, mean, std, d = load_data(s, device, data_dir)
    # FGSM/iFGSM on the first n_eval test images (default: the preset's eval.n_test).
    eval_data = test.subset(d.n_eval, seed=0)
    c, h, _ = train.shape
    spec = ModelSpec(c, h, train.num_classes, tuple(mean), tuple(std))
    rows: list[dict[str, Any]] = []
    for pair in d.pairs:
        if teacher_dir:
            t_dir = Path(teacher_dir)
        else:
            t_dir = train_teacher(pair.teacher, spec, teacher_train, test, dataset=dataset, runs_root=runs_root,
                                  batch_size=d.batch_size, augment=d.augment, device=device, quiet=quiet)
        teacher, t_meta = load_teacher(t_dir, model=pair.teacher.arch, dataset=dataset,
                                       num_classes=train.num_classes, image_shape=train.shape, device=device)
        t_acc = accuracy_on(teacher, test)
        t_info = {"run_dir": str(t_dir), "sha256": t_meta["files"]["model.safetensors"]["sha256"], "test_acc": t_acc}
        log(f"teacher {pair.teacher.arch}: test accuracy {100 * t_acc:.2f}% ({t_dir})")
        for regime in pair.regimes:
            data = train if regime.name == "dense" else sparse_subset(train, regime.fraction, d.subset_seed)
            for seed in d.seeds:
                for method in d.methods:
                    meta = train_student(method, pair, regime, seed, spec=spec, train=data, test=test,
                                         eval_data=eval_data, teacher=teacher, teacher_info=t_info, dataset=dataset,
                                         runs_root=runs_root, batch_size=d.batch_size, augment=d.augment,
                                         epsilon=d.epsilon, device=device, preset=s.preset, quiet=quiet, log=log)
                    m = meta["metrics"]
                    rows.append({"dataset": dataset, "student": pair.student, "teacher": pair.teacher.arch,
                                 "method": method, "regime": regime.name, "fraction": regime.fraction,
                                 "n_train": len(data), "seed": seed, "epochs": regime.epochs, "n_test": len(test),
                                 "test_acc": round(m["test_acc"], 6), "teacher_acc": round(t_acc, 6),
                                 "clean_acc": round(m["clean_acc"], 6), "fgsm_acc": round(m["fgsm_acc"], 6),
                                 "ifgsm_acc": round(m["ifgsm_acc"], 6), "epsilon": d.epsilon,
                                 "n_eval": len(eval_data), "seconds": meta["train_seconds"]})
                    log(f"{pair.label} {regime.name:6s} {method:8s} seed {seed}: test {100 * m['test_acc']:.2f}%  "
                        f"FGSM {100 * m['fgsm_acc']:.2f}%  iFGSM {100 * m['ifgsm_acc']:.2f}%  "
                        f"({meta['train_seconds']:.0f} s)")
    if results_dir is not None:
        write_text(Path(results_dir) / "distillation.csv", csv_text(rows))
        write_text(Path(results_dir) / "distillation.md", table3_markdown(rows, preset=s.preset))
    return rows
