"""Statistics for the robustness numbers: intervals, the paired test, and seed aggregation.

Every accuracy in great-bench is a proportion of n test examples, so its sampling error is
binomial. The formulas here are the standard ones, chosen for good coverage at the small n
and the extreme accuracies (0% and 100% are common under attack) that a benchmark meets:

- ``wilson``: the Wilson score interval for one proportion (Wilson 1927). Unlike the normal
  ("Wald") interval it never leaves [0, 1] and is not degenerate at 0/n or n/n.
- ``mcnemar_exact``: the exact (conditional) McNemar test for two models scored on the same
  examples: under "no difference" each discordant example is equally likely to favour
  either model, so b ~ Bin(b + c, 1/2); two-sided p = min(1, 2 P(X <= min(b, c))).
- ``newcombe_paired``: the interval for the difference of two paired proportions by
  Newcombe's square-and-add method (Newcombe 1998, "Improved confidence intervals for the
  difference between binomial proportions based on paired data", method 10): the two
  Wilson intervals combined with the correlation of the paired outcomes.
- ``aggregate``: mean +- sample std over training seeds with an interval that adds the
  seed-to-seed spread and the test-sampling error (see its docstring).
- ``paired_across_seeds``: the same for a paired difference of two methods trained with the
  same seeds and scored on the same examples; ``inverted_p_value`` the p-value of such an
  interval, ``holm`` the family-wise correction and ``claim_verdict`` the one rule that turns
  an adjusted test into "holds" / "does not hold" / "cannot tell" (``bench/report/claims.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from core.errors import BenchError

CONF = 0.95


def _z(conf: float) -> float:
    if not 0 < conf < 1:
        raise BenchError(f"confidence level must lie in (0, 1), got {conf}")
    return NormalDist().inv_cdf(0.5 + conf / 2)


def _check_counts(k: float, n: float) -> None:
    if not n > 0:
        raise BenchError(f"an interval needs n > 0 examples, got n = {n}")
    if not -1e-9 <= k <= n + 1e-9:
        raise BenchError(f"the count of correct examples must lie in [0, n], got {k} of {n}")


def wilson(k: float, n: float, conf: float = CONF) -> tuple[float, float]:
    """Wilson score interval for a proportion k / n (95% by default).

    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2).
    ``k`` may be fractional (a mean accuracy times n, in ``aggregate``).
    """
    _check_counts(k, n)
    z = _z(conf)
    p = min(max(k / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b and c.

    b = examples only the first model gets right, c = only the second. Under the null
    hypothesis of equal accuracy, b ~ Bin(b + c, 1/2): p = min(1, 2 P(X <= min(b, c))),
    and 1 when there is no discordant example (nothing to tell the models apart).
    """
    if b < 0 or c < 0 or int(b) != b or int(c) != c:
        raise BenchError(f"McNemar needs non-negative whole counts of discordant examples, got b={b}, c={c}")
    b, c = int(b), int(c)
    m = b + c
    if m == 0:
        return 1.0
    # exact integer arithmetic: no rounding before the final division
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** m)


def newcombe_paired(both: int, only_first: int, only_second: int, neither: int,
                    conf: float = CONF) -> tuple[float, float, float]:
    """Difference (first - second) of two paired accuracies and its Newcombe interval.

    Counts of the paired 2x2 table over n examples (whole, or averaged over seeds): a = both right, b = only the first,
    c = only the second, d = neither. theta = (b - c) / n. With Wilson intervals (l1, u1)
    for p1 = (a + b) / n and (l2, u2) for p2 = (a + c) / n and phi the correlation of the
    paired outcomes (Newcombe 1998, method 10: ad - bc shrunk by n/2 towards 0 when
    positive, 0 when a marginal is empty),
    L = theta - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2),
    U = theta + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2).
    """
    # whole counts, or counts averaged over seeds (``paired_across_seeds``)
    a, b, c, d = (int(v) if float(v).is_integer() else float(v) for v in (both, only_first, only_second, neither))
    if min(a, b, c, d) < 0:
        raise BenchError(f"paired counts must be non-negative, got {(a, b, c, d)}")
    n = a + b + c + d
    if n == 0:
        raise BenchError("a paired comparison needs at least one example common to both models")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, conf)
    l2, u2 = wilson(a + c, n, conf)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        phi = 0.0
    else:
        ad_bc = a * d - b * c
        shrunk = ad_bc - n / 2 if ad_bc > n / 2 else (0.0 if ad_bc >= 0 else ad_bc)
        phi = shrunk / math.sqrt(margins)
    theta = p1 - p2
    lo = theta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = theta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return theta, max(-1.0, lo), min(1.0, hi)


