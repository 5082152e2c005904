"""The paper's claims as paired comparisons, and the one rule that labels them.

Each claim of the GREAT paper (Sinha et al.) that great-bench can test is a list of
comparisons "first minus second on a column, with a claimed sign". Each comparison is
measured across the training seeds (both methods trained with the same seeds):

- robustness rows: ``bench.stats.paired_across_seeds`` on the per-seed paired tables of
  the same test examples (seed spread + test-sampling error, square-and-add);
- distillation rows (accuracies without per-example masks): ``unpaired_across_seeds``;
- multi-task rows (one RMSE or error per seed and task): ``seeds_only``, the paired t.

**The rule.** The family is every comparison of every claim below that the results can
measure (both methods present, two or more common seeds). Holm's step-down correction
(``bench.stats.holm``) adjusts the family's two-sided p-values; a comparison *holds* when
its adjusted p < 0.05 and the difference has the claimed sign, *does not hold* when the
adjusted p < 0.05 and the sign is the opposite, and is *cannot tell* otherwise. A claim
(``claim_label``) does not hold when any comparison does not hold; otherwise it is *partly
measured* when some of its comparisons could not be measured (a preset without FGSM-AT cannot
show "GREACE alone is robust" from GREACE > baseline alone), holds when all hold, and is cannot
tell otherwise. An unmeasured comparison of a partly measured claim gets a row of its own
("not measured", no numbers). The family-wise error rate over the whole family is 5%.

This per-folder family is derived from what a folder measured. A study's verdicts come from
a pre-registered family instead (``bench.report.family``: one committed file, one Holm correction
over every network and epsilon it names).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from bench.report.compare import across_seeds, compare
from core.registry import Registry
from bench.report.tables import FGSM, IFGSM, Table
from bench.defense_cards import display
from bench.csv_files import read_rows
from bench.stats import AcrossSeeds, claim_verdict, holm, seeds_only, unpaired_across_seeds

ALPHA = 0.05
FIELDS = ["claim", "track", "dataset", "first", "second", "column", "sign", "seeds", "n", "diff", "ci_low", "ci_high",
          "p_value", "p_holm", "verdict", "claim_verdict", "unit"]


@dataclass(frozen=True)
class Comparison:
    """``first`` minus ``second`` on ``column`` (a robustness table column, a distillation
    regime or a multi-task task); ``sign`` +1 when the paper claims it is positive."""

    track: str
    first: str
    second: str
    column: str
    sign: int


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str          # where the paper says it
    comparisons: tuple[Comparison, ...]


def _robust(first, second, column, sign=+1):
    return Comparison("robustness", first, second, column, sign)


# The paper's claims, section 3.1 (Table 1, CIFAR-10, epsilon 0.1) and Tables 3 and 4.
CLAIMS: list[Claim] = [
    Claim("GREAT adds robustness to single-step attacks", "sec. 3.1; Table 1: FGSM 47.5 vs baseline 32.8",
          (_robust("great", "baseline", FGSM.name),)),
    Claim("GREACE alone is robust", "sec. 3.1; Table 1: iFGSM 72.4 vs baseline 2.0 and adversarial 16.7",
          (_robust("greace", "baseline", IFGSM.name), _robust("greace", "fgsm-at", IFGSM.name))),
    Claim("GREAT and GREACE together boost robustness", "sec. 3.1; Table 1: iFGSM 77.0 vs 72.4 (GREACE), 15.5 (GREAT)",
          (_robust("great-ce", "greace", IFGSM.name), _robust("great-ce", "great", IFGSM.name))),
    Claim("GRE(AT+CE) beats adversarial training on single-step attacks", "sec. 3.1; Table 1: FGSM 81.3 vs 56.9",
          (_robust("great-ce", "fgsm-at", FGSM.name),)),
    Claim("GREAT is the best student in the sparse regime", "sec. 3.2, Table 3",
          (Comparison("distillation", "great", "baseline", "sparse", +1),
           Comparison("distillation", "great", "kd", "sparse", +1))),
    Claim("GREAT has the lowest edge and denoising errors", "sec. 3.3, Table 4",
          tuple(Comparison("multitask", "great", other, task, -1)
                for other in ("equal", "uncertainty", "gradnorm") for task in ("edge", "auto"))),
    Claim("The gradient-alignment layers, not the loss normalisation, lower them", "sec. 3.3 (losses normalised "
          "by their initial value); ablation equal-normalized",
          tuple(Comparison("multitask", "great", "equal-normalized", task, -1) for task in ("edge", "auto"))),
]


@dataclass
class Sources:
    """What the comparisons are measured on: the robustness tables and the tracks' rows."""

    tables: list[Table]
    distillation: list[dict]
    multitask: list[dict]

    @classmethod
    def in_folder(cls, tables: list[Table], results: Path) -> "Sources":
        return cls(tables, read_rows(results / "distillation.csv"), read_rows(results / "multitask.csv"))


