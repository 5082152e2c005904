"""What ``great-bench list`` prints, as data: the registries, each model's one-line
description, each dataset's mean and std with what the paper's normalised epsilon 0.1 is in
pixels, and a preset's epsilon units (issue 22). The same functions are the Python API."""
from __future__ import annotations

import re
from typing import Any

from attacks.registry import ATTACKS
from bench.config.presets import preset_names
from bench.data import AUGMENTATIONS, DATASETS
from bench.config.epsilon_units import epsilon_phrase, pixel_std, to_pixels
from bench.report.family import FAMILY_DIR
from bench.models import MODELS
from bench.config.settings import Settings
from defenses import DEFENSES

PAPER_EPSILON = 0.1  # the paper's Table 1 epsilon, read as normalised units (docs/protocol.md, "Epsilon units")


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return re.split(r"(?<=[.:])\s", text, maxsplit=1)[0].rstrip(".:") if text else ""


def models() -> dict[str, str]:
    """Registered model name -> the first sentence of its factory's docstring."""
    return {name: _first_sentence(getattr(MODELS.get(name), "__doc__", "")) for name in MODELS.names()}


def datasets() -> list[dict[str, Any]]:
    """Per registered dataset: shape, mean and std per channel, the std the epsilon
    conversion uses (``bench.config.epsilon_units``) and the paper's normalised 0.1 in pixels."""
    out = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        out.append({"dataset": name, "channels": spec.channels, "size": spec.size, "mean": spec.mean,
                    "std": spec.std, "pixel_std": pixel_std(name),
                    "normalized_0.1_in_pixels": to_pixels(PAPER_EPSILON, "normalized", name)})
    return out


def lines(settings: Settings | None = None) -> list[str]:
    """The text of ``great-bench list`` (with ``settings``: the preset's variants and epsilon units)."""
    width = max(map(len, MODELS.names()))
    out = ["defenses: " + ", ".join(DEFENSES.names()), "models:   " + ", ".join(MODELS.names())]
    out += [f"  {name:<{width}}  {doc}" for name, doc in models().items()]
    out.append(f"datasets (mean, std per channel; the paper's normalised epsilon {PAPER_EPSILON:g} in pixels = "
               f"{PAPER_EPSILON:g} x std, the smallest channel's):")
    for d in datasets():
        fmt = lambda v: "/".join(f"{x:.4g}" for x in v)
        out.append(f"  {d['dataset']:<{width}}  {d['channels']}x{d['size']}x{d['size']}, mean {fmt(d['mean'])}, "
                   f"std {fmt(d['std'])}; normalised {PAPER_EPSILON:g} = {d['normalized_0.1_in_pixels']:.4g} pixels")
    out += ["presets:  " + ", ".join(preset_names()), "attacks:  " + ", ".join(ATTACKS.names()),
            "augmentations ([data] augment): " + ", ".join(AUGMENTATIONS),
            "verdict families (verdicts --family): " + ", ".join(str(p.relative_to(FAMILY_DIR.parents[1]))
                                                                  for p in sorted(FAMILY_DIR.glob("*.toml")))]
    if settings is not None:
        ev = settings.eval
        out.append(f"epsilon ({settings.preset}): eval.epsilon_units = {ev.epsilon_units!r}; eval.epsilon = "
                   + epsilon_phrase(ev.epsilon, ev.epsilon_units, settings.data.dataset))
        out.append(f"variants ({settings.preset}):" + ("" if settings.variants else " none"))
        for v in settings.variants.values():
            hp = ", ".join(f"{k}={val}" for k, val in v.hp.items())
            out.append(f"  {v.name} = {v.defense}" + (f" with {hp}" if hp else ""))
    return out
