"""The epsilon check shared by the settings parser (``bench.config``) and the attack registry
(``attacks.registry``): an epsilon is a number in [0, 1], in pixel units."""
from __future__ import annotations

import math

from core.errors import BenchError


def check_epsilon(eps: float, what: str = "epsilon") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 <= eps <= 1:
        raise BenchError(f"{what} = {eps!r} is invalid: epsilon is in pixel units and must lie in [0, 1]")
    return float(eps)
