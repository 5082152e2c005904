"""Defense trainers: one file per procedure, one registry (``DEFENSES``)."""
from defenses.base import Context, Defense, Ramp
from defenses.registry import DEFENSES

# Importing each module registers its defenses.
from defenses import baseline, datagrad, fgsm_at, great  # noqa: E402,F401

__all__ = ["DEFENSES", "Context", "Defense", "Ramp"]
