"""An attack is data: ``AttackSpec`` parsed from a short string, sweeps as products.

Grammar: ``name[:key=value,key=value,...]``, e.g. ``ifgsm:eps=0.1,steps=10,mode=worst``.
Keys: ``eps``, ``norm`` (Linf | L2), ``steps``, ``step`` (step size), ``restarts``,
``mode`` (untargeted | random | worst), ``n`` (number of test examples; default: the
sweep's ``n_test``) and attack-specific extras listed in ``attacks.registry``.
A value may list alternatives separated by ``|`` (``eps=0.05|0.1,mode=random|worst``):
the string then expands to the product of its lists, which is how sweeps are written.
Defaults (iFGSM k = 10 with step eps/k, as in the GREAT paper's tables) are filled in by
the attack's registry entry, so two strings meaning the same attack get the same ``key``.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from bench.errors import BenchError

MODES = ("untargeted", "random", "worst")
NORMS = ("Linf", "L2")
CORE_KEYS = ("eps", "norm", "steps", "step", "restarts", "mode", "n")


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
        parts += [f"{k}={_fmt(v)}" for k, v in self.params]
        return f"{self.name}:" + ",".join(parts)

    def run_key(self) -> str:
        """Key of the attack run that produces this spec's number.

        For minimum-norm attacks (CW) epsilon is a radius applied after one run, so
        specs that differ only in epsilon share a run.
        """
        from attacks.registry import ATTACKS

        return replace(self, eps=0.0).key() if ATTACKS.get(self.name).min_norm else self.key()

    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _number(key: str, text: str, kind: type) -> Any:
    try:
        v = kind(text) if kind is int else float(text)
    except ValueError:
        raise BenchError(f"attack parameter {key}={text!r} is not a valid {kind.__name__}") from None
    if kind is float and not math.isfinite(v):
        raise BenchError(f"attack parameter {key}={text!r} must be finite")
    return v


def check_attack_epsilon(eps: float, norm: str) -> float:
    """Linf epsilon is in pixel units, so it lies in [0, 1]; an L2 radius is finite and >= 0."""
    if norm == "Linf":
        from bench.config import check_epsilon

        return check_epsilon(eps, "attack epsilon")
    if not (math.isfinite(eps) and eps >= 0):
        raise BenchError(f"attack epsilon = {eps!r} is invalid: an L2 radius must be finite and >= 0")
    return float(eps)


def _split(text: str) -> tuple[str, dict[str, list[str]]]:
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


def build_spec(name: str, values: dict[str, str]) -> AttackSpec:
    """A resolved spec from one value per key (defaults and checks from the registry)."""
    from attacks.registry import ATTACKS

    info = ATTACKS.get(name)
    unknown = sorted(set(values) - set(CORE_KEYS) - set(info.extras))
    if unknown:
        valid = ", ".join(list(CORE_KEYS) + sorted(info.extras))
        raise BenchError(f"attack {name!r} has no parameter {unknown[0]!r}; valid: {valid}")
    mode = values.get("mode", "untargeted").lower()
    if mode not in MODES:
        raise BenchError(f"unknown attack mode {mode!r}; valid: {', '.join(MODES)}")
    if mode not in info.modes:
        raise BenchError(f"attack {name!r} cannot run mode {mode!r} (it supports: {', '.join(info.modes)}); "
                         "it is refused rather than silently run untargeted")
    norm = values.get("norm", info.norms[0])
    norm = {"linf": "Linf", "l2": "L2"}.get(norm.lower(), norm)
    if norm not in info.norms:
        raise BenchError(f"attack {name!r} does not support norm {norm!r}; valid: {', '.join(info.norms)}")
    eps = check_attack_epsilon(_number("eps", values["eps"], float), norm) if "eps" in values else info.default_eps
    steps = _number("steps", values["steps"], int) if "steps" in values else info.default_steps
    if steps is not None and steps <= 0:
        raise BenchError(f"attack {name!r}: steps must be a positive integer, got {steps}")
    if "steps" in values and info.default_steps is None:
        raise BenchError(f"attack {name!r} takes no 'steps'")
    step = _number("step", values["step"], float) if "step" in values else None
    if step is not None and (step <= 0 or info.default_steps is None):
        raise BenchError(f"attack {name!r}: step must be a positive number and only iterative attacks take one")
    if step is None and info.step_rule is not None:
        step = info.step_rule(eps, steps)
    restarts = _number("restarts", values["restarts"], int) if "restarts" in values else 1
    if restarts <= 0 or (restarts > 1 and not info.restartable):
        raise BenchError(f"attack {name!r}: restarts must be 1" + ("" if not info.restartable else " or more")
                         + f", got {restarts}")
    n = _number("n", values["n"], int) if "n" in values else None
    if n is not None and n <= 0:
        raise BenchError(f"attack {name!r}: n must be a positive integer, got {n}")
    params = dict(info.extras)
    for k in set(values) & set(info.extras):
        params[k] = _number(k, values[k], type(info.extras[k]))
        if params[k] < 0:
            raise BenchError(f"attack {name!r}: {k} must be >= 0, got {params[k]}")
    return AttackSpec(name, float(eps), norm, steps, step, restarts, mode, n, tuple(sorted(params.items())))


def expand(text: str) -> list[AttackSpec]:
    """Every spec an attack string stands for (the product of its ``|`` lists)."""
    name, values = _split(text)
    keys = list(values)
    return [build_spec(name, dict(zip(keys, combo))) for combo in itertools.product(*(values[k] for k in keys))]


def parse_spec(text: str) -> AttackSpec:
    """Exactly one spec (no ``|`` lists)."""
    specs = expand(text)
    if len(specs) != 1:
        raise BenchError(f"attack spec {text!r} stands for {len(specs)} attacks; use expand() for sweeps")
    return specs[0]


def sweep(attacks: Iterable[str], eps: Iterable[float] | None = None,
          modes: Iterable[str] | None = None) -> list[AttackSpec]:
    """The product attack x epsilon x mode, without duplicates, in a stable order.

    ``eps`` and ``modes`` apply to attack strings that do not set them themselves.
    """
    out: dict[str, AttackSpec] = {}
    for text in attacks:
        name, values = _split(text)
        extra: list[str] = []
        if eps is not None and "eps" not in values:
            extra.append("eps=" + "|".join(repr(float(e)) for e in eps))
        if modes is not None and "mode" not in values:
            extra.append("mode=" + "|".join(modes))
        joined = text + ("," if ":" in text else ":") + ",".join(extra) if extra else text
        for spec in expand(joined):
            out.setdefault(spec.key(), spec)
    return list(out.values())
