"""Every defense judged against a reference (GREAT by default) on the same examples.

For each table column and each training seed, the per-example correctness masks of a
defense and of the reference are paired on the examples both were evaluated on (the first
min(n) of the same evaluation set). The accuracy difference (defense - reference) comes
with Newcombe's paired 95% interval and the exact McNemar p-value (``bench.stats``): a
defense is *better* on a column when p < 0.05 and the interval lies above 0, *worse* when
p < 0.05 and it lies below 0, and otherwise the data *cannot say*. Seeds are paired by
their id; a model without a matching seed (a user-brought model has none) is paired with
every seed of the reference. The columns are several tests: read a single p near 0.05 among
a dozen columns with care (a Bonferroni reading divides 0.05 by the number of columns).
"""
from __future__ import annotations

import pandas as pd

from bench.eval.schema import unpack_mask
from core.errors import BenchError
from bench.report.tables import Table
from bench.defense_cards import display
from bench.stats import paired, paired_across_seeds

SEED_FIELDS = ["dataset", "defense", "against", "column", "seeds", "mean_diff_pct", "ci_low_pct", "ci_high_pct",
               "p_value", "better", "worse", "cannot_say"]
FIELDS = ["dataset", "defense", "against", "seed", "against_seed", "column", "n", "both", "only_defense",
          "only_against", "neither", "diff_pct", "ci_low_pct", "ci_high_pct", "p_value", "verdict"]


def default_reference(tables: list[Table], against: str | None) -> str | None:
    """``against`` if given (it must be a defense of the rows), else 'great' when present."""
    defenses = list(dict.fromkeys(d for t in tables for d in t.defenses))
    if against is None:
        return "great" if "great" in defenses else None
    if against not in defenses:
        raise BenchError(f"--against {against!r} is not a defense of these rows; valid: {', '.join(defenses)}")
    return against


def compare(tables: list[Table], against: str) -> pd.DataFrame:
    """Tidy comparison rows (FIELDS), one per dataset, defense, seed pair and column."""
    out = []
    for t in tables:
        cells = t.cells[t.cells["correct_mask"].astype(bool) & (t.cells["n"] > 0)]
        ref = cells[cells["defense"] == against]
        for defense in t.defenses:
            if defense == against:
                continue
            mine = cells[cells["defense"] == defense]
            for col in t.columns:
                a = mine[mine["column"] == col.name]
                r = ref[ref["column"] == col.name]
                common = set(a["seed"]) & set(r["seed"])
                for _, x in a.iterrows():
                    for _, y in r.iterrows():
                        if common and not (x["seed"] == y["seed"]):
                            continue
                        n = min(int(x["n"]), int(y["n"]))
                        res = paired(unpack_mask(x["correct_mask"], int(x["n"]))[:n],
                                     unpack_mask(y["correct_mask"], int(y["n"]))[:n])
                        out.append([t.dataset, defense, against, x["seed"], y["seed"], col.name, res.n, res.both,
                                    res.only_first, res.only_second, res.neither, 100 * res.diff,
                                    100 * res.ci_low, 100 * res.ci_high, res.p_value, res.verdict])
    return pd.DataFrame(out, columns=FIELDS)


def across_seeds(comp: pd.DataFrame) -> pd.DataFrame:
    """Per defense and column, over the seeds paired by id (seed k against seed k of the
    reference): the mean of the per-seed accuracy differences with an interval that adds the
    seed-to-seed spread (a paired t over the seeds: does the difference survive retraining?)
    and the test-sampling error of the shared examples (``bench.stats.paired_across_seeds``),
    its p-value, and how many seeds' McNemar verdicts were better / worse / cannot say. Only
    defenses with at least two paired seeds on the same number of examples."""
    out = []
    same = comp[comp["seed"] == comp["against_seed"]] if not comp.empty else comp
    for (dataset, defense, against, column), g in same.groupby(["dataset", "defense", "against", "column"], sort=False):
        if len(g) < 2:
            continue
        g = g[g["n"] == g["n"].min()]  # the seeds' tables must count the same examples
        d = paired_across_seeds(g[["both", "only_defense", "only_against", "neither"]].to_numpy())
        counts = g["verdict"].value_counts()
        out.append([dataset, defense, against, column, d.seeds, 100 * d.mean, 100 * d.ci_low, 100 * d.ci_high,
                    d.p_value, int(counts.get("better", 0)), int(counts.get("worse", 0)),
                    int(counts.get("cannot say", 0))])
    return pd.DataFrame(out, columns=SEED_FIELDS)


