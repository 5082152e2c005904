"""A study's write-up computed from its results folder: the numbers and their text forms.

The study notebooks (``docs/studies/*.ipynb``) quote no number typed by hand: each is read
here from the committed results (``bench.report.results.load`` and the functions the report itself
uses) and formatted by the helpers below, and ``md`` shows the sentence as Markdown.
``tests/test_study_notebooks.py`` runs the notebooks and compares their output with the
stored one, so a result that changes changes the text, or fails the test.
"""
from __future__ import annotations

import os
from functools import cached_property, lru_cache
from pathlib import Path

import pandas as pd

from bench.report import results
from bench.report.claims import Sources, format_p, verdicts
from bench.report.compare import across_seeds, compare
from bench.report.tables import build_tables
from bench.defense_cards import display
from bench.csv_files import read_rows

ROOT_ENV = "GREAT_BENCH_ROOT"  # where results/ lives; the notebook test points it at a copy


def root() -> Path:
    """The folder holding ``results/``: ``$GREAT_BENCH_ROOT``, else the nearest parent of the
    working directory with a pyproject.toml (a notebook runs from docs/studies)."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if (p / "pyproject.toml").is_file()), here)


def md(text: str) -> None:
    """Show ``text`` as Markdown in a notebook (plain text elsewhere)."""
    from IPython.display import Markdown, display as show
    show(Markdown(text))


# --- text forms -----------------------------------------------------------------------------

def num(x: float, d: int = 1) -> str:
    return f"{float(x):.{d}f}"


def signed(x: float, d: int = 1) -> str:
    return f"{float(x):+.{d}f}"


def count(x: int) -> str:
    """1,000-style thousands separators."""
    return f"{int(x):,}"


def interval(lo: float, hi: float, d: int = 1, sign: bool = False) -> str:
    f = signed if sign else num
    return f"[{f(lo, d)}, {f(hi, d)}]"


def p_text(p: float) -> str:
    """A p-value as the verdict tables print it (three decimals, or <0.001)."""
    return format_p(float(p))


class Study:
    """One results folder read at one table epsilon: the table cells (mean, std and 95%
    interval over seeds), paired differences across seeds against any reference, sweeps over
    epsilon, the claims' verdicts and the masking checks."""

    def __init__(self, folder: str | Path, epsilon: float | None = None, csv: str | Path | None = None,
                 cw_radius: float = 1.0):
        self.folder = root() / folder
        self.df = results.load(root() / csv if csv else self.folder)
        self.epsilon = float(epsilon if epsilon is not None else self.df.attrs["epsilon"])
        self.cw_radius = cw_radius

    @cached_property
    def tables(self):
        return build_tables(results.to_rows(self.df), self.epsilon, self.cw_radius)

    @cached_property
    def table(self) -> pd.DataFrame:
        return results.table(self.df, self.epsilon, self.cw_radius)

    def cell(self, defense: str, column: str) -> pd.Series:
        t = self.table
        hit = t[(t.defense == defense) & (t.column == column)]
        if hit.empty:
            raise KeyError(f"no table cell {defense!r} / {column!r} at epsilon {self.epsilon}")
        return hit.iloc[0]

    def mean(self, defense: str, column: str) -> float:
        return float(self.cell(defense, column)["mean_pct"])

    def n(self, defense: str, column: str) -> int:
        return int(self.cell(defense, column)["n"])

    def pm(self, defense: str, column: str) -> str:
        c = self.cell(defense, column)
        return f"{num(c.mean_pct)} ± {num(c.std_pct)}"

    def full(self, defense: str, column: str) -> str:
        c = self.cell(defense, column)
        return f"{self.pm(defense, column)} {interval(c.ci_low_pct, c.ci_high_pct)}"

    @lru_cache(maxsize=None)
    def _against(self, reference: str) -> pd.DataFrame:
        return across_seeds(compare(self.tables, reference))  # what results.compare(..., seeds=True) returns

    def diff(self, first: str, second: str, column: str) -> pd.Series:
        """``first`` minus ``second`` on ``column`` across seeds (comparison_seeds.csv's row)."""
        s = self._against(second)
        hit = s[(s.defense == first) & (s.column == column)]
        if hit.empty:
            raise KeyError(f"no paired comparison {first!r} - {second!r} on {column!r}")
        return hit.iloc[0]

    def d(self, first: str, second: str, column: str) -> str:
        """'+24.1 [+16.5, +31.6]': the difference across seeds with its 95% interval."""
        r = self.diff(first, second, column)
        return f"{signed(r.mean_diff_pct)} {interval(r.ci_low_pct, r.ci_high_pct, sign=True)}"

    def sweep(self, attack: str, mode: str = "untargeted", norm: str = "Linf") -> pd.DataFrame:
        """Mean accuracy (%) over seeds, one row per defense, one column per epsilon."""
        df = self.df
        sel = df[(df.attack == attack) & (df["mode"] == mode) & (df.norm == norm)]
        return (sel.groupby(["defense", "epsilon"])["accuracy"].mean() * 100).unstack("epsilon")

    @cached_property
    def verdicts(self) -> list[dict]:
        """The claims' verdicts recomputed from the rows (and the folder's track rows)."""
        return verdicts(Sources(self.tables, read_rows(self.folder / "distillation.csv"),
                                read_rows(self.folder / "multitask.csv")))

    def verdict(self, first: str, second: str, column: str) -> dict:
        return next(r for r in self.verdicts if (r["first"], r["second"], r["column"]) == (first, second, column))

    def claim(self, name: str) -> str:
        return next(r["claim_verdict"] for r in self.verdicts if r["claim"] == name)

    @cached_property
    def masking(self) -> pd.DataFrame:
        """masking.csv of the folder (row checks and the model's sanity flags), typed."""
        m = pd.DataFrame(read_rows(self.folder / "masking.csv"))
        m["value"] = pd.to_numeric(m["value"], errors="coerce")
        m["seed"] = m["seed"].astype(int)
        return m

    def flagged(self, check: str) -> pd.DataFrame:
        m = self.masking
        return m[(m.check == check) & (m.status == "flag")]

    def defenses(self) -> list[str]:
        return list(dict.fromkeys(self.table.defense))


def name(defense: str) -> str:
    """The display name of a defense (the table's row label)."""
    return display(defense)


def listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "none"
