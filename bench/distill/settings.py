"""The ``[distill]`` section of a preset, resolved into validated per-run settings.

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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.config import check_hp_values, check_keys, positive_int, seed_list
from bench.distill import DISTILLERS
from bench.errors import BenchError
from bench.method import hp_keys

REGIMES = ("dense", "sparse")
_TABLES = ("pairs", "dense", "sparse", "imagefolder")
# Track-level keys (see the module docstring and bench/distill/track.py, teacher.py); the
# methods' hyper-parameters are added from the DISTILLERS registry.
TRACK_KEYS = ("student", "teacher", "aux_model", "methods", "seeds", "sparse_fraction", "epochs", "sparse_epochs",
              "teacher_epochs", "teacher_seed", "teacher_lr", "optimizer", "momentum", "weight_decay", "batch_size",
              "augment", "subset_seed", "n_eval", "train_subset", "teacher_train_subset", "image_size")


def valid_keys() -> list[str]:
    keys = set(TRACK_KEYS)
    for name in DISTILLERS.names():
        keys |= hp_keys(DISTILLERS.get(name))
    return sorted(keys)


@dataclass(frozen=True)
class Pair:
    """One student/teacher combination with its merged settings per regime."""

    student: str
    teacher: str
    settings: dict[str, Any]                       # pair-level scalars (no regime tables)
    regimes: dict[str, dict[str, Any]] = field(default_factory=dict)  # regime -> merged hp

    @property
    def label(self) -> str:
        return f"{self.student}(S)+{self.teacher}(T)"


def _scalars(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k not in _TABLES}


def check_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 < value <= 1.0:
        raise BenchError(f"distill.sparse_fraction = {value!r} is invalid: expected a number in (0, 1], "
                         "e.g. 0.05 for the paper's 5% sparse regime")
    return float(value)


def _check_pair_settings(s: dict[str, Any], where: str) -> None:
    for k in ("student", "teacher"):
        if not isinstance(s.get(k), str) or not s[k]:
            raise BenchError(f"{where}.{k} is missing: name a model from `great-bench list`")
    check_fraction(s.get("sparse_fraction", 0.05))
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


def resolve(section: dict[str, Any] | None) -> tuple[dict[str, Any], list[Pair]]:
    """(track-wide settings, pairs) from a preset's ``[distill]`` table; raises BenchError."""
    if not isinstance(section, dict) or not section:
        raise BenchError("this preset has no [distill] section; use --preset quick, smoke or cifar10-paper")
    valid = valid_keys()
    check_keys(section, [*valid, *_TABLES], "distill")
    for table in ("dense", "sparse", "imagefolder"):
        if isinstance(section.get(table), dict):
            check_keys({k: v for k, v in section[table].items() if k not in _TABLES}, valid, f"distill.{table}")
    for i, raw in enumerate(section.get("pairs") or []):
        if isinstance(raw, dict):
            check_keys(raw, [*valid, "dense", "sparse"], f"distill.pairs[{i}]")
    top = _scalars(section)
    methods = top.get("methods", ["baseline", "kd", "great", "sobolev"])
    seeds = top.get("seeds", [0])
    if not isinstance(methods, list) or not methods:
        raise BenchError(f"distill.methods = {methods!r} is invalid: a non-empty list of method names")
    for m in methods:
        DISTILLERS.get(m)  # unknown name -> BenchError listing the valid ones
    seeds = list(seed_list(seeds, "distill.seeds"))
    raw_pairs = section.get("pairs") or [{}]
    if not isinstance(raw_pairs, list) or not all(isinstance(p, dict) for p in raw_pairs):
        raise BenchError("distill.pairs must be an array of tables ([[distill.pairs]])")
    pairs = []
    for i, raw in enumerate(raw_pairs):
        where = f"distill.pairs[{i}]" if section.get("pairs") else "distill"
        merged = {**top, **_scalars(raw)}
        _check_pair_settings(merged, where)
        regimes = {}
        for regime in REGIMES:
            hp = {**merged, **section.get(regime, {}), **raw.get(regime, {})}
            _check_pair_settings(hp, f"{where}.{regime}")
            regimes[regime] = hp
        pairs.append(Pair(merged["student"], merged["teacher"], merged, regimes))
    return {"methods": methods, "seeds": seeds}, pairs
