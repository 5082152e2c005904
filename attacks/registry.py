"""ATTACKS: attack name -> how to build its torchattacks object, and what it supports.

Each entry says which modes and norms the attack can do; ``attacks.specs`` refuses the
rest with a clear error (a targeted request is never silently run untargeted). Builders
receive a resolved ``AttackSpec`` and return a torchattacks ``Attack`` that keeps the
model in eval mode and, for targeted modes, reads target labels given by the harness
(torchattacks' by-label mode).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch.nn as nn

from attacks.apgd import apgd_pair
from attacks.autoattack import standard_autoattack
from attacks.carlini_wagner import carlini_wagner_l2
from attacks.fmn import FMNL2, WarmFMNL2
from attacks.specs import CORE_KEYS, MODES, AttackSpec, parse_number, split_spec
from core.checks import check_epsilon
from core.errors import BenchError
from core.registry import Registry

@dataclass(frozen=True)
class AttackInfo:
    build: Callable[[nn.Module, AttackSpec, int, int], Any]  # (model, spec, num_classes, seed)
    modes: tuple[str, ...] = MODES
    norms: tuple[str, ...] = ("Linf",)
    default_eps: float = 0.0
    default_steps: int | None = None
    step_rule: Callable[[float, int | None], float] | None = None  # default step size
    restartable: bool = False          # restarts > 1 allowed (random start)
    own_restarts: bool = False         # the attack runs its restarts itself (the harness runs it once)
    min_norm: bool = False             # eps is a radius applied after one run (CW, FMN)
    combines: tuple[str, ...] = ()     # min-norm attacks whose per-example best this entry reports
    black_box: bool = False            # uses only model outputs (masking check)
    transfer: bool = False             # made on another model (eval.transfer_source), then evaluated on
                                       # this one: ``bench.eval.transfer``, not the per-model loop
    iterative: bool = False
    extras: dict[str, Any] = field(default_factory=dict)  # extra parameters and their defaults
    doc: str = ""


ATTACKS: Registry[AttackInfo] = Registry("attack")


def configure(atk, spec: AttackSpec):
    """Eval mode during the attack, and targets from the harness for targeted modes."""
    atk.set_model_training_mode(model_training=False, batchnorm_training=False, dropout_training=False)
    if spec.targeted:
        atk.set_mode_targeted_by_label(quiet=True)
    return atk


class Clean:
    """The identity "attack": the no-attack column of the tables."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, x, y):
        return x.detach().clone()


def _fgsm(model, spec, num_classes, seed):
    import torchattacks

    return configure(torchattacks.FGSM(model, eps=spec.eps), spec)


def _bim(model, spec, num_classes, seed):
    import torchattacks

    return configure(torchattacks.BIM(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps), spec)


def _pgd(model, spec, num_classes, seed):
    import torchattacks

    if spec.norm == "L2":
        atk = torchattacks.PGDL2(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps, random_start=True)
    else:
        atk = torchattacks.PGD(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps, random_start=True)
    return configure(atk, spec)


def _transfer(model, spec, num_classes, seed):
    """The attack run on the transfer source: PGD with a random start, or MI-FGSM (Dong et
    al. 2018, no random start) when ``momentum`` > 0, which is meant to transfer better."""
    import torchattacks

    if spec.param("momentum") > 0:
        atk = torchattacks.MIFGSM(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps,
                                  decay=spec.param("momentum"))
    else:
        atk = torchattacks.PGD(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps, random_start=True)
    return configure(atk, spec)


def _cw(model, spec, num_classes, seed):
    if int(spec.param("search")) < 1:
        raise BenchError(f"{spec.key()}: search (binary-search steps over c) must be at least 1; "
                         "Carlini & Wagner use 9")
    return carlini_wagner_l2(model, steps=spec.steps, binary_search_steps=int(spec.param("search")),
                             initial_const=spec.param("c"), stepsize=spec.param("lr"),
                             confidence=spec.param("kappa"), targeted=spec.targeted)


