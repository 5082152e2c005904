"""bench.stats on known counts: Wilson, exact McNemar, Newcombe's paired interval, seed aggregation."""
import math

import numpy as np
import pytest

from core.errors import BenchError
from bench.stats import (Paired, aggregate, half_width, mcnemar_exact, newcombe_paired, paired,
                         paired_seed_difference, seed_interval, wilson)

Z = 1.959963984540054  # the 97.5% normal quantile


@pytest.mark.parametrize("k, n, lo, hi", [
    (8, 10, 0.4901625, 0.9433178),   # hand-computed: centre 0.71672, half 0.22658
    (0, 10, 0.0, 0.2775328),         # 0/n: the upper limit is z^2 / (n + z^2)
    (10, 10, 0.7224672, 1.0),        # n/n: the mirror image
    (50, 100, 0.4038315, 0.5961685),
])
def test_wilson_on_known_counts(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_wilson_closed_forms_at_the_edges():
    for n in (1, 7, 25, 1000):
        assert wilson(0, n)[1] == pytest.approx(Z * Z / (n + Z * Z), rel=1e-12)
        assert wilson(n, n)[0] == pytest.approx(n / (n + Z * Z), rel=1e-12)


def test_wilson_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(3, 25), (8, 25), (897, 1000), (0, 300), (261, 300)]:
        ref = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_wilson_rejects_bad_counts():
    with pytest.raises(BenchError, match="n > 0"):
        wilson(0, 0)
    with pytest.raises(BenchError, match=r"\[0, n\]"):
        wilson(11, 10)


def test_half_width_sizes_in_the_readme():
    assert half_width(96) <= 0.10 < half_width(90)
    assert half_width(300) == pytest.approx(0.0562, abs=1e-4)
    assert half_width(25, 0.32) == pytest.approx(0.19, abs=0.01)


def test_mcnemar_exact_on_a_hand_computed_table():
    # b = 6, c = 16: P(X <= 6), X ~ Bin(22, 1/2) = (1 + 22 + 231 + 1540 + 7315 + 26334 + 74613) / 2^22
    assert mcnemar_exact(6, 16) == pytest.approx(2 * 110056 / 2 ** 22, rel=1e-12)
    assert mcnemar_exact(6, 16) == pytest.approx(0.052479, abs=1e-6)  # Fagerland, Lydersen & Laake 2017, ch. 8 (Cavo et al.)
    assert mcnemar_exact(16, 6) == mcnemar_exact(6, 16)               # two-sided: symmetric
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)               # 2 P(X = 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(3, 3) == 1.0                                 # clipped at 1
    assert mcnemar_exact(0, 0) == 1.0                                 # no discordant pair


def test_mcnemar_agrees_with_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(1, 9), (12, 30), (40, 41), (0, 17)]:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_newcombe_paired_on_the_published_example():
    # Cavo et al. (2012) in Fagerland, Lydersen & Laake (2017), ch. 8: a, b, c, d = 59, 6, 16, 80;
    # the Newcombe square-and-add interval is -0.0621 (-0.1186 to -0.0046).
    theta, lo, hi = newcombe_paired(59, 6, 16, 80)
    assert theta == pytest.approx(-10 / 161)
    assert (lo, hi) == pytest.approx((-0.1186, -0.0046), abs=5e-5)


def test_newcombe_paired_without_correlation_is_the_independent_square_and_add():
    # a * d - b * c = 0 (phi = 0): the limits are the Wilson distances added in quadrature
    a, b, c, d = 20, 20, 10, 10
    n = 60
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    p1, p2 = (a + b) / n, (a + c) / n
    theta, lo, hi = newcombe_paired(a, b, c, d)
    assert lo == pytest.approx(theta - math.hypot(p1 - l1, u2 - p2))
    assert hi == pytest.approx(theta + math.hypot(u1 - p1, p2 - l2))