@dataclass(frozen=True)
class Paired:
    """Two models on the same n examples: the first minus the second."""

    n: int
    both: int
    only_first: int
    only_second: int
    neither: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def verdict(self) -> str:
        """'better' / 'worse' when the test rejects at 5% and the interval excludes 0, else
        'cannot say' (the data do not separate the two models on this column)."""
        if self.p_value < 0.05 and self.ci_low > 0:
            return "better"
        if self.p_value < 0.05 and self.ci_high < 0:
            return "worse"
        return "cannot say"


def paired(first: np.ndarray, second: np.ndarray, conf: float = CONF) -> Paired:
    """Compare per-example correctness masks of two models on the same examples."""
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise BenchError(f"paired masks must be 1-d and of equal length, got {first.shape} and {second.shape}")
    a = int((first & second).sum())
    b = int((first & ~second).sum())
    c = int((~first & second).sum())
    d = int((~first & ~second).sum())
    diff, lo, hi = newcombe_paired(a, b, c, d, conf)
    return Paired(len(first), a, b, c, d, diff, lo, hi, mcnemar_exact(b, c))


@dataclass(frozen=True)
class Summary:
    """One table cell: accuracies of one or more training seeds, each over n examples."""

    mean: float
    std: float       # sample std over seeds (ddof = 1); 0 with one seed
    seeds: int
    n: int           # examples per run (the smallest, when runs differ)
    ci_low: float
    ci_high: float


def aggregate(accuracies: Sequence[float], ns: Sequence[int], conf: float = CONF) -> Summary:
    """Mean +- sample std over seeds and an interval for the expected accuracy.

    One seed: the Wilson interval of its accuracy over its n examples. Several seeds
    (k >= 2): two independent error sources are added in quadrature, on each side
    separately (the square-and-add / MOVER construction of Newcombe 1998 and Zou & Donner
    2008): the seed-to-seed spread, t_{k-1} s / sqrt(k) (a t-interval over the seed means),
    and the test-sampling error, the Wilson interval at the mean accuracy over n examples.
    The seeds share the same test examples, so averaging seeds does not shrink the
    sampling error: n is the per-run count, not k n.
    """
    acc = np.asarray(accuracies, dtype=float)
    ns_arr = np.asarray(ns, dtype=float)
    if acc.size == 0 or acc.shape != ns_arr.shape:
        raise BenchError(f"aggregate needs one n per accuracy and at least one of each, got {acc.size} and "
                         f"{ns_arr.size}")
    if ((acc < 0) | (acc > 1)).any():
        raise BenchError(f"accuracies are fractions in [0, 1], got {acc.tolist()}")
    k = acc.size
    n = int(ns_arr.min())
    mean = float(acc.mean())
    lo_w, hi_w = wilson(mean * n, n, conf)
    if k == 1:
        return Summary(mean, 0.0, 1, n, lo_w, hi_w)
    from scipy.stats import t

    std = float(acc.std(ddof=1))
    h_seed = float(t.ppf(0.5 + conf / 2, k - 1)) * std / math.sqrt(k)
    lo = mean - math.sqrt((mean - lo_w) ** 2 + h_seed ** 2)
    hi = mean + math.sqrt((hi_w - mean) ** 2 + h_seed ** 2)
    return Summary(mean, std, k, n, max(0.0, lo), min(1.0, hi))


def half_width(n: int, p: float = 0.5, conf: float = CONF) -> float:
    """The larger side of the Wilson interval at accuracy p over n examples (sizing the sweep)."""
    lo, hi = wilson(p * n, n, conf)
    return max(p - lo, hi - p)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof = 1) over seeds; the deviation of one value is 0."""
    v = [float(x) for x in values]
    if not v:
        raise BenchError("mean_std of no values")
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


@dataclass(frozen=True)
class SeedInterval:
    """A quantity measured once per training seed (an error, an RMSE, a difference between two
    methods trained with the same seed): its mean, sample std and 95% t-interval."""

    mean: float
    std: float       # sample std over seeds (ddof = 1); 0 with one seed
    seeds: int
    ci_low: float    # nan with one seed: one run says nothing about the seed-to-seed spread
    ci_high: float

    @property
    def verdict(self) -> str:
        """'above 0' / 'below 0' when the interval excludes 0, else 'cannot tell'."""
        if self.ci_low > 0:
            return "above 0"
        if self.ci_high < 0:
            return "below 0"
        return "cannot tell"


def seed_interval(values: Sequence[float], conf: float = CONF) -> SeedInterval:
    """Mean +- t_{k-1} s / sqrt(k) over k seeds (Student's t; exact for normal seed-to-seed
    variation). For continuous metrics, whose test-set noise is already part of each seed's
    value, and for paired differences (``paired_seed_difference``). With k = 3 the t factor is
    4.30: three seeds separate only large effects."""
    v = np.asarray([float(x) for x in values], dtype=float)
    if v.size == 0:
        raise BenchError("seed_interval of no values")
    mean = float(v.mean())
    if v.size == 1:
        return SeedInterval(mean, 0.0, 1, math.nan, math.nan)
    from scipy.stats import t

    std = float(v.std(ddof=1))
    h = float(t.ppf(0.5 + conf / 2, v.size - 1)) * std / math.sqrt(v.size)
    return SeedInterval(mean, std, int(v.size), mean - h, mean + h)


def paired_seed_difference(first: dict[int, float], second: dict[int, float], conf: float = CONF) -> SeedInterval:
    """``first - second`` paired by training seed (both methods start from the same seed's
    initial weights and batches): the t-interval of the per-seed differences (a paired t-test;
    the interval excludes 0 exactly when the two-sided test rejects at 1 - conf). Only the
    seeds both have are used."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        raise BenchError(f"no common seeds to pair: {sorted(first)} and {sorted(second)}")
    return seed_interval([first[s] - second[s] for s in seeds], conf)