def _fmn(model, spec, num_classes, seed):
    return FMNL2(model, steps=spec.steps, alpha0=spec.param("alpha0"), gamma0=spec.param("gamma0"),
                 targeted=spec.targeted)


def _fmn_warm(model, spec, num_classes, seed):
    return WarmFMNL2(model, steps=spec.steps, alpha0=spec.param("alpha0"), gamma0=spec.param("gamma0"),
                     init_eps=spec.param("init_eps"), init_steps=int(spec.param("init_steps")),
                     n_classes=num_classes, seed=seed)


def _combined(model, spec, num_classes, seed):
    raise BenchError(f"{spec.name!r} reports the per-example best of {', '.join(ATTACKS.get(spec.name).combines)}; "
                     "the harness (bench.eval.evaluate) runs those attacks and combines them")


def _square(model, spec, num_classes, seed):
    import torchattacks

    atk = torchattacks.Square(model, norm=spec.norm, eps=spec.eps, n_queries=int(spec.param("queries")),
                              n_restarts=1, p_init=spec.param("p_init"), loss="margin", seed=seed)
    return configure(atk, spec)


def _apgd(model, spec, num_classes, seed):
    return apgd_pair(model, norm=spec.norm, eps=spec.eps, steps=spec.steps, restarts=spec.restarts,
                     dlr_targets=int(spec.param("dlr_targets")), n_classes=num_classes, seed=seed)


def _autoattack(model, spec, num_classes, seed):
    return standard_autoattack(model, norm=spec.norm, eps=spec.eps, n_classes=num_classes, seed=seed,
                               steps=spec.steps, queries=int(spec.param("queries")))


ATTACKS.add("none", AttackInfo(lambda m, s, c, seed: Clean(m), modes=("untargeted",), norms=("Linf", "L2"),
                               doc="no attack: clean accuracy"))
ATTACKS.add("fgsm", AttackInfo(_fgsm, default_eps=0.1,
                               doc="FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps"))
ATTACKS.add("ifgsm", AttackInfo(_bim, default_eps=0.1, default_steps=10, step_rule=lambda e, k: e / k,
                                iterative=True,
                                doc="iFGSM = torchattacks BIM (Kurakin et al.): k = 10 steps of eps/k"))
ATTACKS.add("pgd", AttackInfo(_pgd, norms=("Linf", "L2"), default_eps=0.1, default_steps=20,
                              step_rule=lambda e, k: 2.5 * e / k, restartable=True, iterative=True,
                              doc="PGD (Madry et al.): random start, k steps of 2.5 eps/k, restarts"))
ATTACKS.add("transfer", AttackInfo(_transfer, modes=("untargeted",), default_eps=0.1, default_steps=20,
                                   step_rule=lambda e, k: 2.5 * e / k, iterative=True, transfer=True,
                                   extras={"momentum": 0.0},
                                   doc="transfer (Athalye et al. 2018; Carlini et al. 2019): PGD (momentum= > 0: "
                                       "MI-FGSM) on the eval.transfer_source run of the same dataset and seed, "
                                       "the examples evaluated on every other model"))
ATTACKS.add("cw", AttackInfo(_cw, norms=("L2",), default_eps=1.0, default_steps=100, min_norm=True,
                             iterative=True, extras={"search": 9, "c": 0.01, "kappa": 0.0, "lr": 0.01},
                             doc="Carlini-Wagner L2 (foolbox): minimum-norm, per-example binary search over c "
                                 "(search= steps, from c=), steps= Adam steps of lr= each; every radius from one run"))
ATTACKS.add("fmn", AttackInfo(_fmn, norms=("L2",), default_eps=1.0, default_steps=100, min_norm=True,
                              iterative=True, extras={"alpha0": 1.0, "gamma0": 0.05},
                              doc="fast minimum-norm L2 (Pintor et al. 2021): adaptive radius, steps= iterations; "
                                  "every radius from one run"))