Measure = Callable[[Sources, Comparison], list[tuple[str, AcrossSeeds, str]]]
MEASURES: Registry[Measure] = Registry("claim track")


@MEASURES.register("robustness")
def _robustness(src: Sources, c: Comparison) -> list[tuple[str, AcrossSeeds, str]]:
    out = []
    for t in src.tables:
        if c.first not in t.defenses or c.second not in t.defenses:
            continue
        comp = compare([replace(t, defenses=[c.first])], c.second)  # only the pair this comparison needs
        s = across_seeds(comp)  # paired_across_seeds per defense and column
        s = s[(s["defense"] == c.first) & (s["column"] == c.column)] if not s.empty else s
        for _, r in s.iterrows():
            n = comp[(comp["defense"] == c.first) & (comp["column"] == c.column)]["n"].min()
            out.append((t.dataset, AcrossSeeds(r["mean_diff_pct"] / 100, 0.0, int(r["seeds"]), int(n),
                                               r["ci_low_pct"] / 100, r["ci_high_pct"] / 100, r["p_value"]), "points"))
    return out


@MEASURES.register("distillation")
def _distillation(src: Sources, c: Comparison) -> list[tuple[str, AcrossSeeds, str]]:
    out = []
    for key in dict.fromkeys((r["dataset"], r["student"], r["teacher"]) for r in src.distillation):
        sel = lambda m: {int(r["seed"]): float(r["test_acc"]) for r in src.distillation
                         if (r["dataset"], r["student"], r["teacher"]) == key and r["method"] == m
                         and r["regime"] == c.column}
        a, b = sel(c.first), sel(c.second)
        ns = [int(r["n_test"]) for r in src.distillation if (r["dataset"], r["student"], r["teacher"]) == key
              and r.get("n_test") not in (None, "")]
        if len(set(a) & set(b)) < 2 or not ns:
            continue
        out.append((f"{key[0]} {key[1]}(S)+{key[2]}(T)", unpaired_across_seeds(a, b, min(ns)), "points"))
    return out


@MEASURES.register("multitask")
def _multitask(src: Sources, c: Comparison) -> list[tuple[str, AcrossSeeds, str]]:
    sel = lambda m: {int(r["seed"]): float(r["value"]) for r in src.multitask if r["method"] == m and r["task"] == c.column}
    a, b = sel(c.first), sel(c.second)
    if len(set(a) & set(b)) < 2:
        return []
    metric = next(r["metric"] for r in src.multitask if r["task"] == c.column)
    return [("multitask", seeds_only(a, b), metric)]


NOT_MEASURED, PARTLY = "not measured", "partly measured"


def claim_label(comparison_verdicts: list[str]) -> str:
    """A claim's verdict from its comparisons' (module docstring: the rule). An unmeasured
    comparison never lets a claim hold: it makes it "partly measured" (or "not measured" when
    none was measured), unless a measured one already does not hold."""
    labels = set(comparison_verdicts)
    if "does not hold" in labels:
        return "does not hold"
    if NOT_MEASURED in labels:
        return NOT_MEASURED if labels == {NOT_MEASURED} else PARTLY
    return "holds" if labels == {"holds"} else "cannot tell"


def is_measured(row: dict) -> bool:
    return row["verdict"] != NOT_MEASURED


def unmeasured_row(claim: str, c: Comparison, dataset: str, unit: str = "points") -> dict:
    """The row of a comparison the results could not measure: its verdict, no numbers."""
    nan = float("nan")
    return {"claim": claim, "track": c.track, "dataset": dataset, "first": c.first, "second": c.second,
            "column": c.column, "sign": c.sign, "seeds": 0, "n": 0, "diff": nan, "ci_low": nan, "ci_high": nan,
            "p_value": nan, "p_holm": nan, "verdict": NOT_MEASURED, "unit": unit}