def _t_half(values: np.ndarray, conf: float) -> float:
    """t_{k-1} s / sqrt(k): the half-width of the t-interval over k >= 2 seed values."""
    from scipy.stats import t

    return float(t.ppf(0.5 + conf / 2, values.size - 1)) * float(values.std(ddof=1)) / math.sqrt(values.size)


def inverted_p_value(interval_at, mean: float, tol: float = 1e-12) -> float:
    """The two-sided p-value of an interval family: the smallest alpha at which the
    (1 - alpha) interval ``interval_at(1 - alpha)`` still excludes 0 (test inversion; the
    intervals widen with the level, so one bisection on log alpha finds the edge). 1 when
    the mean is 0; ``tol`` when even the (1 - tol) interval excludes 0."""
    if mean == 0 or not math.isfinite(mean):
        return 1.0
    excludes = lambda alpha: (lambda lo, hi: lo > 0 or hi < 0)(*interval_at(1 - alpha))
    top = 1 - 1e-9  # a 1e-9 interval: the mean itself, which is not 0
    if not excludes(top):
        return 1.0
    if excludes(tol):
        return tol
    lo, hi = math.log(tol), math.log(top)
    for _ in range(60):
        mid = (lo + hi) / 2
        if excludes(math.exp(mid)):
            hi = mid
        else:
            lo = mid
    return min(1.0, math.exp(hi))


@dataclass(frozen=True)
class AcrossSeeds:
    """A paired difference (first - second) over k training seeds on the same n examples:
    mean of the per-seed differences, their sample std, the interval of ``paired_across_seeds``
    and its two-sided p-value (test inversion)."""

    mean: float
    std: float
    seeds: int
    n: int
    ci_low: float
    ci_high: float
    p_value: float


def _square_and_add(diffs: Sequence[float], sampling_at, n: int, conf: float) -> AcrossSeeds:
    """d = mean of the per-seed differences; the interval
    L = d - sqrt((d - l)^2 + h^2), U = d + sqrt((u - d)^2 + h^2) with h the seeds' paired
    t half-width (0 for one seed) and (l, u) = ``sampling_at(level)`` the test-sampling
    interval around d; the p-value inverts it."""
    v = np.asarray(diffs, dtype=float)
    k = v.size

    def interval_at(level: float) -> tuple[float, float]:
        lo, hi = sampling_at(level)
        h = _t_half(v, level) if k > 1 else 0.0
        d = float(v.mean())
        return d - math.sqrt((d - lo) ** 2 + h * h), d + math.sqrt((hi - d) ** 2 + h * h)

    mean = float(v.mean())
    lo, hi = interval_at(conf)
    return AcrossSeeds(mean, float(v.std(ddof=1)) if k > 1 else 0.0, k, n, lo, hi, inverted_p_value(interval_at, mean))