ATTACKS.add("fmn-warm", AttackInfo(_fmn_warm, modes=("untargeted",), norms=("L2",), default_eps=1.0,
                                   default_steps=100, min_norm=True, iterative=True,
                                   extras={"alpha0": 1.0, "gamma0": 0.05, "init_eps": 3.0, "init_steps": 100},
                                   doc="FMN started from the adversarials of an L2 APGD (CE+DLR, init_steps "
                                       "steps) at radius init_eps: finds the far examples' nearer boundary "
                                       "points; every radius from one run"))


def combined_info(names: tuple[str, ...], doc: str) -> AttackInfo:
    """A registry entry reporting the per-example best of the minimum-norm attacks ``names``.

    It takes each part's parameters prefixed by the part's name (``cw_steps``, ``cw_c``,
    ``fmn_steps``, ...), with the part's own defaults.
    """
    extras: dict[str, Any] = {}
    for name in names:
        part = ATTACKS.get(name)
        if not part.min_norm or part.combines:
            raise ValueError(f"{name!r} is not a single minimum-norm attack")
        extras[f"{name}_steps"] = part.default_steps
        extras.update({f"{name}_{k}": v for k, v in part.extras.items()})
    return AttackInfo(_combined, norms=("L2",), default_eps=1.0, min_norm=True, iterative=True,
                      combines=names, extras=extras, doc=doc)


# fmn-warm joined in issue 20: with cw and fmn alone the curve stayed up to 7 points above a
# fixed-radius L2 APGD at radii 1.5-2 on the quick checkpoints (more steps did not help).
ATTACKS.add("l2min", combined_info(("cw", "fmn", "fmn-warm"),
                                   "minimum-norm L2: per example the smallest adversarial found by cw, fmn and "
                                   "fmn-warm (their parameters prefixed: cw_steps=, fmn_steps=, fmn-warm_init_eps=, ...; "
                                   "a part with steps 0 is left out, e.g. cw_steps=0)"))
ATTACKS.add("square", AttackInfo(_square, norms=("Linf", "L2"), default_eps=0.1, black_box=True, iterative=True,
                                 extras={"queries": 1000, "p_init": 0.8},
                                 doc="Square attack (Andriushchenko et al.): score-based black box"))
ATTACKS.add("apgd", AttackInfo(_apgd, modes=("untargeted",), norms=("Linf", "L2"), default_eps=0.1,
                               default_steps=100, restartable=True, own_restarts=True, iterative=True,
                               extras={"dlr_targets": 0},
                               doc="APGD (Croce & Hein 2020) at a fixed radius: APGD-CE, then on the survivors "
                                   "APGD-DLR (dlr_targets=0) or APGD-T over that many target classes; "
                                   "restarts= random starts per loss; Linf or L2"))
ATTACKS.add("autoattack", AttackInfo(_autoattack, modes=("untargeted",), norms=("Linf", "L2"), default_eps=0.1,
                                     default_steps=100, iterative=True, extras={"queries": 5000},
                                     doc="standard AutoAttack: APGD-CE, APGD-T, FAB-T, Square (100 steps)"))


def build_attack(model: nn.Module, spec: AttackSpec, num_classes: int, seed: int):
    return ATTACKS.get(spec.name).build(model, spec, num_classes, seed)


# ---------------------------------------------------------------- resolving spec strings

def check_attack_epsilon(eps: float, norm: str) -> float:
    """Linf epsilon is in pixel units, so it lies in [0, 1]; an L2 radius is finite and >= 0."""
    if norm == "Linf":
        return check_epsilon(eps, "attack epsilon")
    if not (math.isfinite(eps) and eps >= 0):
        raise BenchError(f"attack epsilon = {eps!r} is invalid: an L2 radius must be finite and >= 0")
    return float(eps)


