"""An attack is data: ``AttackSpec`` parsed from a short string, sweeps as products.

Grammar: ``name[:key=value,key=value,...]``, e.g. ``ifgsm:eps=0.1,steps=10,mode=worst``.
Keys: ``eps``, ``norm`` (Linf | L2), ``steps``, ``step`` (step size), ``restarts``,
``mode`` (untargeted | random | worst), ``n`` (number of test examples; default: the
sweep's ``n_test``), ``cascade`` (1: attack only the examples every other attack at the same
norm and epsilon left correct; the row is then their worst case) and attack-specific extras
listed in ``attacks.registry``.
A value may list alternatives separated by ``|`` (``eps=0.05|0.1,mode=random|worst``):
the string then expands to the product of its lists, which is how sweeps are written.
Defaults (iFGSM k = 10 with step eps/k, as in the GREAT paper's tables) are filled in by
the attack's registry entry, so two strings meaning the same attack get the same ``key``.

This module is a leaf: it says what a spec is and splits strings; ``attacks.registry``
resolves them (``parse_spec``, ``expand``, ``sweep``) against the registered attacks.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import BenchError

MODES = ("untargeted", "random", "worst")
NORMS = ("Linf", "L2")
CORE_KEYS = ("eps", "norm", "steps", "step", "restarts", "mode", "n", "cascade")


@dataclass(frozen=True)
class AttackSpec:
    """One fully resolved attack configuration (what a CSV row records)."""

    name: str
    eps: float = 0.0
    norm: str = "Linf"
    steps: int | None = None
    step_size: float | None = None
    restarts: int = 1
    mode: str = "untargeted"
    n: int | None = None
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    # Run only on the examples that survive the other attacks at this norm and epsilon
    # (``bench.eval.evaluate``): the row is the worst case over them and this attack.
    cascade: bool = False
    # Minimum-norm attack (CW): epsilon is a radius applied after one run. Filled in from
    # the registry entry when the spec is resolved; not part of ``key`` (the name implies it).
    min_norm: bool = field(default=False, compare=False)
    # The units the preset wrote this attack's epsilon in ("pixel" or "normalized",
    # ``bench.config.epsilon_units``); ``eps`` itself is always pixels. A record for the row's
    # ``epsilon_units``, not part of ``key``: the attack is the same in either units.
    units: str = field(default="pixel", compare=False)

    @property
    def targeted(self) -> bool:
        return self.mode != "untargeted"

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def key(self) -> str:
        """Canonical string: equal keys mean the same attack on the same examples."""
        parts = [f"eps={_fmt(self.eps)}", f"norm={self.norm}"]
        if self.steps is not None:
            parts.append(f"steps={self.steps}")
        if self.step_size is not None:
            parts.append(f"step={_fmt(self.step_size)}")
        parts += [f"restarts={self.restarts}", f"mode={self.mode}"]
        if self.n is not None:
            parts.append(f"n={self.n}")
        if self.cascade:  # written only when set: the keys of existing rows stay as they were
            parts.append("cascade=1")
        parts += [f"{k}={_fmt(v)}" for k, v in self.params]
        return f"{self.name}:" + ",".join(parts)

    def run_key(self) -> str:
        """Key of the attack run that produces this spec's number.

        For minimum-norm attacks (CW) epsilon is a radius applied after one run, so
        specs that differ only in epsilon share a run.
        """
        return replace(self, eps=0.0).key() if self.min_norm else self.key()

    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def parse_number(key: str, text: str, kind: type) -> Any:
    try:
        v = kind(text) if kind is int else float(text)
    except ValueError:
        raise BenchError(f"attack parameter {key}={text!r} is not a valid {kind.__name__}") from None
    if kind is float and not math.isfinite(v):
        raise BenchError(f"attack parameter {key}={text!r} must be finite")
    return v


def split_spec(text: str) -> tuple[str, dict[str, list[str]]]:
    text = text.strip()
    if not text:
        raise BenchError("empty attack spec; expected e.g. 'ifgsm:eps=0.1,mode=worst'")
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    values: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key or not value.strip():
            raise BenchError(f"attack spec {text!r}: {item!r} must look like key=value")
        if key in values:
            raise BenchError(f"attack spec {text!r}: {key!r} given twice")
        values[key] = [v.strip() for v in value.split("|") if v.strip()]
    return name, values


