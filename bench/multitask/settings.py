"""The ``[multitask]`` preset section, validated into one typed object before any work starts.

Keys (defaults in brackets): tasks, methods [all four], encoder [small-conv], epochs
[train.epochs], seeds [train.seeds], batch_size [data.batch_size], train_subset and
test_subset [data.*], noise_seed [0], and the hyper-parameters lr [hp.lr], weight_lr (GradNorm
and uncertainty weights) [lr], gal_lr [lr], and the methods' own ones (gal_min, aux_blocks,
gradnorm_alpha), whose defaults the methods declare (``hp_defaults``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bench.config.checks import (check_hp_kinds, check_hp_values, check_keys, nonnegative_int, optional_positive_int,
                                 positive_int, seed_list)
from bench.data import DATASETS
from bench.splits import DataSettings
from core.errors import BenchError
from bench.method import LR
from bench.multitask.methods import MULTITASK_METHODS
from bench.multitask.network import ENCODERS
from bench.multitask.tasks import Task, resolve_tasks

# lr, weight_lr and gal_lr here; gal_min, gradnorm_alpha and aux_blocks declared by the methods.
LR_KEYS = ("lr", "weight_lr", "gal_lr")
HP_KEYS = (*LR_KEYS, "gal_min", "gradnorm_alpha", "aux_blocks")
KEYS = ("tasks", "methods", "encoder", "epochs", "seeds", "batch_size", "train_subset", "test_subset",
        "noise_seed", *HP_KEYS)


@dataclass(frozen=True)
class MultiTaskSettings:
    data: DataSettings   # the preset's [data] with this section's batch size and subsets
    tasks: tuple[Task, ...]
    methods: tuple[str, ...]
    encoder: str
    epochs: int
    seeds: tuple[int, ...]
    noise_seed: int
    hp: dict[str, Any]

    @property
    def dataset(self) -> str:
        return self.data.dataset


def method_defaults() -> dict[str, Any]:
    """The registered methods' declared defaults (``hp_defaults``), one dict."""
    out: dict[str, Any] = {}
    for name in MULTITASK_METHODS.names():
        out.update(MULTITASK_METHODS.get(name).hp_defaults)
    return out


def settings_from(cfg: dict[str, Any], data: DataSettings, epochs: int, seeds: tuple[int, ...],
                  lr: Any = LR) -> MultiTaskSettings:
    """``[multitask]`` of a preset; ``data``, ``epochs``, ``seeds`` and ``lr`` are the preset's
    already parsed values that this section may override."""
    mt = cfg.get("multitask")
    if not isinstance(mt, dict):
        raise BenchError("config lacks the [multitask] section (tasks, methods, encoder, ...); "
                         "presets with one: quick, smoke, cifar10-paper")
    check_keys(mt, KEYS, "multitask")
    spec = DATASETS.get(data.dataset)
    tasks = resolve_tasks(mt.get("tasks"), has_colour=spec.channels == 3, dataset=data.dataset)
    methods = mt.get("methods", MULTITASK_METHODS.names())
    if not isinstance(methods, list) or not methods:
        raise BenchError(f"multitask.methods = {methods!r} is invalid: give a non-empty list from "
                         f"{', '.join(MULTITASK_METHODS.names())}")
    for m in methods:
        MULTITASK_METHODS.get(str(m))
    encoder = str(mt.get("encoder", "small-conv"))
    ENCODERS.get(encoder)
    seeds = seed_list(mt.get("seeds", list(seeds)), "multitask.seeds")
    hp = {"lr": lr, **method_defaults()}
    hp.update({k: mt[k] for k in HP_KEYS if k in mt})
    hp.setdefault("weight_lr", hp["lr"])
    hp.setdefault("gal_lr", hp["lr"])
    check_hp_kinds(hp, dict.fromkeys(hp, "number"), "multitask")
    check_hp_values(hp, "multitask")
    positive_int(hp["aux_blocks"], "multitask.aux_blocks")
    if hp["gal_min"] <= 0:
        raise BenchError(f"multitask.gal_min = {hp['gal_min']} is invalid: GALs must stay positive (> 0)")
    noise_seed = nonnegative_int(mt.get("noise_seed", 0), "multitask.noise_seed")
    mt_data = replace(data, batch_size=positive_int(mt.get("batch_size", data.batch_size), "multitask.batch_size"),
                      train_subset=optional_positive_int(mt.get("train_subset", data.train_subset),
                                                         "multitask.train_subset"),
                      test_subset=optional_positive_int(mt.get("test_subset", data.test_subset),
                                                        "multitask.test_subset"))
    return MultiTaskSettings(mt_data, tuple(tasks), tuple(str(m) for m in methods), encoder,
                             positive_int(mt.get("epochs", epochs), "multitask.epochs"), tuple(seeds), noise_seed, hp)
