"""The across-seed paired interval (seed spread + test sampling), its p-value, Holm's
correction and the verdict rule, each against an independent computation (scipy, a direct
simulation, Holm's closed-testing definition)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sst

from core.errors import BenchError
from bench.stats import (claim_verdict, holm, inverted_p_value, newcombe_paired, paired_across_seeds)


def test_all_zero_column_keeps_the_sampling_width():
    """Both methods at 0% on 500 examples on every seed (AutoAttack in the study): the
    interval is Newcombe's for 0/500 vs 0/500, not [0, 0]."""
    r = paired_across_seeds([(0, 0, 0, 500)] * 3)
    _, lo, hi = newcombe_paired(0, 0, 0, 500)
    assert r.mean == 0 and r.p_value == 1.0
    assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi))
    assert r.ci_low < -0.007 and r.ci_high > 0.007  # Wilson 0/500: [0, 0.77%]


def test_identical_seeds_give_newcombe_and_its_p_value():
    """No seed spread (s = 0): the interval is Newcombe's paired interval of the table, and
    the p-value is the level where that interval's edge reaches 0."""
    table = (600, 40, 15, 345)
    r = paired_across_seeds([table] * 3)
    d, lo, hi = newcombe_paired(*table)
    assert (r.mean, r.ci_low, r.ci_high) == pytest.approx((d, lo, hi))
    assert newcombe_paired(*table, conf=1 - r.p_value)[1] == pytest.approx(0, abs=1e-6)
    assert r.p_value < 0.05


def test_without_sampling_error_it_is_scipys_paired_t():
    """With n so large that the test-sampling term vanishes, interval and p-value are
    scipy's one-sample t on the per-seed differences."""
    n = 10 ** 9
    diffs = [0.031, 0.012, 0.046, 0.020]
    tables = [(n // 2 - int(d * n) // 2, int(d * n) + n // 10, n // 10, 0) for d in diffs]
    tables = [(a, b, c, n - a - b - c) for a, b, c, _ in tables]
    r = paired_across_seeds(tables)
    exact = [(b - c) / n for _, b, c, _ in tables]
    tt = sst.ttest_1samp(exact, 0.0)
    ci = tt.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), abs=2e-4)
    assert r.p_value == pytest.approx(tt.pvalue, rel=0.02)


def test_inverted_p_value_of_a_t_interval_is_the_t_test():
    """The inversion itself, on an interval family with a closed-form test: Student's t."""
    x = np.array([1.3, 0.2, 2.2, 1.1, 0.7])
    m, se = x.mean(), x.std(ddof=1) / math.sqrt(x.size)

    def interval(level):
        h = sst.t.ppf(0.5 + level / 2, x.size - 1) * se
        return m - h, m + h

    assert inverted_p_value(interval, m) == pytest.approx(sst.ttest_1samp(x, 0).pvalue, rel=1e-6)


def _simulate(reps: int, rng: np.random.Generator, n: int = 300, k: int = 3):
    """Coverage of the true difference by (a) paired_across_seeds and (b) the t-interval over
    seeds alone. Each repetition draws a fresh test set of n examples shared by the k seeds
    (per example, the chance that each method is right), then each seed's outcomes. The
    examples differ a lot between the methods, the seeds little: the situation where the
    seeds' t-interval misses the sampling error of the shared examples."""
    true = 0.05  # E[pA - pB] over the example population
    cover_new = cover_t = 0
    for _ in range(reps):
        kind = rng.random(n)
        pa = np.where(kind < 0.5 + true / 2, 0.97, 0.03)       # examples A gets right
        pb = np.where(rng.random(n) < 0.5, 0.97, 0.03)          # B, independently of A
        true_d = 0.94 * (0.5 + true / 2) + 0.03 - 0.5          # E[pa] - E[pb] exactly
        tables, diffs = [], []
        for _ in range(k):
            a_ok, b_ok = rng.random(n) < pa, rng.random(n) < pb
            t = (int((a_ok & b_ok).sum()), int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum()),
                 int((~a_ok & ~b_ok).sum()))
            tables.append(t)
            diffs.append((t[1] - t[2]) / n)
        r = paired_across_seeds(tables)
        cover_new += r.ci_low <= true_d <= r.ci_high
        ci = sst.ttest_1samp(diffs, 0).confidence_interval(0.95)
        cover_t += ci.low <= true_d <= ci.high
    return cover_new / reps, cover_t / reps


