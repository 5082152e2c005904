"""Robustness tables in the layout of the GREAT paper's Tables 1 and 2.

Rows are defenses; columns are train accuracy, no attack, non-targeted FGSM and iFGSM,
targeted FGSM and iFGSM against the worst (least-likely) and a random target, all at the
preset's epsilon, plus PGD, the transfer attack (PGD made on the baseline of the same seed,
``bench.eval.transfer``), minimum-norm L2 (per example the best of CW and FMN, at an L2
radius), AutoAttack and the per-example worst case
over every attack at that epsilon (``bench.report.worst_case``). Values are test accuracy in %
with a 95% Wilson interval over the cell's n examples; over several training seeds, mean
+- sample std and an interval that adds seed spread and test sampling (``bench.stats``).

Every table is a view of the tidy rows written by ``bench.eval.evaluate``, built with pandas:
``cell_frame`` (one row per defense, seed and column), ``summary_frame`` (one per defense
and column) and pivots of it for Markdown, LaTeX and CSV. A column the sweep did not run
is left out.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from attacks.registry import ATTACKS
from bench.eval.schema import transfer_defense
from bench.config.epsilon_units import epsilon_phrase
from bench.defense_cards import display
from bench.stats import Summary, aggregate
from bench.report.worst_case import WORST, worst_case_rows

@dataclass(frozen=True)
class Column:
    group: str     # top header (Non-Targeted, Targeted, ...)
    label: str     # second header
    attack: str    # "train" reads train_accuracy
    mode: str = "untargeted"
    at: str = "eps"  # which epsilon: "eps" (the preset's), "cw" (the CW radius), "zero"
    norm: str | None = None  # only rows of this norm (None: any)

    @property
    def name(self) -> str:
        return f"{self.group} {self.label}".strip()


# The columns the paper's claims name (``bench.report.claims``), as objects: their text is built once.
FGSM = Column("Non-targeted", "FGSM", "fgsm")
IFGSM = Column("Non-targeted", "iFGSM", "ifgsm")
COLUMNS = (
    Column("", "Train", "train", at="zero"),
    Column("", "No attack", "none", at="zero"),
    FGSM,
    IFGSM,
    Column("Targeted FGSM", "Worst", "fgsm", "worst"),
    Column("Targeted FGSM", "Random", "fgsm", "random"),
    Column("Targeted iFGSM", "Worst", "ifgsm", "worst"),
    Column("Targeted iFGSM", "Random", "ifgsm", "random"),
    Column("", "PGD", "pgd"),
    Column("", "Transfer", "transfer"),  # PGD made on the undefended source run (bench.eval.transfer)
    Column("", "APGD-CE+T", "apgd", norm="Linf"),
    Column("", "Min-norm L2", "l2min", at="cw"),  # per example the best of CW and FMN
    Column("", "APGD L2", "apgd", at="cw", norm="L2"),  # fixed radius: the check on the min-norm column
    Column("", "AutoAttack", "autoattack"),
)


WORST_CASE = "Worst case"  # the group of the worst-case columns; the label says the norm and radius


def worst_case_column(norm: str, radius: float) -> Column:
    """The worst case over attacks at one norm and radius (Linf: the table's epsilon; L2: the CW radius)."""
    return Column(WORST_CASE, f"{norm} {radius:g}", WORST, "all", "cw" if norm == "L2" else "eps", norm)


def worst_columns(epsilon: float, cw_radius: float) -> tuple[Column, ...]:
    """The worst case over attacks at the table's Linf epsilon and at the CW radius."""
    return worst_case_column("Linf", epsilon), worst_case_column("L2", cw_radius)


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


CELL_FIELDS = ["dataset", "defense", "seed", "column", "accuracy", "n", "correct_mask", "n_attacks", "cascade"]


def cell_frame(rows: Iterable[dict], epsilon: float, cw_radius: float = 1.0) -> pd.DataFrame:
    """Per-seed cells: one row per (dataset, defense, seed, column name), in column order.

    A worst-case column is kept only where it combines two or more attacks (with one it
    repeats that attack's column)."""
    rows = list(rows)
    cols = list(COLUMNS) + list(worst_columns(epsilon, cw_radius))
    eps_of = {"eps": epsilon, "cw": cw_radius, "zero": 0.0}
    records = []
    for r in rows + worst_case_rows(rows):
        for c in cols:
            if c.attack == "train":
                if r["attack"] == "none" and not math.isnan(_num(r.get("train_accuracy"))):
                    # train accuracy is measured on the training subset: no test n, no interval
                    records.append([r["dataset"], r["defense"], str(r["seed"]), c.name,
                                    _num(r["train_accuracy"]), 0, "", 1, ""])
                continue
            if (r["attack"] == c.attack and r["mode"] == c.mode and (c.norm is None or r["norm"] == c.norm)
                    and abs(_num(r["epsilon"]) - eps_of[c.at]) < 1e-9):
                records.append([r["dataset"], r["defense"], str(r["seed"]), c.name, _num(r["accuracy"]),
                                int(r["n"]), r.get("correct_mask", ""), int(r.get("n_attacks", 1)),
                                r.get("cascade_after") or ""])
    df = pd.DataFrame(records, columns=CELL_FIELDS)
    # one value per seed (later rows win, as a re-run supersedes an older one)
    df = df.drop_duplicates(["dataset", "defense", "seed", "column"], keep="last")
    single = df[df["column"].str.startswith("Worst case")].groupby("column")["n_attacks"].max() < 2
    df = df[~df["column"].isin(single[single].index)]
    order = {c.name: i for i, c in enumerate(cols)}
    return df.sort_values("column", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def _summary(group: pd.DataFrame) -> Summary:
    acc = group["accuracy"].tolist()
    if (group["n"] == 0).any():  # train accuracy: mean and spread only
        std = float(pd.Series(acc).std(ddof=1)) if len(acc) > 1 else 0.0
        return Summary(float(sum(acc) / len(acc)), std, len(acc), 0, math.nan, math.nan)
    return aggregate(acc, group["n"].tolist())


def summary_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, defense, column): mean, std, seeds, n, ci_low, ci_high (fractions)."""
    out = []
    for (dataset, defense, column), g in cells.groupby(["dataset", "defense", "column"], sort=False):
        s = _summary(g)
        out.append({"dataset": dataset, "defense": defense, "column": column, "mean": s.mean, "std": s.std,
                    "seeds": s.seeds, "n": s.n, "ci_low": s.ci_low, "ci_high": s.ci_high})
    return pd.DataFrame(out, columns=["dataset", "defense", "column", "mean", "std", "seeds", "n", "ci_low",
                                      "ci_high"])


def cell_text(s: pd.Series | dict, pm: str = " ± ") -> str:
    """'84.5 [82.2, 86.6]' (one seed), '84.5 ± 1.2 [80.1, 88.3]' (several), '94.7' (train)."""
    text = f"{100 * s['mean']:.1f}"
    if s["seeds"] > 1:
        text += f"{pm}{100 * s['std']:.1f}"
    if s["n"] > 0:
        text += f" [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"
    return text


@dataclass
class Table:
    dataset: str
    epsilon: float
    cw_radius: float
    columns: list[Column]
    defenses: list[str]
    summary: pd.DataFrame  # this dataset's rows of summary_frame
    cells: pd.DataFrame    # this dataset's rows of cell_frame (per seed, with masks)
    transfer_from: tuple[str, ...] = ()  # the defenses the transfer column's examples were made on
    units: str = "pixel"  # what the rows at the table's epsilon were asked in (``epsilon_units``)
    l2min_parts: tuple[str, ...] = ()  # the minimum-norm attacks the l2min rows took the best of
    apgd_targets: tuple[int, ...] = ()  # APGD-T's target classes (dlr_targets) in the APGD-CE+T rows

    def stat(self, defense: str, col: Column) -> Summary | None:
        hit = self.summary[(self.summary["defense"] == defense) & (self.summary["column"] == col.name)]
        if hit.empty:
            return None
        r = hit.iloc[0]
        return Summary(float(r["mean"]), float(r["std"]), int(r["seeds"]), int(r["n"]), float(r["ci_low"]),
                       float(r["ci_high"]))

    @property
    def seeds(self) -> int:
        return int(self.summary["seeds"].max()) if len(self.summary) else 0

    def wide(self, pm: str = " ± ", missing: str = "–") -> pd.DataFrame:
        """Defenses x columns of cell texts, in table order, plus a last row with each column's n."""
        s = self.summary.assign(text=self.summary.apply(cell_text, axis=1, pm=pm))
        names = [c.name for c in self.columns]
        wide = (s.pivot_table(index="defense", columns="column", values="text", aggfunc="first")
                .reindex(index=self.defenses, columns=names).fillna(missing))
        n = s.pivot_table(index="dataset", columns="column", values="n", aggfunc="max").reindex(columns=names)
        n_row = [("" if c.attack == "train" else str(int(v)) if v == v else missing)
                 for c, v in zip(self.columns, n.iloc[0])]
        wide.index = [display(d) for d in wide.index]
        wide.loc["n (examples)"] = n_row
        return wide


def build_tables(rows: Iterable[dict], epsilon: float, cw_radius: float = 1.0) -> list[Table]:
    """One table per dataset; defenses in order of first appearance; empty columns dropped."""
    rows = list(rows)
    cells = cell_frame(rows, epsilon, cw_radius)
    summary = summary_frame(cells)
    cols = list(COLUMNS) + list(worst_columns(epsilon, cw_radius))
    tables = []
    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        mine = summary[summary["dataset"] == dataset]
        defenses = list(dict.fromkeys(str(r["defense"]) for r in rows if str(r["dataset"]) == dataset))
        present = set(mine["column"])
        sources = tuple(dict.fromkeys(transfer_defense(str(r.get("transfer_from") or "")) for r in rows
                                      if str(r["dataset"]) == dataset and r.get("transfer_from")))
        tables.append(Table(dataset, epsilon, cw_radius, [c for c in cols if c.name in present], defenses,
                            mine.reset_index(drop=True), cells[cells["dataset"] == dataset].reset_index(drop=True),
                            sources, asked_units(rows, dataset, epsilon), l2min_parts(rows, dataset),
                            apgd_targets(rows, dataset, epsilon)))
    return tables


# How the caption names each part of ``l2min``.
PART_NAMES = {"cw": "CW", "fmn": "FMN", "fmn-warm": "FMN from APGD"}


def l2min_parts(rows: Sequence[dict], dataset: str) -> tuple[str, ...]:
    """The parts ``l2min`` rows of ``dataset`` combined, from their parameters (a part given 0
    steps was left out: ``attacks.registry.component_specs``)."""
    info = ATTACKS.get("l2min")
    parts: dict[str, None] = {}
    for r in rows:
        if r["attack"] == "l2min" and str(r["dataset"]) == dataset:
            params = json.loads(r.get("params") or "{}")
            parts.update((p, None) for p in info.combines
                         if params.get(f"{p}_steps", info.extras[f"{p}_steps"]) != 0)
    return tuple(parts)


def apgd_targets(rows: Sequence[dict], dataset: str, epsilon: float) -> tuple[int, ...]:
    """How many target classes APGD-T took in the Linf ``apgd`` rows of ``dataset`` at ``epsilon``
    (the k most likely other classes; standard AutoAttack uses all n_classes - 1)."""
    info = ATTACKS.get("apgd")
    return tuple(sorted({int(json.loads(r.get("params") or "{}").get("dlr_targets", info.extras["dlr_targets"]))
                         for r in rows if r["attack"] == "apgd" and str(r["dataset"]) == dataset
                         and r["norm"] == "Linf" and abs(_num(r["epsilon"]) - epsilon) < 1e-9}))


def asked_units(rows: Sequence[dict], dataset: str, epsilon: float) -> str:
    """"normalized" when every attacked row of ``dataset`` at ``epsilon`` was asked in the
    paper's normalised units, else "pixel" (rows from before the column existed are pixel)."""
    units = {r.get("epsilon_units") or "pixel" for r in rows
             if str(r["dataset"]) == dataset and r["attack"] != "none" and abs(_num(r["epsilon"]) - epsilon) < 1e-9}
    return "normalized" if units == {"normalized"} else "pixel"


def caption(t: Table) -> str:
    names = [PART_NAMES.get(p, p) for p in t.l2min_parts] or ["its parts"]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    extra = (f"; min-norm L2 (per example the smallest of {listed}) at radius {t.cw_radius:g}"
             if any(c.attack == "l2min" for c in t.columns) else "")
    if any(c.attack == "apgd" and c.norm == "Linf" for c in t.columns) and t.apgd_targets:
        k = " or ".join(str(k) for k in t.apgd_targets if k)
        extra += (f"; APGD-CE+T: APGD-T against the {k} most likely other classes" if k
                  else "; APGD-CE+T: APGD-CE, then the untargeted APGD-DLR")
    transfer = next((c for c in t.columns if c.attack == "transfer"), None)
    if transfer is not None:
        source = " or ".join(display(d) for d in t.transfer_from) or "the baseline"
        extra += (f"; transfer: PGD examples made on the {source} run of the same seed, evaluated on each other "
                  "model (none for the source itself)")
    worst = ("; worst case: robust to every attack at that epsilon, per example, on the examples "
             "all of them ran on" if any(c.attack == WORST for c in t.columns) else "")
    after = t.cells.loc[t.cells["cascade"] != "", "column"].unique().tolist()
    if after:
        worst += (f"; {', '.join(after)} ran only on the examples the attacks before them at that norm and "
                  "epsilon left correct (a cascade), so each such cell is the worst case over them and itself")
    if t.seeds > 1:
        spread = (f"mean ± std over {t.seeds} seeds, [95% interval adding seed spread (t) and test "
                  "sampling (Wilson)]")
    else:
        spread = "one seed, [95% Wilson interval] over the column's n test examples"
    return (f"{t.dataset} test accuracy (%) under attack, epsilon = {epsilon_phrase(t.epsilon, t.units, t.dataset)}, "
            f"iFGSM k = 10{extra}{worst}; {spread}.")


def to_markdown(tables: Sequence[Table]) -> str:
    out = []
    for t in tables:
        wide = t.wide().rename_axis("Method").reset_index()
        out.append(f"**{caption(t)}**\n")
        out.append(wide.to_markdown(index=False, colalign=["left"] + ["right"] * len(t.columns),
                                    disable_numparse=True))
        out.append("")
    return "\n".join(out)


def _tex(s: str) -> str:
    return s.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def to_latex(tables: Sequence[Table]) -> str:
    out = []
    for t in tables:
        wide = t.wide(pm=r" $\pm$ ", missing="--")
        wide.columns = pd.MultiIndex.from_tuples([(_tex(c.group), _tex(c.label)) for c in t.columns])
        wide.insert(0, ("", "Method"), [_tex(i) for i in wide.index])
        body = wide.to_latex(index=False, escape=False, multicolumn=True, multicolumn_format="c",
                             column_format="l" + "r" * len(t.columns))
        out += [r"\begin{table}[t]", r"\centering", body.rstrip(), rf"\caption{{{_tex(caption(t))}}}",
                r"\end{table}", ""]
    return "\n".join(out)


TABLE_FIELDS = ["dataset", "epsilon", "defense", "column", "mean_pct", "std_pct", "seeds", "n", "ci_low_pct",
                "ci_high_pct"]


def table_frame(tables: Sequence[Table]) -> pd.DataFrame:
    """The tables as one tidy frame (TABLE_FIELDS), defense-major in table order: what
    table.csv holds and what ``bench.report.results.table`` returns. Percentages; n empty for Train."""
    frames = []
    for t in tables:
        # defense-major, in table order (the summary is column-major)
        rank = {d: i for i, d in enumerate(t.defenses)}
        s = t.summary.sort_values("defense", key=lambda d: d.map(rank), kind="stable")
        frames.append(pd.DataFrame({
            "dataset": s["dataset"], "epsilon": float(t.epsilon), "defense": s["defense"], "column": s["column"],
            "mean_pct": 100 * s["mean"], "std_pct": 100 * s["std"], "seeds": s["seeds"],
            "n": s["n"].where(s["n"] > 0).astype("Int64"),
            "ci_low_pct": 100 * s["ci_low"], "ci_high_pct": 100 * s["ci_high"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TABLE_FIELDS)


def to_csv(tables: Sequence[Table]) -> str:
    df = table_frame(tables)
    df["epsilon"] = df["epsilon"].map(lambda e: f"{e:g}")  # '0.1', not the '%.4f' of the values
    return df.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def masking_markdown(results: Sequence[dict]) -> str:
    """The masking checks as a compact table: one row per defense (and seed), one column per check."""
    if not results:
        return ""
    df = pd.DataFrame(list(results))
    df["seed"] = df["seed"].astype(str)
    value = df["value"].map(lambda v: f" ({float(v):.3f})" if v != "" else "")
    df["text"] = df["status"].map(lambda st: {"flag": "**FLAG**", "pass": "pass"}.get(st, st)) + value
    checks = list(dict.fromkeys(df["check"]))
    models = list(dict.fromkeys(zip(df["defense"], df["seed"])))
    wide = (df.pivot_table(index=["defense", "seed"], columns="check", values="text", aggfunc="first")
            .reindex(index=pd.MultiIndex.from_tuples(models), columns=checks).fillna("–"))
    wide.insert(0, "Seed", [s for _, s in models])
    wide.insert(0, "Method", [display(d) for d, _ in models])
    table = wide.to_markdown(index=False, colalign=["left", "right"] + ["left"] * len(checks),
                             disable_numparse=True)
    return ("**Gradient-masking checks** (pass / FLAG with the number behind it; see masking.csv)\n\n"
            + table + "\n")
