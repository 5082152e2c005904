"""Summary statistics shared by every table: mean and sample standard deviation over seeds."""
from __future__ import annotations

import math
from typing import Iterable


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof = 1); the deviation of one value is 0."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_std of no values")
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s
