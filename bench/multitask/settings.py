"""The ``[multitask]`` preset section, validated into one typed object before any work starts.

Keys (defaults in brackets): tasks, methods [all four], encoder [small-conv], epochs
[train.epochs], seeds [train.seeds], batch_size [data.batch_size], train_subset and
test_subset [data.*], noise_seed [0], and the hyper-parameters lr [hp.lr], weight_lr (GradNorm
and uncertainty weights) [lr], gal_lr [lr], gal_min [1e-3], gradnorm_alpha [1.5],
aux_blocks [4].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.config import check_hp_values, check_keys, optional_positive_int, positive_int, seed_list
from bench.data import DATASETS
from bench.errors import BenchError
from bench.multitask.methods import MULTITASK_METHODS
from bench.multitask.network import ENCODERS
from bench.multitask.tasks import Task, resolve_tasks

HP_DEFAULTS = {"gal_min": 1e-3, "gradnorm_alpha": 1.5, "aux_blocks": 4}
HP_KEYS = ("lr", "weight_lr", "gal_lr", "gal_min", "gradnorm_alpha", "aux_blocks")
KEYS = ("tasks", "methods", "encoder", "epochs", "seeds", "batch_size", "train_subset", "test_subset",
        "noise_seed", *HP_KEYS)


@dataclass(frozen=True)
class MultiTaskSettings:
    dataset: str
    tasks: tuple[Task, ...]
    methods: tuple[str, ...]
    encoder: str
    epochs: int
    seeds: tuple[int, ...]
    batch_size: int
    train_subset: int | None
    test_subset: int | None
    subset_seed: int
    noise_seed: int
    hp: dict[str, Any]


def settings_from(cfg: dict[str, Any]) -> MultiTaskSettings:
    mt = cfg.get("multitask")
    if not isinstance(mt, dict):
        raise BenchError("config lacks the [multitask] section (tasks, methods, encoder, ...); "
                         "presets with one: quick, smoke, cifar10-paper")
    check_keys(mt, KEYS, "multitask")
    data, train = cfg["data"], cfg["train"]
    dataset = data["dataset"]
    spec = DATASETS.get(dataset)
    tasks = resolve_tasks(mt.get("tasks"), has_colour=spec.channels == 3, dataset=dataset)
    methods = mt.get("methods", MULTITASK_METHODS.names())
    if not isinstance(methods, list) or not methods:
        raise BenchError(f"multitask.methods = {methods!r} is invalid: give a non-empty list from "
                         f"{', '.join(MULTITASK_METHODS.names())}")
    for m in methods:
        MULTITASK_METHODS.get(str(m))
    encoder = str(mt.get("encoder", "small-conv"))
    ENCODERS.get(encoder)
    seeds = mt.get("seeds", train.get("seeds", [0]))
    seeds = seed_list(seeds, "multitask.seeds")
    hp = {"lr": cfg.get("hp", {}).get("lr", 1e-3), **HP_DEFAULTS}
    hp.update({k: mt[k] for k in HP_KEYS if k in mt})
    hp.setdefault("weight_lr", hp["lr"])
    hp.setdefault("gal_lr", hp["lr"])
    check_hp_values(hp, "multitask")
    positive_int(hp["aux_blocks"], "multitask.aux_blocks")
    if hp["gal_min"] <= 0:
        raise BenchError(f"multitask.gal_min = {hp['gal_min']} is invalid: GALs must stay positive (> 0)")
    return MultiTaskSettings(
        dataset, tuple(tasks), tuple(str(m) for m in methods), encoder,
        positive_int(mt.get("epochs", train.get("epochs")), "multitask.epochs"), tuple(seeds),
        positive_int(mt.get("batch_size", data.get("batch_size")), "multitask.batch_size"),
        optional_positive_int(mt.get("train_subset", data.get("train_subset")), "multitask.train_subset"),
        optional_positive_int(mt.get("test_subset", data.get("test_subset")), "multitask.test_subset"),
        int(data.get("subset_seed", 0)), int(mt.get("noise_seed", 0)), hp)
