"""Presets are data (TOML files in ``bench/presets/``), overridable from the command line.

A config is a nested dict with sections:
  data   dataset, subsets, augmentation, batch size
  model  architecture name
  train  epochs, seeds, defenses to train, device
  hp     hyper-parameters every defense may read (lr, alpha_max, beta_max, ...)
  defense_hp.<name>  per-defense overrides of ``hp``
  eval, distill, multitask  sections owned by the other tracks
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from bench.errors import BenchError

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset by name, or a path to a TOML file of the same shape."""
    path = Path(name)
    if not (path.suffix == ".toml" and path.is_file()):
        path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise BenchError(f"unknown preset {name!r}; valid: {', '.join(preset_names())} or a .toml file")
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"preset {path} is not valid TOML: {exc}") from None
    cfg.setdefault("preset", path.stem)
    return cfg


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings (TOML values: numbers, lists, quoted or bare strings)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"override {item!r} must look like section.key=value, e.g. train.epochs=3")
        node = cfg
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BenchError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_value(value.strip())
    return cfg


def check_hyperparameters(hp: dict[str, Any], where: str = "hp") -> None:
    """Hyper-parameters must be finite and non-negative numbers."""
    for k, v in hp.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or v < 0:
            raise BenchError(f"{where}.{k} = {v!r} is invalid: hyper-parameters must be finite and >= 0")


def check_epsilon(eps: float, what: str = "epsilon") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 <= eps <= 1:
        raise BenchError(f"{what} = {eps!r} is invalid: epsilon is in pixel units and must lie in [0, 1]")
    return float(eps)


def positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BenchError(f"{what} = {value!r} is invalid: expected a positive integer")
    return value


def defense_hp(cfg: dict[str, Any], defense: str) -> dict[str, Any]:
    """``hp`` merged with ``defense_hp.<defense>``, validated."""
    hp = dict(cfg.get("hp", {}))
    hp.update(cfg.get("defense_hp", {}).get(defense, {}))
    check_hyperparameters(hp, f"hp (defense {defense})")
    if "fgsm_eps" in hp:
        check_epsilon(hp["fgsm_eps"], "hp.fgsm_eps")
    if "fgsm_mix" in hp and hp["fgsm_mix"] > 1:
        raise BenchError(f"hp.fgsm_mix = {hp['fgsm_mix']} is invalid: the clean weight lies in [0, 1]")
    return hp


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check the parts of a config every command relies on; return it."""
    for section in ("data", "model", "train"):
        if not isinstance(cfg.get(section), dict):
            raise BenchError(f"config lacks the [{section}] section")
    positive_int(cfg["train"].get("epochs"), "train.epochs")
    positive_int(cfg["data"].get("batch_size"), "data.batch_size")
    for k in ("train_subset", "test_subset"):
        if cfg["data"].get(k) is not None:
            positive_int(cfg["data"][k], f"data.{k}")
    seeds = cfg["train"].get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise BenchError(f"train.seeds = {seeds!r} is invalid: expected a list of non-negative integers")
    check_hyperparameters(cfg.get("hp", {}))
    for name, sub in cfg.get("defense_hp", {}).items():
        check_hyperparameters(sub, f"defense_hp.{name}")
    if "eval" in cfg and "epsilon" in cfg["eval"]:
        check_epsilon(cfg["eval"]["epsilon"], "eval.epsilon")
    return cfg
