"""Presets are data (TOML files in ``bench/presets/``), overridable from the command line.

A config is a nested dict with sections:
  data   dataset, subsets, augmentation, batch size
  model  architecture name
  train  epochs, seeds, defenses to train, device
  hp     hyper-parameters every defense may read (lr, alpha_max, beta_max, ...)
  defense_hp.<name>  per-defense overrides of ``hp``
  variants  named variants of a defense with other hyper-parameters
  eval, distill, multitask  sections owned by the other tracks

This module loads presets and applies command-line overrides; ``bench/config/checks.py`` holds
the value validators and ``bench/config/settings.py`` parses a whole preset into typed settings.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from core.errors import BenchError

PRESET_DIR = Path(__file__).parents[1] / "presets"


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

    Keys are not checked here: ``bench.config.settings.parse`` refuses unknown ones, so a typo in
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
