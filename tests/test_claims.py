"""The paper's claims under one rule (bench/report/claims.py): Holm over the family of all measured
comparisons, then holds / does not hold / cannot tell by the adjusted p and the sign."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sst

from bench.report.claims import CLAIMS, Claim, Comparison, Sources, verdicts, verdicts_markdown
from bench.report.tables import build_tables
from tests.test_report import masks_row


def _mt_rows(method, task, values):
    return [{"method": method, "seed": s, "task": task, "metric": "RMSE", "value": v} for s, v in enumerate(values)]


def test_holm_over_the_family_turns_a_nominal_result_into_cannot_tell():
    """Three multi-task comparisons, paired t over 3 seeds (scipy's ttest_rel):
    p1 ~ 0.001 holds after Holm, p2 ~ 0.02 would hold alone but not at 2 x p2, p3 is
    large; the claim with a 'cannot tell' and no 'does not hold' is 'cannot tell'; a
    significant opposite sign makes its claim 'does not hold'."""
    base = [0.30, 0.32, 0.31]
    rows = (_mt_rows("equal", "edge", base) + _mt_rows("great", "edge", [0.20, 0.221, 0.209])
            + _mt_rows("equal", "auto", base) + _mt_rows("great", "auto", [0.27, 0.275, 0.285])
            + _mt_rows("equal", "class", base) + _mt_rows("great", "class", [0.32, 0.30, 0.33]))
    ps = {t: sst.ttest_rel([r["value"] for r in rows if r["method"] == "great" and r["task"] == t], base).pvalue
          for t in ("edge", "auto", "class")}
    assert ps["edge"] < 0.05 / 3 and 0.05 / 2 < ps["auto"] < 0.05 and ps["class"] > 0.5
    claims = [Claim("a", "", (Comparison("multitask", "great", "equal", "edge", -1),
                              Comparison("multitask", "great", "equal", "auto", -1))),
              Claim("b", "", (Comparison("multitask", "great", "equal", "class", -1),))]
    got = verdicts(Sources([], [], rows), claims)
    by = {r["column"]: r for r in got}
    assert {t: by[t]["p_value"] for t in ps} == pytest.approx(ps, rel=1e-5)
    # Holm by hand: sorted edge (x3), auto (x2), class (x1), running maximum
    assert by["edge"]["p_holm"] == pytest.approx(3 * ps["edge"], rel=1e-5)
    assert by["auto"]["p_holm"] == pytest.approx(max(3 * ps["edge"], 2 * ps["auto"]), rel=1e-5)
    assert [by[t]["verdict"] for t in ("edge", "auto", "class")] == ["holds", "cannot tell", "cannot tell"]
    assert by["edge"]["claim_verdict"] == "cannot tell" and by["class"]["claim_verdict"] == "cannot tell"
    # the same first comparison with the opposite claimed sign
    flipped = [Claim("c", "", (Comparison("multitask", "great", "equal", "edge", +1),
                               Comparison("multitask", "great", "equal", "auto", +1)))]
    got = verdicts(Sources([], [], rows), flipped)
    # a family of two: auto's Holm p is max(2 p_edge, 1 x p_auto) = 0.031 < 0.05
    assert [r["verdict"] for r in got] == ["does not hold", "does not hold"]
    assert {r["claim_verdict"] for r in got} == {"does not hold"}
    md = verdicts_markdown(got)
    assert "- **c: does not hold**" in md and "Holm" in md


def test_robustness_comparisons_carry_the_sampling_error():
    """Every seed has the same +6-point difference on 50 examples (3 vs 0 discordant): the
    seeds alone would call it certain; with the sampling error of 50 examples it is not."""
    rows = []
    for seed in (0, 1, 2):
        ref = np.array([1] * 20 + [0] * 30, bool)
        new = ref.copy()
        new[20:23] = True
        rows += [masks_row("baseline", "none", "untargeted", 0.0, [1] * 50, seed),
                 masks_row("baseline", "fgsm", "untargeted", 0.1, ref, seed),
                 masks_row("great", "none", "untargeted", 0.0, [1] * 50, seed),
                 masks_row("great", "fgsm", "untargeted", 0.1, new, seed)]
    tables = build_tables(rows, epsilon=0.1)
    got = verdicts(Sources(tables, [], []), [CLAIMS[0]])
    (r,) = got
    assert (r["first"], r["second"], r["column"], r["seeds"], r["n"]) == ("great", "baseline", "Non-targeted FGSM", 3, 50)
    assert r["diff"] == pytest.approx(6.0) and r["ci_low"] < 0 < r["ci_high"]
    assert r["p_value"] > 0.05 and r["verdict"] == "cannot tell"


def test_distillation_comparisons_use_the_unpaired_sampling_term():
    rows = [{"dataset": "toy", "student": "cnn5", "teacher": "t", "method": m, "regime": "sparse", "seed": s,
             "n_test": 2000, "test_acc": a}
            for m, accs in (("great", [0.70, 0.71, 0.72]), ("baseline", [0.69, 0.70, 0.71]), ("kd", [0.74, 0.75, 0.76]))
            for s, a in enumerate(accs)]
    got = verdicts(Sources([], rows, []), [c for c in CLAIMS if c.comparisons[0].track == "distillation"])
    by = {r["second"]: r for r in got}
    # great - baseline = +1.0 on every seed: no seed spread, only 2,000 examples' sampling error
    assert by["baseline"]["diff"] == pytest.approx(1.0) and by["baseline"]["ci_low"] < 0
    assert by["baseline"]["verdict"] == "cannot tell"
    # great - kd = -4.0 on every seed: below 0 even with the sampling term, Holm over 2
    assert by["kd"]["ci_high"] < 0 and by["kd"]["verdict"] == "does not hold"
    assert {r["claim_verdict"] for r in got} == {"does not hold"}


def test_unmeasured_comparisons_are_left_out_of_the_family():
    assert verdicts(Sources([], [], []), CLAIMS) == []


def _greace_vs_baseline_tables(n=200):
    """GREACE right on 180 of 200 iFGSM examples, the baseline on 20, on 3 seeds; no FGSM-AT."""
    rows = []
    for seed in (0, 1, 2):
        ref = np.array([1] * 20 + [0] * (n - 20), bool)
        new = np.array([1] * 180 + [0] * (n - 180), bool)
        for d, bits in (("baseline", ref), ("greace", new)):
            rows += [masks_row(d, "none", "untargeted", 0.0, [1] * n, seed),
                     masks_row(d, "ifgsm", "untargeted", 0.1, bits, seed)]
    return build_tables(rows, epsilon=0.1)


def test_a_claim_with_an_unmeasured_comparison_is_partly_measured_never_holds():
    """Without FGSM-AT, "GREACE alone is robust" has only GREACE > baseline, which holds: the
    claim is "partly measured" (it used to be "holds"), the missing comparison gets a row of its
    own outside the Holm family, and the markdown says so."""
    claim = next(c for c in CLAIMS if c.name == "GREACE alone is robust")
    got = verdicts(Sources(_greace_vs_baseline_tables(), [], []), [claim])
    assert [(r["second"], r["verdict"]) for r in got] == [("baseline", "holds"), ("fgsm-at", "not measured")]
    assert {r["claim_verdict"] for r in got} == {"partly measured"}
    measured, missing = got
    assert measured["p_holm"] == pytest.approx(measured["p_value"])  # a family of one: the unmeasured is outside
    assert np.isnan(missing["p_value"]) and np.isnan(missing["diff"]) and missing["n"] == 0
    md = verdicts_markdown(got)
    assert "- **GREACE alone is robust: partly measured**" in md and "family of all 1 measured" in md
    assert "| not measured | – | – | not measured |" in md


def test_a_measured_refutation_still_decides_a_partly_measured_claim():
    """An unmeasured comparison never rescues a claim whose measured comparison does not hold."""
    flipped = Claim("flipped", "", (Comparison("robustness", "baseline", "greace", "Non-targeted iFGSM", +1),
                                    Comparison("robustness", "baseline", "fgsm-at", "Non-targeted iFGSM", +1)))
    got = verdicts(Sources(_greace_vs_baseline_tables(), [], []), [flipped])
    assert [r["verdict"] for r in got] == ["does not hold", "not measured"]
    assert {r["claim_verdict"] for r in got} == {"does not hold"}


def test_claim_label_rule():
    from bench.report.claims import claim_label
    assert claim_label(["holds", "holds"]) == "holds"
    assert claim_label(["holds", "not measured"]) == "partly measured"
    assert claim_label(["cannot tell", "not measured"]) == "partly measured"
    assert claim_label(["does not hold", "not measured"]) == "does not hold"
    assert claim_label(["not measured", "not measured"]) == "not measured"
    assert claim_label(["holds", "cannot tell"]) == "cannot tell"