def paired_across_seeds(tables: Sequence[tuple[float, float, float, float]], conf: float = CONF) -> AcrossSeeds:
    """Two methods, each trained with the same k seeds, scored on the same n examples; one
    paired 2x2 table (both right, only the first, only the second, neither) per seed.

    The difference d_s = (b_s - c_s) / n of seed s has two errors: the seed-to-seed spread
    and the test-sampling error of the n examples. The seeds share their examples, so the
    sampling error does not average out over seeds. Both are added in quadrature, on each
    side separately (square-and-add / MOVER, Newcombe 1998, Zou & Donner 2008, as in
    ``aggregate``), around d = mean_s d_s:

        L = d - sqrt((d - l_N)^2 + h^2),    U = d + sqrt((u_N - d)^2 + h^2),

    h = t_{k-1, (1+conf)/2} s_d / sqrt(k) (the paired t-interval over seeds; 0 for k = 1),
    (l_N, u_N) = Newcombe's paired interval (``newcombe_paired``, method 10) of the table of
    seed-averaged counts, whose difference is d, at n examples (not k n). A column where
    every seed scores both methods alike (d_s = 0, b = c = 0) keeps the sampling width of n
    examples instead of collapsing to [0, 0]. The p-value inverts this interval
    (``inverted_p_value``). The seed term also holds the part of the sampling error that
    differs between seeds, so the sum is slightly conservative (for crossed seeds x
    examples designs, compare Owen 2007, "The pigeonhole bootstrap").
    """
    t = np.asarray(tables, dtype=float)
    if t.ndim != 2 or t.shape[1] != 4 or t.shape[0] == 0:
        raise BenchError(f"paired_across_seeds needs one (both, only_first, only_second, neither) table per seed, "
                         f"got shape {t.shape}")
    ns = t.sum(axis=1)
    if (t < 0).any() or not (ns > 0).all() or np.ptp(ns) > 0:
        raise BenchError(f"paired tables must be non-negative counts over the same n > 0 examples, got n = {ns.tolist()}")
    n = int(ns[0])
    mean_table = t.mean(axis=0)
    r = _square_and_add((t[:, 1] - t[:, 2]) / n, lambda level: newcombe_paired(*mean_table, conf=level)[1:], n, conf)
    return AcrossSeeds(r.mean, r.std, r.seeds, n, max(-1.0, r.ci_low), min(1.0, r.ci_high), r.p_value)


def unpaired_across_seeds(first: dict[int, float], second: dict[int, float], n: int,
                          conf: float = CONF) -> AcrossSeeds:
    """``paired_across_seeds`` for accuracies recorded without per-example masks (the
    distillation rows): the same sum, with the sampling interval of the difference of the
    two seed-mean accuracies over n examples each taken as independent, Newcombe's method
    10 for unpaired proportions: l = d - sqrt((p1 - l1)^2 + (u2 - p2)^2),
    u = d + sqrt((u1 - p1)^2 + (p2 - l2)^2) with Wilson intervals (l_i, u_i). Two models
    scored on the same examples are positively correlated, so this overstates the sampling
    term (conservative). Only seeds both have are used."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        raise BenchError(f"no common seeds to pair: {sorted(first)} and {sorted(second)}")
    a = np.array([first[s] for s in seeds], dtype=float)
    b = np.array([second[s] for s in seeds], dtype=float)
    p1, p2 = float(a.mean()), float(b.mean())

    def sampling_at(level: float) -> tuple[float, float]:
        l1, u1 = wilson(p1 * n, n, level)
        l2, u2 = wilson(p2 * n, n, level)
        d = p1 - p2
        return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)

    r = _square_and_add(a - b, sampling_at, n, conf)
    return AcrossSeeds(r.mean, r.std, r.seeds, n, max(-1.0, r.ci_low), min(1.0, r.ci_high), r.p_value)


def seeds_only(first: dict[int, float], second: dict[int, float], conf: float = CONF) -> AcrossSeeds:
    """The paired t over seeds alone, as an ``AcrossSeeds`` (p-value by inversion = the
    paired t-test's): for metrics whose rows carry no test-sampling information (the
    multi-task RMSEs)."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        raise BenchError(f"no common seeds to pair: {sorted(first)} and {sorted(second)}")
    diffs = [first[s] - second[s] for s in seeds]
    d = float(np.mean(diffs))
    return _square_and_add(diffs, lambda level: (d, d), 0, conf)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order: with the m
    p-values sorted p_(1) <= ... <= p_(m), adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting where adj < alpha keeps the family-wise error rate at alpha for any
    dependence between the tests."""
    p = [float(x) for x in p_values]
    if any(not 0 <= x <= 1 for x in p):
        raise BenchError(f"p-values must lie in [0, 1], got {p}")
    m = len(p)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


VERDICTS = ("holds", "does not hold", "cannot tell")


def claim_verdict(mean: float, p_adjusted: float, expected_sign: int, alpha: float = 0.05) -> str:
    """The one rule for a claimed direction (+1: first above second, -1: below): "holds" when
    the family-wise adjusted test rejects (p_adjusted < alpha) and the difference has the
    claimed sign, "does not hold" when it rejects with the opposite sign, "cannot tell"
    otherwise (the data do not separate the two methods at the family's level)."""
    if expected_sign not in (1, -1):
        raise BenchError(f"a claimed direction is +1 or -1, got {expected_sign!r}")
    if not p_adjusted < alpha or mean == 0:
        return "cannot tell"
    return "holds" if (mean > 0) == (expected_sign > 0) else "does not hold"
