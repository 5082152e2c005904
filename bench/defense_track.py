"""The defense track: build the data, model and defense of one (defense or variant, seed) of a
preset and train it through ``bench.train.fit`` into its run directory (``bench.run.Run``)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
import torch

from bench.data import DATASETS, Batches, ImageData
from bench.method import Context, Method
from bench.models import ModelSpec, build_model
from bench.run import Run, method_identity, run_path
from bench.config.settings import Settings
from bench.splits import load_splits
from bench.train import accuracy_on, fit, resolve_device


def model_spec_for(dataset: str, shape: tuple[int, ...], num_classes: int) -> ModelSpec:
    """The model of a dataset: images of ``shape`` (C, H, W), its classes and channel statistics."""
    ds = DATASETS.get(dataset)
    c, h = int(shape[0]), int(shape[1])
    return ModelSpec(c, h, num_classes, ds.mean, ds.std)


def defense_run(s: Settings, defense: str, seed: int, out: str | Path,
                train: ImageData, test: ImageData, spec: ModelSpec) -> Run:
    """The run directory of one (defense or variant, seed) and the identity of its weights."""
    identity = {**method_identity(defense, s.defense_class(defense), s.method_hp(defense)),
                "base_defense": s.base_defense(defense), "seed": seed,
                "data": {"dataset": s.data.dataset, "train": train.fingerprint(), "test": test.fingerprint(),
                         "train_subset": s.data.train_subset, "test_subset": s.data.test_subset,
                         "subset_seed": s.data.subset_seed,
                         **({"val_subset": s.data.val_subset} if s.data.val_subset is not None else {}),
                         "augment": s.data.augmentation,
                         "batch_size": s.data.batch_size},
                "model": {"name": s.model.name, "spec": asdict(spec)}, "epochs": s.train.epochs}
    return Run(run_path(out, "", s.data.dataset, defense, seed=seed), f"{defense}/seed{seed}", identity)


def train_defense(s: Settings, defense: str, seed: int, out: str | Path, *,
                  data_dir: str | None = None, resume: bool = False, force: bool = False,
                  reuse: bool = False, quiet: bool = False) -> Path:
    """Train one (defense or variant, seed) of a config; return the finished run directory.

    ``reuse=True`` (``run``): a finished run of the same identity is reused, an interrupted
    one resumed, a stale one retrained (one line says what changed). ``reuse=False``
    (``train``): a finished or stale run is refused unless ``force``.
    """
    cls = s.defense_class(defense)
    hp = s.method_hp(defense)
    device = resolve_device(s.train.device)
    train, test = load_splits(s.data, device, data_dir)
    spec = model_spec_for(s.data.dataset, train.shape, train.num_classes)
    run = defense_run(s, defense, seed, out, train, test, spec)
    action = run.prepare(reuse=reuse, resume=resume, force=force)
    if action == "reuse":
        return run.path
    torch.manual_seed(seed)  # same seed + config -> same initial weights and same run
    model = build_model(s.model.name, spec).to(device)
    method: Method = cls(model, Context(s.model.name, spec, hp, device))
    batches = Batches(train, s.data.batch_size, run.identity["data"]["augment"])
    n_train_eval = s.train.train_eval_subset or len(train)

    def final_metrics(m: Method) -> dict[str, float]:
        return {"train_acc": accuracy_on(m.model, train.subset(n_train_eval, seed=seed)),
                "test_acc": accuracy_on(m.model, test)}

    meta = run.meta("defense", preset=s.preset, config=s.source, defense=defense, base_defense=s.base_defense(defense),
                    hp=hp, model=s.model.name, model_spec=asdict(spec), dataset=s.data.dataset,
                    dataset_fingerprint=train.fingerprint(), test_fingerprint=test.fingerprint(),
                    n_train=len(train), n_test=len(test), device=str(device))
    fit(method, batches, epochs=s.train.epochs, run_dir=run.path, seed=seed, meta=meta,
        alpha_max=float(hp.get("alpha_max", 0.0)), beta_max=float(hp.get("beta_max", 0.0)),
        resume=action == "resume", quiet=quiet, final_metrics=final_metrics, label=f"{defense} seed {seed}")
    return run.path
