"""The ``[eval]`` section of a preset as typed settings, and the sweep it names."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from bench.config.checks import check_keys, nonnegative_int, positive_int
from core.checks import check_epsilon
from attacks.registry import sweep
from attacks.specs import AttackSpec
from bench.config.epsilon_units import check_units, pixel_sweep, to_pixels
from core.errors import BenchError


@dataclass(frozen=True)
class EvalSettings:
    """The ``[eval]`` section of a preset, checked. ``epsilon`` is also the distillation
    track's attack radius; an empty ``sweep`` means the paper's (``paper_sweep``).

    ``epsilon_units`` says what the preset's distances (``epsilon``, ``large_epsilon``,
    ``cw_radius`` and each sweep entry's ``eps=`` and ``step=``) are written in: "pixel"
    ([0, 1] images) or "normalized" (the paper's (x - mean) / std inputs, ``bench.config.epsilon_units``).
    ``eval_settings`` converts them to pixels once: after parsing, every distance here is in
    pixel units and ``epsilon_units`` is the record of what was asked (rows and captions show it).
    """

    epsilon: float = 0.1
    n_test: int | None = None
    seed: int = 0
    batch_size: int = 500
    sweep: tuple[str, ...] = ()
    cw_radius: float = 1.0
    large_epsilon: float = 0.5
    saliency_images: int = 4
    tol: float = 0.02
    flip_tol: float = 0.05
    near_zero: float = 0.05
    save_adv: bool = False  # keep the adversarial examples behind the worst case (great-bench verify)
    # The defense (or variant) whose run of the same dataset and seed makes the examples of
    # the sweep's transfer attacks (bench.eval.transfer): the undefended model.
    transfer_source: str = "baseline"
    epsilon_units: str = "pixel"


def paper_sweep(eps: float) -> list[str]:
    """Tables 1-2 of the paper: no attack, FGSM and iFGSM (k = 10) in all three modes."""
    return ["none", f"fgsm:eps={eps},mode=untargeted|random|worst", f"ifgsm:eps={eps},mode=untargeted|random|worst"]


def eval_settings(cfg: dict[str, Any]) -> EvalSettings:
    """The checked ``[eval]`` section (``bench.config.settings.parse`` calls it; use ``Settings.eval``)."""
    ev = dict(cfg.get("eval", {}))
    check_keys(ev, EvalSettings.__dataclass_fields__, "eval")
    sweep = ev.pop("sweep", [])
    if not isinstance(sweep, list) or not all(isinstance(a, str) for a in sweep):
        raise BenchError("eval.sweep must be a list of attack strings such as 'ifgsm:eps=0.1,mode=worst'")
    s = EvalSettings(**ev)
    check_units(s.epsilon_units)
    dataset = str(cfg.get("data", {}).get("dataset", ""))
    for k in ("epsilon", "large_epsilon", "cw_radius"):
        v = getattr(s, k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BenchError(f"eval.{k} = {v!r} is invalid: expected a number")
    # One conversion, here: below the parser every distance is in pixel units.
    s = replace(s, **{k: to_pixels(getattr(s, k), s.epsilon_units, dataset)
                      for k in ("epsilon", "large_epsilon", "cw_radius")})
    sweep = list(pixel_sweep(sweep, s.epsilon_units, dataset))
    check_epsilon(s.epsilon, "eval.epsilon (in pixels)" if s.epsilon_units != "pixel" else "eval.epsilon")
    check_epsilon(s.large_epsilon, "eval.large_epsilon")
    if s.n_test is not None:
        positive_int(s.n_test, "eval.n_test")
    positive_int(s.batch_size, "eval.batch_size")
    positive_int(s.saliency_images, "eval.saliency_images")
    nonnegative_int(s.seed, "eval.seed")
    for k in ("cw_radius", "tol", "flip_tol", "near_zero"):
        v = getattr(s, k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise BenchError(f"eval.{k} = {v!r} is invalid: expected a number >= 0")
    if not isinstance(s.transfer_source, str) or not s.transfer_source.strip():
        raise BenchError(f"eval.transfer_source = {s.transfer_source!r} is invalid: expected the name of a "
                         "defense or variant of the preset, e.g. \"baseline\"")
    if not isinstance(s.save_adv, bool):
        raise BenchError(f"eval.save_adv = {s.save_adv!r} is invalid: expected true or false")
    return replace(s, sweep=tuple(sweep or paper_sweep(s.epsilon)))


def sweep_specs(attacks: Sequence[str], units: str = "pixel") -> list[AttackSpec]:
    """The specs of pixel-unit attack strings, each tagged with the units the preset asked in
    (``EvalSettings.epsilon_units``; the rows record it). Strings from the command line are pixels."""
    specs = sweep(attacks)
    if not specs:
        raise BenchError("the sweep is empty; give at least one attack")
    return [replace(s, units=check_units(units)) for s in specs]
