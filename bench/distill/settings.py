"""The ``[distill]`` section of a preset, parsed into a typed ``DistillSettings``.

Layout (keys at the top level are defaults; a pair or a regime table overrides them)::

    [distill]
    student = "cnn5"            # architectures from bench.models
    teacher = "resnet18-w16"
    aux_model = "cnn5"          # discriminator architecture (default: the student's)
    methods = ["baseline", "kd", "great", "sobolev"]
    seeds = [0, 1]
    sparse_fraction = 0.05      # the sparse regime: this fraction of the dense train set
    epochs = 3                  # student epochs (dense); sparse_epochs for the sparse regime
    teacher_epochs = 4
    lr = 1e-3
    great_alpha = 0.1
    kd_temperature = 20.0
    [distill.dense]             # per-regime values (supplement)
    kd_alpha = 0.1
    [distill.sparse]
    kd_alpha = 0.99
    [[distill.pairs]]           # optional: several student/teacher pairs, each may override
    student = "resnet18"        # any key above, and carry its own dense/sparse tables
    [distill.imagefolder]       # used instead when --data-dir is an ImageFolder tree

Track-wide values default to the preset's: ``batch_size``, ``augment`` and ``subset_seed``
to ``[data]``, ``n_eval`` to ``eval.n_test``; the attack radius is ``eval.epsilon``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.config.checks import (check_hp_kinds, check_hp_values, check_keys, nonnegative_int, optional_positive_int,
                                 positive_int, seed_list)
from bench.splits import DataSettings
from bench.distill import DISTILLERS
from core.errors import BenchError
from bench.config.eval_settings import EvalSettings
from bench.method import hp_keys, hp_kinds

REGIMES = ("dense", "sparse")
_TABLES = ("pairs", "dense", "sparse", "imagefolder")
# Track-level keys (see the module docstring and bench/distill/track.py, teacher.py); the
# methods' hyper-parameters are added from the DISTILLERS registry.
TRACK_KEYS = ("student", "teacher", "aux_model", "methods", "seeds", "sparse_fraction", "epochs", "sparse_epochs",
              "teacher_epochs", "teacher_seed", "teacher_lr", "optimizer", "momentum", "weight_decay", "batch_size",
              "augment", "subset_seed", "n_eval", "train_subset", "teacher_train_subset", "image_size")
# The optimiser keys a teacher shares with its students (``teacher_lr`` replaces ``lr``).
TEACHER_OPTIMIZER_KEYS = ("optimizer", "momentum", "weight_decay")
DEFAULTS = {"methods": ["baseline", "kd", "great", "sobolev"], "seeds": [0], "sparse_fraction": 0.05,
            "teacher_seed": 0, "image_size": 64}


def value_kinds() -> dict[str, str]:
    """What each value must be: the distillers' declared kinds, the optimiser's and the teacher's."""
    kinds = {"teacher_lr": "number", "momentum": "number", "weight_decay": "number", "optimizer": "string",
             "augment": "string", "student": "string", "teacher": "string"}
    for name in DISTILLERS.names():
        kinds.update(hp_kinds(DISTILLERS.get(name)))
    return kinds


def valid_keys() -> list[str]:
    keys = set(TRACK_KEYS)
    for name in DISTILLERS.names():
        keys |= hp_keys(DISTILLERS.get(name))
    return sorted(keys)


@dataclass(frozen=True)
class TeacherSettings:
    """The teacher of a pair: architecture, epochs, seed and its optimiser's hyper-parameters."""

    arch: str
    epochs: int
    seed: int
    hp: dict[str, Any]


@dataclass(frozen=True)
class Regime:
    """One regime of a pair: its share of the training set, epochs and the methods' ``ctx.hp``."""

    name: str
    fraction: float
    epochs: int
    hp: dict[str, Any]


@dataclass(frozen=True)
class Pair:
    """One student/teacher combination with its merged settings per regime."""

    student: str
    teacher: TeacherSettings
    regimes: tuple[Regime, ...]

    @property
    def label(self) -> str:
        return f"{self.student}(S)+{self.teacher.arch}(T)"