def build_spec(name: str, values: dict[str, str]) -> AttackSpec:
    """A resolved spec from one value per key (defaults and checks from the registry)."""
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
    eps = check_attack_epsilon(parse_number("eps", values["eps"], float), norm) if "eps" in values else info.default_eps
    steps = parse_number("steps", values["steps"], int) if "steps" in values else info.default_steps
    if steps is not None and steps <= 0:
        raise BenchError(f"attack {name!r}: steps must be a positive integer, got {steps}")
    if "steps" in values and info.default_steps is None:
        raise BenchError(f"attack {name!r} takes no 'steps'")
    step = parse_number("step", values["step"], float) if "step" in values else None
    if step is not None and (step <= 0 or info.default_steps is None):
        raise BenchError(f"attack {name!r}: step must be a positive number and only iterative attacks take one")
    if step is None and info.step_rule is not None:
        step = info.step_rule(eps, steps)
    restarts = parse_number("restarts", values["restarts"], int) if "restarts" in values else 1
    if restarts <= 0 or (restarts > 1 and not info.restartable):
        raise BenchError(f"attack {name!r}: restarts must be 1" + ("" if not info.restartable else " or more")
                         + f", got {restarts}")
    n = parse_number("n", values["n"], int) if "n" in values else None
    if n is not None and n <= 0:
        raise BenchError(f"attack {name!r}: n must be a positive integer, got {n}")
    cascade = parse_number("cascade", values["cascade"], int) if "cascade" in values else 0
    if cascade not in (0, 1):
        raise BenchError(f"attack {name!r}: cascade must be 0 or 1, got {cascade}")
    if cascade and (info.min_norm or mode != "untargeted" or name == "none"):
        raise BenchError(f"attack {name!r}: cascade=1 applies to untargeted fixed-radius attacks (it attacks "
                         "the examples the other attacks at that epsilon left correct), not to mode "
                         f"{mode!r}, minimum-norm attacks or 'none'")
    if cascade and info.transfer:
        raise BenchError(f"attack {name!r}: cascade=1 does not apply: its examples are made once on the source "
                         "model for every target, not per target on the examples left correct")
    params = dict(info.extras)
    for k in set(values) & set(info.extras):
        params[k] = parse_number(k, values[k], type(info.extras[k]))
        if params[k] < 0:
            raise BenchError(f"attack {name!r}: {k} must be >= 0, got {params[k]}")
    return AttackSpec(name, float(eps), norm, steps, step, restarts, mode, n, tuple(sorted(params.items())),
                      bool(cascade), min_norm=info.min_norm)


def expand(text: str) -> list[AttackSpec]:
    """Every spec an attack string stands for (the product of its ``|`` lists)."""
    name, values = split_spec(text)
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
        name, values = split_spec(text)
        extra: list[str] = []
        if eps is not None and "eps" not in values:
            extra.append("eps=" + "|".join(repr(float(e)) for e in eps))
        if modes is not None and "mode" not in values:
            extra.append("mode=" + "|".join(modes))
        joined = text + ("," if ":" in text else ":") + ",".join(extra) if extra else text
        for spec in expand(joined):
            out.setdefault(spec.key(), spec)
    return list(out.values())


def component_specs(spec: AttackSpec) -> list[AttackSpec]:
    """The attacks a combined entry (``l2min``) takes the per-example best of: same norm, mode
    and n, and the parameters given to it with the part's prefix; a part with ``<part>_steps=0``
    is left out (issue 27: CW decided no example of the quick models at any radius). The same attack listed on
    its own in a sweep with the same settings has the same key, so the harness runs it once."""
    out = []
    for name in ATTACKS.get(spec.name).combines:
        if spec.param(f"{name}_steps") == 0:  # a part given 0 steps is left out
            continue
        values = {"norm": spec.norm, "mode": spec.mode}
        for key, value in spec.params:
            if key.startswith(name + "_"):
                values[key[len(name) + 1:]] = repr(value) if isinstance(value, float) else str(value)
        if spec.n is not None:
            values["n"] = str(spec.n)
        out.append(build_spec(name, values))
    if not out:
        raise BenchError(f"{spec.key()}: every part of {spec.name!r} has steps 0; keep at least one of "
                         f"{', '.join(ATTACKS.get(spec.name).combines)}")
    return out