def across_seeds_text(r: pd.Series) -> str:
    """'+12.3 [+8.1, +16.4] 3/0/0' (better/worse/cannot-say seeds); bold when the interval excludes 0."""
    text = (f"{r['mean_diff_pct']:+.1f} [{r['ci_low_pct']:+.1f}, {r['ci_high_pct']:+.1f}] "
            f"{r['better']}/{r['worse']}/{r['cannot_say']}")
    return f"**{text}**" if r["ci_low_pct"] > 0 or r["ci_high_pct"] < 0 else text


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def comparison_text(r: pd.Series) -> str:
    """'+12.3 [+8.1, +16.4] p<0.001', bold when the verdict is better or worse."""
    text = f"{r['diff_pct']:+.1f} [{r['ci_low_pct']:+.1f}, {r['ci_high_pct']:+.1f}] {_p(r['p_value'])}"
    return f"**{text}**" if r["verdict"] != "cannot say" else text


def comparison_markdown(comp: pd.DataFrame, tables: list[Table], seeds: pd.DataFrame | None = None) -> str:
    """One table per dataset beside the robustness table: defenses x columns of differences."""
    if comp.empty:
        return ""
    out = []
    for t in tables:
        c = comp[comp["dataset"] == t.dataset]
        if c.empty:
            continue
        against = c["against"].iloc[0]
        pairs = c.groupby("defense")[["seed", "against_seed"]].apply(lambda g: len(g.drop_duplicates()))
        label = c.apply(lambda r: display(r["defense"]) + (
            f" (seed {r['seed']} vs {r['against_seed']})" if pairs[r["defense"]] > 1 else ""), axis=1)
        c = c.assign(text=c.apply(comparison_text, axis=1), label=label)
        names = [col.name for col in t.columns if col.name in set(c["column"])]
        labels = list(dict.fromkeys(c.sort_values("defense", key=lambda d: d.map(
            {x: i for i, x in enumerate(t.defenses)}), kind="stable")["label"]))
        wide = (c.pivot_table(index="label", columns="column", values="text", aggfunc="first")
                .reindex(index=labels, columns=names).fillna("–"))
        n = c.pivot_table(index="dataset", columns="column", values="n", aggfunc="max").reindex(columns=names)
        wide.loc["n (paired examples)"] = [str(int(v)) for v in n.iloc[0]]
        out.append(f"**{t.dataset}: each defense minus {display(against)} (accuracy points, same examples), "
                   "[95% Newcombe paired interval] and exact McNemar p; bold: p < 0.05 and the interval "
                   "excludes 0 (better if positive, worse if negative); otherwise the data cannot say.**\n")
        out.append(wide.rename_axis("Method").reset_index().to_markdown(
            index=False, colalign=["left"] + ["right"] * len(names), disable_numparse=True))
        out.append("")
        s = (seeds if seeds is not None else across_seeds(comp))
        s = s[s["dataset"] == t.dataset]
        if not s.empty:
            k = int(s["seeds"].max())
            order = {x: i for i, x in enumerate(t.defenses)}
            s = s.sort_values("defense", key=lambda d: d.map(order), kind="stable")
            wide = (s.assign(text=s.apply(across_seeds_text, axis=1), label=s["defense"].map(display))
                    .pivot_table(index="label", columns="column", values="text", aggfunc="first")
                    .reindex(index=list(dict.fromkeys(s["defense"].map(display))), columns=names).fillna("–"))
            out.append(f"**{t.dataset}, across {k} training seeds: mean of the per-seed differences (points) "
                       f"[95% interval: the seeds' paired t-interval and the test-sampling error of the shared "
                       f"examples, added in quadrature] and the per-seed McNemar verdicts better/worse/cannot say; "
                       f"bold: the interval excludes 0 (no correction for the many columns: the claims' verdicts "
                       f"in verdicts.md are Holm-corrected).**\n")
            out.append(wide.rename_axis("Method").reset_index().to_markdown(
                index=False, colalign=["left"] + ["right"] * len(names), disable_numparse=True))
            out.append("")
    return "\n".join(out)
