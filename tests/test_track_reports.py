"""The distillation and multi-task views: intervals on every cell and the paper's claims
tested seed by seed, checked against independent computations (scipy's paired t-test, the
Wilson interval by hand)."""
from __future__ import annotations

import math
import re

import pytest
from scipy.stats import t as student_t
from scipy.stats import ttest_rel

from bench.distill.report import table3_markdown
from bench.multitask.report import table_markdown
from bench.multitask.tasks import TASKS

SEEDS = (0, 1, 2)
# test accuracy per (method, regime) and seed
ACC = {("baseline", "sparse"): (0.660, 0.652, 0.672), ("great", "sparse"): (0.700, 0.690, 0.712),
       ("kd", "sparse"): (0.740, 0.735, 0.745), ("baseline", "dense"): (0.84, 0.83, 0.85),
       ("great", "dense"): (0.84, 0.845, 0.83), ("kd", "dense"): (0.842, 0.838, 0.84)}
N_TEST = 2000


def distill_rows():
    return [{"dataset": "fashion-mnist", "student": "cnn5", "teacher": "resnet18-w16", "method": m, "regime": g,
             "fraction": 1.0 if g == "dense" else 0.05, "n_train": 100, "seed": s, "epochs": 1,
             "n_test": N_TEST, "test_acc": ACC[m, g][i], "teacher_acc": 0.87, "clean_acc": 0.8, "fgsm_acc": 0.1,
             "ifgsm_acc": 0.05, "epsilon": 0.1, "n_eval": 300, "seconds": 1.0}
            for m in ("baseline", "great", "kd") for g in ("dense", "sparse") for i, s in enumerate(SEEDS)]


def paired_t(a, b):
    ci = ttest_rel([100 * x for x in a], [100 * x for x in b]).confidence_interval(0.95)
    return 100 * (sum(a) - sum(b)) / len(a), ci.low, ci.high


def wald_half(accs, n=N_TEST):
    """1.96 sqrt(p (1 - p) / n) at the seeds' mean accuracy, in points (close to Wilson's here)."""
    p = sum(accs) / len(accs)
    return 100 * 1.96 * math.sqrt(p * (1 - p) / n)


def test_distillation_claim_is_great_minus_each_method_paired_by_seed():
    """The paired t of the per-seed differences (scipy) and both methods' sampling error over
    2,000 test images (independent, Wald by hand here), added in quadrature."""
    md = table3_markdown(distill_rows(), preset="t")
    claim = md.split("## The paper's claim")[1].split("## Robustness")[0]
    for m, word in (("baseline", "higher"), ("kd", "lower")):
        line = next(x for x in claim.splitlines() if x.startswith(f"| {m} |"))
        sparse = line.split("|")[3]
        mean, lo, hi = paired_t(ACC["great", "sparse"], ACC[m, "sparse"])
        s = math.hypot(wald_half(ACC["great", "sparse"]), wald_half(ACC[m, "sparse"]))
        got = re.search(r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\] \((\w+), 3 seeds\)", sparse)
        assert float(got[1]) == pytest.approx(mean, abs=0.005) and got[4] == word
        assert float(got[2]) == pytest.approx(mean - math.hypot(mean - lo, s), abs=0.15)
        assert float(got[3]) == pytest.approx(mean + math.hypot(hi - mean, s), abs=0.15)
    line = next(x for x in claim.splitlines() if x.startswith("| kd |"))
    assert "cannot tell" in line.split("|")[2]  # dense: differences of -0.2, +0.7, -1.0 points


def test_distillation_accuracy_cells_carry_the_seed_and_sampling_interval():
    md = table3_markdown(distill_rows(), preset="t")
    line = next(x for x in md.splitlines() if x.startswith("| great |"))
    accs = [100 * a for a in ACC["great", "sparse"]]
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    # Wilson at the mean over n = 2000 (by hand), then the t half-width of the seeds in quadrature
    p, n, z = mean / 100, N_TEST, 1.959963984540054
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    h_seed = student_t.ppf(0.975, 2) * std / math.sqrt(3)
    lo = mean - math.hypot(mean - 100 * (centre - half), h_seed)
    hi = mean + math.hypot(100 * (centre + half) - mean, h_seed)
    assert f"{mean:.2f} ± {std:.2f} [{lo:.1f}, {hi:.1f}]" in line.split("|")[3]


# multi-task errors per method and seed (lower is better)
ERR = {"equal": {"class": (40.0, 42.0, 41.0), "edge": (0.330, 0.335, 0.332)},
       "great": {"class": (45.0, 47.0, 44.0), "edge": (0.320, 0.322, 0.321)}}


def test_multitask_cells_and_claim_against_a_paired_t_test():
    tasks = [TASKS.get("class"), TASKS.get("edge")]
    rows = [{"method": m, "seed": s, "task": k, "metric": TASKS.get(k).metric, "value": v[i]}
            for m, per in ERR.items() for k, v in per.items() for i, s in enumerate(SEEDS)]
    md = table_markdown(rows, tasks, ["equal", "great"], "# caption")
    vals = ERR["great"]["edge"]
    mean, std = sum(vals) / 3, (sum((v - sum(vals) / 3) ** 2 for v in vals) / 2) ** 0.5
    h = student_t.ppf(0.975, 2) * std / math.sqrt(3)
    great = next(x for x in md.splitlines() if x.startswith("| GREAT |"))
    assert f"{mean:.3f} ± {std:.3f} [{mean - h:.3f}, {mean + h:.3f}]" in great
    claim = md.split("## The paper's claim")[1].split("Paper, Table 4")[0]
    line = next(x for x in claim.splitlines() if x.startswith("| Equal |"))
    ci = ttest_rel(ERR["great"]["edge"], ERR["equal"]["edge"]).confidence_interval(0.95)
    d = sum(ERR["great"]["edge"]) / 3 - sum(ERR["equal"]["edge"]) / 3
    assert f"{d:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] (GREAT lower)" in line.split("|")[3]
    ci = ttest_rel(ERR["great"]["class"], ERR["equal"]["class"]).confidence_interval(0.95)
    d = sum(ERR["great"]["class"]) / 3 - sum(ERR["equal"]["class"]) / 3
    assert re.search(re.escape(f"{d:+.1f} [{ci.low:+.1f}, {ci.high:+.1f}]") + r" \((GREAT higher|cannot tell)\)",
                     line.split("|")[2])