@dataclass(frozen=True)
class DistillSettings:
    """The whole track: methods x seeds x pairs x regimes, and what every run shares."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    pairs: tuple[Pair, ...]
    batch_size: int
    augment: str
    subset_seed: int
    n_eval: int | None
    epsilon: float
    train_subset: int | None = None
    teacher_train_subset: int | None = None
    image_size: int = DEFAULTS["image_size"]
    imagefolder: "DistillSettings | None" = None   # in force when --data-dir is an ImageFolder tree


def _scalars(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k not in _TABLES}


def check_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 < value <= 1.0:
        raise BenchError(f"distill.sparse_fraction = {value!r} is invalid: expected a number in (0, 1], "
                         "e.g. 0.05 for the paper's 5% sparse regime")
    return float(value)


def _check_pair_settings(s: dict[str, Any], where: str) -> None:
    check_hp_kinds(s, value_kinds(), where)
    for k in ("student", "teacher"):
        if not isinstance(s.get(k), str) or not s[k]:
            raise BenchError(f"{where}.{k} is missing: name a model from `great-bench list`")
    check_fraction(s.get("sparse_fraction", DEFAULTS["sparse_fraction"]))
    positive_int(s.get("epochs"), f"{where}.epochs")
    positive_int(s.get("teacher_epochs"), f"{where}.teacher_epochs")
    if s.get("sparse_epochs") is not None:
        positive_int(s["sparse_epochs"], f"{where}.sparse_epochs")
    for k in ("great_alpha", "kd_alpha"):
        if k in s and not (isinstance(s[k], (int, float)) and 0.0 <= s[k] <= 1.0):
            raise BenchError(f"{where}.{k} = {s[k]!r} is invalid: a loss weight in [0, 1]")
    if "kd_temperature" in s and not (isinstance(s["kd_temperature"], (int, float)) and s["kd_temperature"] > 0):
        raise BenchError(f"{where}.kd_temperature = {s['kd_temperature']!r} is invalid: must be > 0")
    check_hp_values({k: v for k, v in s.items() if k != "seeds"}, where)


def _teacher(s: dict[str, Any], where: str) -> TeacherSettings:
    hp = {k: s[k] for k in TEACHER_OPTIMIZER_KEYS if k in s}
    if "teacher_lr" in s or "lr" in s:  # else the optimiser's own default rate
        hp["lr"] = float(s.get("teacher_lr", s.get("lr")))
    seed = nonnegative_int(s.get("teacher_seed", DEFAULTS["teacher_seed"]), f"{where}.teacher_seed")
    return TeacherSettings(s["teacher"], s["teacher_epochs"], seed, hp)


def _pairs(section: dict[str, Any], valid: list[str]) -> tuple[Pair, ...]:
    for table in ("dense", "sparse", "imagefolder"):
        if isinstance(section.get(table), dict):
            check_keys({k: v for k, v in section[table].items() if k not in _TABLES}, valid, f"distill.{table}")
    for i, raw in enumerate(section.get("pairs") or []):
        if isinstance(raw, dict):
            check_keys(raw, [*valid, "dense", "sparse"], f"distill.pairs[{i}]")
    defaults = _scalars(section)
    raw_pairs = section.get("pairs") or [{}]
    if not isinstance(raw_pairs, list) or not all(isinstance(p, dict) for p in raw_pairs):
        raise BenchError("distill.pairs must be an array of tables ([[distill.pairs]])")
    pairs = []
    for i, raw in enumerate(raw_pairs):
        where = f"distill.pairs[{i}]" if section.get("pairs") else "distill"
        merged = {**defaults, **_scalars(raw)}
        _check_pair_settings(merged, where)
        regimes = []
        for regime in REGIMES:
            hp = {**merged, **section.get(regime, {}), **raw.get(regime, {})}
            _check_pair_settings(hp, f"{where}.{regime}")
            dense = regime == "dense"
            epochs = hp["epochs"] if dense or hp.get("sparse_epochs") is None else hp["sparse_epochs"]
            fraction = 1.0 if dense else check_fraction(hp.get("sparse_fraction", DEFAULTS["sparse_fraction"]))
            regimes.append(Regime(regime, fraction, epochs, hp))
        pairs.append(Pair(merged["student"], _teacher(merged, where), tuple(regimes)))
    return tuple(pairs)


def resolve(section: dict[str, Any] | None, data: DataSettings, ev: EvalSettings,
            *, nested: bool = False) -> DistillSettings:
    """The typed track from a preset's ``[distill]`` table, its ``[data]`` and ``[eval]``; raises BenchError."""
    if not isinstance(section, dict) or not section:
        raise BenchError("this preset has no [distill] section; use --preset quick, smoke or cifar10-paper")
    valid = valid_keys()
    check_keys(section, [*valid, *_TABLES], "distill")
    top = _scalars(section)
    methods = top.get("methods", DEFAULTS["methods"])
    if not isinstance(methods, list) or not methods:
        raise BenchError(f"distill.methods = {methods!r} is invalid: a non-empty list of method names")
    for m in methods:
        DISTILLERS.get(m)  # unknown name -> BenchError listing the valid ones
    seeds = seed_list(top.get("seeds", DEFAULTS["seeds"]), "distill.seeds")
    subset_seed = nonnegative_int(top.get("subset_seed", data.subset_seed), "distill.subset_seed")
    imagefolder = None
    if isinstance(section.get("imagefolder"), dict) and not nested:
        # The mini-ImageNet setting: [distill.imagefolder] overrides [distill]; the CIFAR pairs do not apply.
        sub = {k: v for k, v in section.items() if k not in ("imagefolder", "pairs")} | section["imagefolder"]
        imagefolder = resolve(sub, data, ev, nested=True)
    elif "imagefolder" in section and not isinstance(section["imagefolder"], dict):
        raise BenchError("distill.imagefolder must be a table ([distill.imagefolder])")
    return DistillSettings(
        tuple(methods), seeds, _pairs(section, valid),
        positive_int(top.get("batch_size", data.batch_size), "distill.batch_size"),
        str(top.get("augment", data.augment or "none")), subset_seed,
        optional_positive_int(top.get("n_eval", ev.n_test), "distill.n_eval"), ev.epsilon,
        optional_positive_int(top.get("train_subset"), "distill.train_subset"),
        optional_positive_int(top.get("teacher_train_subset"), "distill.teacher_train_subset"),
        positive_int(top.get("image_size", DEFAULTS["image_size"]), "distill.image_size"), imagefolder)
