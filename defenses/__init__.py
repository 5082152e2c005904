"""Defense trainers: one file per procedure, one registry (``DEFENSES``)."""
from defenses.base import Defense, MethodContext, Ramp
from defenses.registry import DEFENSES

# Importing each module registers its defenses.
from defenses import baseline, datagrad, fgsm_at, great, noise, pgd_at, trades  # noqa: E402,F401

__all__ = ["DEFENSES", "Defense", "MethodContext", "Ramp"]
