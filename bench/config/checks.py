"""The value validators of the settings parser, one per concept: unknown keys (with the nearest
valid name), hyper-parameter values and kinds, positive and non-negative integers, seed lists.
Each raises ``BenchError`` with what was wrong and what is valid; epsilon's check lives in
``core.checks`` because the attack registry needs it too."""
from __future__ import annotations

import math
from typing import Any

from core.checks import check_epsilon
from core.errors import BenchError
from core.registry import suggest



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