def test_coverage_by_direct_simulation():
    """The interval covers the population difference at least ~95% of the time; the
    seeds-only t-interval (the old across-seed interval) does not."""
    new, t_only = _simulate(400, np.random.default_rng(0))  # 0.97 and 0.53
    assert new >= 0.93, new
    assert t_only < 0.80, t_only


def test_bad_tables_are_refused():
    with pytest.raises(BenchError, match="same n"):
        paired_across_seeds([(1, 2, 3, 4), (1, 2, 3, 5)])
    with pytest.raises(BenchError, match="one .* table per seed"):
        paired_across_seeds([])


def _holm_by_closed_testing(p, alpha):
    """Holm's procedure by its definition (Holm 1979 = closed testing with Bonferroni): H_i
    is rejected iff every intersection hypothesis H_S with i in S is rejected by Bonferroni,
    min_{j in S} p_j <= alpha / |S|."""
    m = len(p)
    out = []
    for i in range(m):
        others = [j for j in range(m) if j != i]
        ok = all(min(p[j] for j in (i, *S)) <= alpha / (len(S) + 1)
                 for r in range(m) for S in itertools.combinations(others, r))
        out.append(ok)
    return out


def test_holm_closed_form_and_closed_testing():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(1)
    for _ in range(200):
        q = list(rng.uniform(0, 0.1, size=int(rng.integers(1, 7))))
        for alpha in (0.05, 0.01):
            assert [a <= alpha for a in holm(q)] == _holm_by_closed_testing(q, alpha)


def test_verdict_rule():
    # a family of three: only the first survives Holm (0.01 * 3 < 0.05; 0.03 * 2 > 0.05)
    p = [0.01, 0.03, 0.04]
    adj = holm(p)
    assert [claim_verdict(m, a, +1) for m, a in zip([+2.0, +1.0, -1.5], adj)] == \
        ["holds", "cannot tell", "cannot tell"]
    assert claim_verdict(-2.0, adj[0], +1) == "does not hold"
    assert claim_verdict(-2.0, adj[0], -1) == "holds"
    assert claim_verdict(0.0, 0.0, +1) == "cannot tell"
    with pytest.raises(BenchError, match=r"\+1 or -1"):
        claim_verdict(1.0, 0.01, 0)


def test_seeds_only_and_unpaired_reduce_to_scipys_t():
    from bench.stats import seeds_only, unpaired_across_seeds

    first, second = {0: 0.71, 1: 0.69, 2: 0.74}, {0: 0.70, 1: 0.66, 2: 0.70}
    diffs = [first[s] - second[s] for s in first]
    tt = sst.ttest_1samp(diffs, 0.0)
    r = seeds_only(first, second)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(tt.confidence_interval(0.95)))
    assert r.p_value == pytest.approx(tt.pvalue, rel=1e-6)
    # unpaired accuracies: at n = 10^10 the sampling term vanishes ...
    big = unpaired_across_seeds(first, second, 10 ** 10)
    assert (big.ci_low, big.ci_high) == pytest.approx(tuple(tt.confidence_interval(0.95)), abs=1e-4)
    # ... at n = 2000 it adds Wilson's widths of both means (independent: no pairing credit)
    small = unpaired_across_seeds(first, second, 2000)
    h = (tt.confidence_interval(0.95).high - tt.confidence_interval(0.95).low) / 2
    assert small.ci_high - small.mean > h and small.p_value > tt.pvalue
    p1, p2 = np.mean(list(first.values())), np.mean(list(second.values()))
    half = 1.96 * math.sqrt(p1 * (1 - p1) / 2000 + p2 * (1 - p2) / 2000)  # Wald, close to Wilson here
    assert small.ci_high - small.mean == pytest.approx(math.hypot(h, half), rel=0.02)