def verdicts(src: Sources, claims: list[Claim] = CLAIMS, alpha: float = ALPHA) -> list[dict]:
    """One row (``FIELDS``) per measured comparison, Holm-adjusted over all of them, with
    its verdict and its claim's verdict (module docstring: the rule); plus a "not measured"
    row for each comparison a partly measured claim could not measure (outside Holm)."""
    rows, missing = [], []
    for claim in claims:
        mine = []
        for c in claim.comparisons:
            got = MEASURES.get(c.track)(src, c)
            if not got:
                missing.append((claim.name, c))
            for dataset, r, unit in got:
                scale = 100.0 if unit == "points" else 1.0
                mine.append({"claim": claim.name, "track": c.track, "dataset": dataset, "first": c.first,
                             "second": c.second, "column": c.column, "sign": c.sign, "seeds": r.seeds, "n": r.n,
                             "diff": scale * r.mean, "ci_low": scale * r.ci_low, "ci_high": scale * r.ci_high,
                             "p_value": r.p_value, "unit": unit})
        rows += mine
    for row, adj in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = adj
        row["verdict"] = claim_verdict(row["diff"], adj, row["sign"], alpha)
    measured_claims = {r["claim"] for r in rows}
    for name, c in missing:
        if name in measured_claims:  # a claim with nothing measured stays out, as before
            dataset = next(r["dataset"] for r in rows if r["claim"] == name)
            rows.append(unmeasured_row(name, c, dataset))
    order = {c.name: i for i, c in enumerate(claims)}
    rows.sort(key=lambda r: order[r["claim"]])  # stable: each claim's comparisons in order
    for claim in claims:
        mine = [r for r in rows if r["claim"] == claim.name]
        label = claim_label([r["verdict"] for r in mine])
        for r in mine:
            r["claim_verdict"] = label
    return [{k: r[k] for k in FIELDS} for r in rows]


def format_p(p: float) -> str:
    p = float(p)
    return "–" if p != p else "<0.001" if p < 0.001 else f"{p:.3f}"


def format_difference(r: dict) -> str:
    """A verdict row's difference and 95% interval: '+1.2 [-0.4, +2.8]' in points, three
    decimals for the multi-task errors (RMSE); "not measured" for an unmeasured comparison."""
    if r["verdict"] == NOT_MEASURED:
        return NOT_MEASURED
    d = 1 if r["unit"] == "points" else 3
    return f"{float(r['diff']):+.{d}f} [{float(r['ci_low']):+.{d}f}, {float(r['ci_high']):+.{d}f}]"


def verdicts_markdown(rows: list[dict]) -> str:
    """One line per claim (its verdict), then the comparisons behind it."""
    if not rows:
        return ""
    claims = list(dict.fromkeys(r["claim"] for r in rows))
    n = sum(map(is_measured, rows))
    unmeasured = (f" {len(rows) - n} comparison(s) below could not be measured: their claims are \"partly "
                  f"measured\", never \"holds\"." if n < len(rows) else "")
    out = [f"**The paper's claims: verdicts by one rule** (bench/report/claims.py). Each comparison is measured across "
           f"training seeds, its 95% interval adding the seeds' paired t-interval and the test-sampling error; "
           f"Holm's correction over the family of all {n} measured comparisons below; a comparison holds when its "
           f"Holm-adjusted p < {ALPHA} with the claimed sign, does not hold with the opposite sign, cannot tell "
           f"otherwise. A claim holds when every comparison holds and does not hold when any does not.{unmeasured}**",
           ""]
    for name in claims:
        out.append(f"- **{name}: {next(r['claim_verdict'] for r in rows if r['claim'] == name)}**")
    out += ["", "| Claim | Comparison | Column | Difference [95% interval] | p | Holm p | Verdict |",
            "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        sign = ">" if r["sign"] > 0 else "<"
        out.append(f"| {r['claim']} | {display(r['first'])} {sign} {display(r['second'])} ({r['dataset']}) | "
                   f"{r['column']} | {format_difference(r)}{' ' + r['unit'] if is_measured(r) else ''} | "
                   f"{format_p(r['p_value'])} | {format_p(r['p_holm'])} | {r['verdict']} |")
    return "\n".join(out) + "\n"
