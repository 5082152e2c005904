"""What the harness evaluates: the models (finished runs, user-brought models) and the examples.

A ``Subject`` is one model plus what identifies it in the rows (defense, seed, dataset,
the weights' sha256); an ``EvalSet`` is the test examples it is attacked on, float images in
[0, 1] on the attack device.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from bench.checkpoint import load_run, load_weights, sha256_file
from bench.data import to_float
from core.errors import BenchError
from core.registry import load_object
from bench.splits import DataSettings


@dataclass
class Subject:
    """One model to evaluate and what identifies it in the rows."""

    model: nn.Module
    defense: str
    seed: int | str
    dataset: str
    sha256: str
    train_accuracy: float | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class EvalSet:
    """The evaluation examples: float images in [0, 1] and labels, on the attack device."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    dataset: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def fingerprint(self, n: int | None = None) -> str:
        n = len(self) if n is None else n
        h = hashlib.sha256()
        h.update((self.x[:n] * 255).round().to(torch.uint8).cpu().numpy().tobytes())
        h.update(self.y[:n].cpu().numpy().astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def examples_for(self, spec_n: int | None, n_test: int | None) -> int:
        """How many of the first examples an attack runs on: its own ``n``, else the sweep's
        ``n_test``, else all of them, never more than there are."""
        return min(spec_n or n_test or len(self), len(self))


def subject_from_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Subject:
    """A finished run directory; ``load_run`` verifies the weights' sha256 against meta.json."""
    model, meta = load_run(run_dir, device)
    return Subject(model, str(meta.get("defense", Path(run_dir).parent.name)), meta.get("seed", ""),
                   str(meta.get("dataset", "")), meta["files"]["model.safetensors"]["sha256"],
                   meta.get("metrics", {}).get("train_acc"), str(run_dir), meta)


def subject_from_factory(factory: str, weights: str | Path, spec, dataset: str, *, name: str | None = None,
                         device: str | torch.device = "cpu") -> Subject:
    """A user-brought model: ``module:factory`` (called with no arguments or with a ModelSpec)
    returning an nn.Module that takes [0, 1] images, plus a safetensors weights file."""
    fn = load_object(factory, "model factory")
    if not callable(fn):
        raise BenchError(f"model factory {factory!r} is not callable")
    try:
        takes_spec = len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        takes_spec = False
    model = fn(spec) if takes_spec else fn()
    if not isinstance(model, nn.Module):
        raise BenchError(f"model factory {factory!r} returned {type(model).__name__}, not an nn.Module")
    load_weights(model, Path(weights))
    return Subject(model.to(device).eval(), name or factory.rpartition(":")[2], "", dataset,
                   sha256_file(Path(weights)), None, f"{factory} {weights}")


def eval_set_for(data: DataSettings, n_test: int | None, *, data_dir: str | None = None,
                 device: str | torch.device = "cpu", expect_fingerprint: str | None = None) -> EvalSet:
    """The first ``n_test`` of the test subset ``data`` names (for a run: ``recorded_data``,
    the settings its identity recorded, so the same examples it was tested on)."""
    test = data.split("test", device=device, data_dir=data_dir)
    if expect_fingerprint and test.fingerprint() != expect_fingerprint:
        raise BenchError(f"the {data.dataset} test data found now differ from those recorded when the run "
                         "was trained (test_fingerprint in meta.json); evaluate with the same data files")
    n = min(n_test or len(test), len(test))
    return EvalSet(to_float(test.images[:n]), test.labels[:n], test.num_classes, data.dataset)


def recorded_data(subject: Subject) -> DataSettings:
    """The data settings a finished run recorded in its identity (meta.json ``identity.data``)."""
    return data_of_meta(subject.meta, subject.source)


def data_of_meta(meta: dict[str, Any], source: str) -> DataSettings:
    """``recorded_data`` from a run's meta.json (``source`` names it in the error)."""
    identity = meta.get("identity") or {}
    if "data" not in identity:
        raise BenchError(f"{source} records no data identity (trained by an older version); "
                         "retrain it to evaluate it")
    return DataSettings.recorded(identity["data"])
