"""Presets are data (TOML files in ``bench/presets/``), overridable from the command line.

A config is a nested dict with sections:
  data   dataset, subsets, augmentation, batch size
  model  architecture name
  train  epochs, seeds, defenses to train, device
  hp     hyper-parameters every defense may read (lr, alpha_max, beta_max, ...)
  defense_hp.<name>  per-defense overrides of ``hp``
  variants  named variants of a defense with other hyper-parameters
  eval, distill, multitask  sections owned by the other tracks

This module loads presets and holds the value validators (one per concept);
``bench/settings.py`` parses a whole preset into typed settings with them.
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
from bench.registry import suggest

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


def parse_value(text: str) -> Any:
    """A command-line value as TOML (numbers, lists, inline tables, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings (TOML values: numbers, lists, quoted or bare strings).

    Keys are not checked here: ``bench.settings.parse`` refuses unknown ones, so a typo in
    ``--set`` and one in a preset file get the same message.
    """
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
        node[parts[-1]] = parse_value(value.strip())
    return cfg


# ---------------------------------------------------------------- validators, one per concept

def check_keys(table: dict[str, Any], valid, where: str, what: str = "keys") -> None:
    """Refuse a key not in ``valid`` with the nearest valid name (difflib)."""
    valid = list(valid)
    for key in table:
        if key not in valid:
            name = f"{where}.{key}" if where else key
            hint = suggest(key, valid, prefix=f"{where}." if where else "")
            raise BenchError(f"unknown {'key' if where else 'section'} {name}{hint}; valid {what}"
                             f"{f' of [{where}]' if where else ''}: {', '.join(sorted(valid))}")


def check_hp_values(hp: dict[str, Any], where: str = "hp") -> None:
    """Hyper-parameters: numbers finite and >= 0; the FGSM and PGD epsilons in [0, 1]; the clean
    weight in [0, 1]; the PGD step count a positive integer."""
    for k, v in hp.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or v < 0:
            raise BenchError(f"{where}.{k} = {v!r} is invalid: hyper-parameters must be finite and >= 0")
    for key in ("fgsm_eps", "pgd_eps"):
        if key in hp:
            check_epsilon(hp[key], f"{where}.{key}")
    if "pgd_steps" in hp:
        positive_int(hp["pgd_steps"], f"{where}.pgd_steps")
    if isinstance(hp.get("fgsm_mix"), (int, float)) and hp["fgsm_mix"] > 1:
        raise BenchError(f"{where}.fgsm_mix = {hp['fgsm_mix']} is invalid: the clean weight lies in [0, 1]")


_KIND_TEXT = {"number": "a number", "boolean": "true or false", "string": "a string"}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"boolean": bool, "string": str}[kind])


def check_hp_kinds(hp: dict[str, Any], kinds: dict[str, Any], where: str = "hp") -> None:
    """Each value of the kind its key takes (``kinds``: key -> a kind or a tuple of kinds accepted)."""
    for k, v in hp.items():
        accepted = kinds.get(k)
        if accepted is None:
            continue
        accepted = (accepted,) if isinstance(accepted, str) else tuple(accepted)
        if not any(_is_kind(v, kind) for kind in accepted):
            expected = " or ".join(_KIND_TEXT[kind] for kind in accepted)
            raise BenchError(f"{where}.{k} = {v!r} is invalid: expected {expected}")


def check_epsilon(eps: float, what: str = "epsilon") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 <= eps <= 1:
        raise BenchError(f"{what} = {eps!r} is invalid: epsilon is in pixel units and must lie in [0, 1]")
    return float(eps)


def positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BenchError(f"{what} = {value!r} is invalid: expected a positive integer")
    return value


def optional_positive_int(value: Any, what: str) -> int | None:
    return None if value is None else positive_int(value, what)


def nonnegative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BenchError(f"{what} = {value!r} is invalid: expected an integer >= 0")
    return value


def seed_list(value: Any, what: str) -> tuple[int, ...]:
    """A non-empty list of integers >= 0 (``true`` is not a seed)."""
    if not isinstance(value, list) or not value or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        raise BenchError(f"{what} = {value!r} is invalid: expected a non-empty list of integers >= 0")
    return tuple(value)
