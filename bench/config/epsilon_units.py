"""Epsilon in pixel units or in the paper's normalised units, and the one conversion between them.

great-bench attacks images in [0, 1] pixel units. The GREAT paper's networks read
mean/std-normalised inputs, (x - mean) / std, and its Table 1 "epsilon 0.1" fits a radius in
those units (issue 22): a perturbation of size e in normalised units is e * std in pixels.

**Several channels.** CIFAR-10 and SVHN have a std per channel, and one pixel radius has to
pick one: great-bench takes the *smallest*. The pixel ball of radius e * min(std) then lies
inside the normalised ball of radius e in every channel (Linf: |d_c| <= e min std <= e std_c;
L2: ||d / std||_2 <= ||d||_2 / min std <= e), so an attack at the converted radius is never
stronger than the paper's. The mean std would put part of the ball of the smallest-std channel
outside the paper's. The two differ little (CIFAR-10: 0.2435 against a mean of 0.2507, 3%).
One-channel data (MNIST, Fashion-MNIST) have one std and no choice.

**Training radii.** A defense's hyper-parameters that are distances (``distance_hp``: FGSM-AT's
``fgsm_eps``, PGD-AT's and TRADES' ``pgd_eps``, or what a user class declares in
``distance_hyperparameters``) are written in the same units as the preset's ``[eval]`` distances
and converted by the same ``to_pixels``, in ``Settings.method_hp``: with ``epsilon_units =
"normalized"``, ``fgsm_eps = 0.2`` is the paper's supplement value and trains at 0.2 * std pixels.
A run's identity and meta.json hold the pixel value (what determines the weights), its config the
value as written.

The std comes from the dataset registry (``bench.data.DATASETS``) and nowhere else. A preset
says which units its ``[eval]`` distances are in (``eval.epsilon_units``); ``eval_settings``
converts them to pixels once, so attack specs, rows and tables are in pixel units everywhere
and rows of two presets stay comparable; each row records the units its preset asked in
(``epsilon_units``), and captions give both values (``epsilon_phrase``).
"""
from __future__ import annotations

from typing import Sequence

from attacks.registry import ATTACKS
from attacks.specs import split_spec
from bench.data import DATASETS
from core.errors import BenchError

UNITS = ("pixel", "normalized")
# Sweep-string keys that are distances (converted); attack-specific parameters such as
# fmn-warm's init_eps or cw's lr stay in pixel units.
DISTANCE_KEYS = ("eps", "step")


# Hyper-parameter keys that are distances in input space (any defense that reads them). A
# defense class may name more in ``distance_hyperparameters``.
DISTANCE_HP = ("fgsm_eps", "pgd_eps")


def distance_hp(cls: type, keys: Sequence[str]) -> tuple[str, ...]:
    """Which of a defense's hyper-parameter ``keys`` are distances, converted like eval epsilons."""
    declared = (*DISTANCE_HP, *getattr(cls, "distance_hyperparameters", ()))
    return tuple(k for k in keys if k in declared)


def hp_to_pixels(hp: dict, cls: type, units: str, dataset: str) -> dict:
    """``hp`` with its distance values (``distance_hp``) given in ``units`` rewritten in pixels."""
    keys = distance_hp(cls, list(hp))
    if check_units(units) == "pixel" or not keys:
        return hp
    return {**hp, **{k: to_pixels(hp[k], units, dataset) for k in keys}}


def check_units(units: str, where: str = "eval.epsilon_units") -> str:
    if units not in UNITS:
        raise BenchError(f"{where} = {units!r} is invalid: expected one of {', '.join(map(repr, UNITS))} "
                         "(pixel: [0, 1] images; normalized: the paper's (x - mean) / std inputs)")
    return units


def pixel_std(dataset: str) -> float:
    """The std that converts this dataset's normalised epsilon to pixels: the smallest channel's."""
    return float(min(DATASETS.get(dataset).std))


def _six_significant_digits(x: float) -> float:
    """Six significant digits: the precision an attack spec's key prints, so a converted value
    and the same value typed in pixels give one key and one CSV number."""
    return float(f"{x:.6g}")


def to_pixels(eps: float, units: str, dataset: str) -> float:
    """``eps`` given in ``units`` as a pixel-unit distance (e * std for normalised units)."""
    return float(eps) if check_units(units) == "pixel" else _six_significant_digits(eps * pixel_std(dataset))


def to_normalized(eps_pixel: float, dataset: str) -> float:
    """A pixel-unit distance in the paper's normalised units (e / std)."""
    return float(eps_pixel) / pixel_std(dataset)


def pixel_sweep(attacks: Sequence[str], units: str, dataset: str) -> tuple[str, ...]:
    """Attack strings whose ``eps=`` and ``step=`` values are in ``units``, rewritten in pixels.

    In normalised units an attack whose epsilon matters must give ``eps=``: the registry's
    default epsilon is a pixel value, and using it silently would mix the units."""
    if check_units(units) == "pixel":
        return tuple(attacks)
    out = []
    for text in attacks:
        name, values = split_spec(text)
        if "eps" not in values and ATTACKS.get(name).default_eps > 0:
            raise BenchError(f"eval.sweep entry {text!r} has no eps=, and eval.epsilon_units = 'normalized': "
                             f"give the epsilon in normalised units, e.g. '{name}:eps=0.1'")
        for key in DISTANCE_KEYS:
            if key in values:
                values[key] = [f"{to_pixels(_number(key, v, text), units, dataset):.6g}" for v in values[key]]
        params = ",".join(f"{k}={'|'.join(v)}" for k, v in values.items())
        out.append(f"{name}:{params}" if params else name)
    return tuple(out)


def _number(key: str, text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BenchError(f"attack spec {spec!r}: {key}={text!r} is not a number") from None


def epsilon_phrase(eps_pixel: float, units: str, dataset: str, norm: str = "Linf") -> str:
    """Both values of an epsilon, the asked units first: "0.1 (Linf, pixel units; = 0.283 in the
    paper's normalised units)" or "0.1 (Linf, the paper's normalised units, std 0.353; = 0.0353 in
    pixel units)". A dataset without a registered std gets its pixel value only, and says why."""
    check_units(units)
    if dataset not in DATASETS:
        return f"{eps_pixel:g} ({norm}, pixel units; no normalised value: {dataset!r} has no registered std)"
    std = f"std {pixel_std(dataset):.4g}" + (" (smallest channel)" if len(DATASETS.get(dataset).std) > 1 else "")
    norm_value = to_normalized(eps_pixel, dataset)
    if units == "normalized":
        return f"{norm_value:.3g} ({norm}, the paper's normalised units, {std}; = {eps_pixel:g} in pixel units)"
    return f"{eps_pixel:g} ({norm}, pixel units; = {norm_value:.3g} in the paper's normalised units, {std})"