def test_paired_counts_masks_and_verdicts():
    first = np.array([1, 1, 1, 1, 0, 0, 1, 0], bool)
    second = np.array([1, 0, 0, 0, 0, 1, 1, 0], bool)
    r = paired(first, second)
    assert (r.n, r.both, r.only_first, r.only_second, r.neither) == (8, 2, 3, 1, 2)
    assert r.diff == pytest.approx(2 / 8) and r.p_value == mcnemar_exact(3, 1)
    assert r.verdict == "cannot say"
    better = Paired(100, 40, 30, 2, 28, 0.28, 0.17, 0.38, 1e-7)
    assert better.verdict == "better"
    assert Paired(100, 40, 2, 30, 28, -0.28, -0.38, -0.17, 1e-7).verdict == "worse"
    with pytest.raises(BenchError, match="equal length"):
        paired(first, second[:5])


def test_aggregate_one_seed_is_the_wilson_interval():
    s = aggregate([0.8], [10])
    assert (s.mean, s.std, s.seeds, s.n) == (0.8, 0.0, 1, 10)
    assert (s.ci_low, s.ci_high) == pytest.approx(wilson(8, 10))


def test_aggregate_several_seeds_on_hand_numbers():
    s = aggregate([0.80, 0.90, 0.85], [100, 100, 100])
    assert s.mean == pytest.approx(0.85) and s.seeds == 3 and s.n == 100
    assert s.std == pytest.approx(0.05)                    # sample std: sqrt(0.005 / 2)
    h_seed = 4.302652729911275 * 0.05 / math.sqrt(3)       # t_{0.975, 2} s / sqrt(k)
    lo_w, hi_w = wilson(85, 100)
    assert s.ci_low == pytest.approx(0.85 - math.hypot(0.85 - lo_w, h_seed))
    assert s.ci_high == pytest.approx(min(1.0, 0.85 + math.hypot(hi_w - 0.85, h_seed)))
    assert s.ci_low < lo_w and s.ci_high > hi_w             # wider than either source alone


def test_aggregate_rejects_bad_input():
    with pytest.raises(BenchError, match="one n per accuracy"):
        aggregate([0.5, 0.6], [10])
    with pytest.raises(BenchError, match=r"\[0, 1\]"):
        aggregate([50.0], [10])


def test_seed_interval_on_hand_numbers():
    # values 1, 2, 6: mean 3, s = sqrt(((-2)^2 + 1 + 3^2) / 2) = sqrt(7); t_{0.975, 2} = 4.302653
    si = seed_interval([1.0, 2.0, 6.0])
    assert si.mean == pytest.approx(3.0) and si.std == pytest.approx(math.sqrt(7)) and si.seeds == 3
    h = 4.302652729911275 * math.sqrt(7) / math.sqrt(3)
    assert (si.ci_low, si.ci_high) == (pytest.approx(3 - h), pytest.approx(3 + h))
    one = seed_interval([0.7])
    assert one.mean == 0.7 and one.std == 0 and math.isnan(one.ci_low) and one.verdict == "cannot tell"


def test_paired_seed_difference_is_scipys_paired_t_test():
    from scipy.stats import ttest_rel

    a = {0: 84.1, 1: 83.2, 2: 85.0, 3: 84.6}
    b = {0: 82.0, 1: 82.9, 2: 83.1, 3: 82.2, 7: 99.0}  # seed 7 has no partner: ignored
    d = paired_seed_difference(a, b)
    ref = ttest_rel([a[s] for s in range(4)], [b[s] for s in range(4)]).confidence_interval(0.95)
    assert d.seeds == 4
    assert d.mean == pytest.approx(np.mean([a[s] - b[s] for s in range(4)]))
    assert (d.ci_low, d.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert d.verdict == ("above 0" if ref.low > 0 else "cannot tell")
    assert paired_seed_difference(b, a).verdict in ("below 0", "cannot tell")
    with pytest.raises(BenchError, match="no common seeds"):
        paired_seed_difference({0: 1.0}, {1: 1.0})
