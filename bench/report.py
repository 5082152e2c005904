"""Robustness tables in the layout of the GREAT paper's Tables 1 and 2.

Rows are defenses; columns are train accuracy, no attack, non-targeted FGSM and iFGSM,
targeted FGSM and iFGSM against the worst (least-likely) and a random target, all at the
preset's epsilon, plus PGD, minimum-norm L2 (per example the best of CW and FMN, at an L2
radius) and AutoAttack. Values are test accuracy
in %, mean +- std over training seeds when several exist. Every table is a view of the
tidy rows written by ``attacks.evaluate``; a column the sweep did not run is left out.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

# Paper names for the registered defenses (labels only; unknown names print as they are).
DISPLAY = {
    "baseline": "Baseline", "fgsm-at": "Adversarial", "adv-backprop": "Adv. backprop", "greace": "GREACE",
    "great": "GREAT", "great-ce": "GRE(AT+CE)", "datagrad-l1": "DataGrad-L1", "datagrad-l2": "DataGrad-L2",
}


@dataclass(frozen=True)
class Column:
    group: str     # top header (Non-Targeted, Targeted, ...)
    label: str     # second header
    attack: str    # "train" reads train_accuracy
    mode: str = "untargeted"
    at: str = "eps"  # which epsilon: "eps" (the preset's), "cw" (the CW radius), "zero"


COLUMNS = (
    Column("", "Train", "train", at="zero"),
    Column("", "No attack", "none", at="zero"),
    Column("Non-targeted", "FGSM", "fgsm"),
    Column("Non-targeted", "iFGSM", "ifgsm"),
    Column("Targeted FGSM", "Worst", "fgsm", "worst"),
    Column("Targeted FGSM", "Random", "fgsm", "random"),
    Column("Targeted iFGSM", "Worst", "ifgsm", "worst"),
    Column("Targeted iFGSM", "Random", "ifgsm", "random"),
    Column("", "PGD", "pgd"),
    Column("", "Min-norm L2", "l2min", at="cw"),  # per example the best of CW and FMN
    Column("", "AutoAttack", "autoattack"),
)


def display(defense: str) -> str:
    return DISPLAY.get(defense, defense)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _cell_values(rows: Sequence[dict], col: Column, defense: str, epsilon: float, cw_radius: float) -> list[float]:
    mine = [r for r in rows if r["defense"] == defense]
    if col.attack == "train":
        per_seed = {str(r["seed"]): _num(r["train_accuracy"]) for r in mine if r["attack"] == "none"}
        return [v for v in per_seed.values() if not math.isnan(v)]
    eps = {"eps": epsilon, "cw": cw_radius, "zero": 0.0}[col.at]
    vals: dict[str, float] = {}
    for r in mine:
        if r["attack"] == col.attack and r["mode"] == col.mode and abs(_num(r["epsilon"]) - eps) < 1e-9:
            vals[str(r["seed"])] = _num(r["accuracy"])  # one per seed (later rows win)
    return list(vals.values())


@dataclass
class Table:
    dataset: str
    epsilon: float
    cw_radius: float
    columns: list[Column]
    defenses: list[str]
    cells: dict[tuple[str, str], list[float]]  # (defense, column label + group) -> per-seed values

    def stat(self, defense: str, col: Column) -> tuple[float, float, int]:
        v = self.cells.get((defense, col.group + col.label), [])
        if not v:
            return math.nan, math.nan, 0
        return float(np.mean(v)) * 100, (float(np.std(v, ddof=1)) * 100 if len(v) > 1 else 0.0), len(v)

    def text(self, defense: str, col: Column, pm: str = " ± ") -> str:
        mean, std, n = self.stat(defense, col)
        if n == 0:
            return "–"
        return f"{mean:.2f}" + (f"{pm}{std:.2f}" if n > 1 else "")


def build_tables(rows: Iterable[dict], epsilon: float, cw_radius: float = 1.0) -> list[Table]:
    """One table per dataset; defenses in order of first appearance; empty columns dropped."""
    rows = list(rows)
    tables = []
    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        rs = [r for r in rows if str(r["dataset"]) == dataset]
        defenses = list(dict.fromkeys(str(r["defense"]) for r in rs))
        cells = {(d, c.group + c.label): _cell_values(rs, c, d, epsilon, cw_radius) for d in defenses for c in COLUMNS}
        cols = [c for c in COLUMNS if any(cells[(d, c.group + c.label)] for d in defenses)]
        tables.append(Table(dataset, epsilon, cw_radius, cols, defenses, cells))
    return tables


def _caption(t: Table) -> str:
    seeds = max((t.stat(d, c)[2] for d in t.defenses for c in t.columns), default=0)
    extra = (f"; min-norm L2 (per example the smaller of CW and FMN) at radius {t.cw_radius:g}"
             if any(c.attack == "l2min" for c in t.columns) else "")
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    return (f"{t.dataset} test accuracy (%) under attack, epsilon = {t.epsilon:g} (Linf, pixel units), "
            f"iFGSM k = 10{extra}; {spread}.")


def to_markdown(tables: Sequence[Table]) -> str:
    out = []
    for t in tables:
        head = ["Method"] + [f"{c.group} {c.label}".strip() for c in t.columns]
        out.append(f"**{_caption(t)}**\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * len(t.columns)) + "|")
        for d in t.defenses:
            out.append("| " + " | ".join([display(d)] + [t.text(d, c) for c in t.columns]) + " |")
        out.append("")
    return "\n".join(out)


def _tex(s: str) -> str:
    return s.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def to_latex(tables: Sequence[Table]) -> str:
    out = []
    for t in tables:
        out += [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * len(t.columns) + "}", r"\hline"]
        groups: list[tuple[str, int]] = []
        for c in t.columns:
            if groups and groups[-1][0] == c.group:
                groups[-1] = (c.group, groups[-1][1] + 1)
            else:
                groups.append((c.group, 1))
        head = ["Method"]
        for g, n in groups:
            head += [rf"\multicolumn{{{n}}}{{c}}{{{_tex(g)}}}"] if g else [""] * n
        out.append(" & ".join(head) + r" \\")
        out.append(" & ".join([""] + [_tex(c.label) for c in t.columns]) + r" \\ \hline")
        for d in t.defenses:
            out.append(" & ".join([_tex(display(d))] + [t.text(d, c, r" $\pm$ ").replace("–", "--")
                                                        for c in t.columns]) + r" \\")
        out += [r"\hline", r"\end{tabular}", rf"\caption{{{_tex(_caption(t))}}}", r"\end{table}", ""]
    return "\n".join(out)


def to_csv(tables: Sequence[Table]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "epsilon", "defense", "column", "mean_pct", "std_pct", "seeds"])
    for t in tables:
        for d in t.defenses:
            for c in t.columns:
                mean, std, n = t.stat(d, c)
                if n:
                    w.writerow([t.dataset, t.epsilon, d, f"{c.group} {c.label}".strip(), f"{mean:.4f}",
                                f"{std:.4f}", n])
    return buf.getvalue()


def masking_markdown(results: Sequence[dict]) -> str:
    """The masking checks as a compact table: one row per defense (and seed), one column per check."""
    if not results:
        return ""
    checks = list(dict.fromkeys(r["check"] for r in results))
    models = list(dict.fromkeys((r["defense"], str(r["seed"])) for r in results))
    lines = ["**Gradient-masking checks** (pass / FLAG with the number behind it; see masking.csv)\n",
             "| Method | Seed | " + " | ".join(checks) + " |", "|:---|---:|" + "---|" * len(checks)]
    for d, s in models:
        cells = []
        for ch in checks:
            r = next(x for x in results if x["defense"] == d and str(x["seed"]) == s and x["check"] == ch)
            val = f" ({float(r['value']):.3f})" if r["value"] != "" else ""
            cells.append({"flag": "**FLAG**", "pass": "pass"}.get(r["status"], r["status"]) + val)
        lines.append(f"| {display(d)} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
