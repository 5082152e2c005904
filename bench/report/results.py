"""Results as pandas DataFrames: the tidy rows, the tables and the paired comparison.

``load`` reads ``results/<preset>/robustness.csv`` (the rows ``bench.eval.evaluate`` writes, schema in ``bench.eval.schema``)
and appends the per-example worst case over attacks (``bench.report.worst_case``; attack
``"worst-case"``), with typed columns: numbers as numbers (accuracy, the 95% interval
``ci_low`` / ``ci_high``, epsilon, n, seed), text as text. ``table`` and ``compare`` return
exactly the frames the report writes as table.csv and comparison.csv: ``bench.report.write``
builds them with the same functions (``bench.report.tables.table_frame``, ``bench.report.compare``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Union

import pandas as pd

from bench.report.compare import across_seeds, compare as _compare, default_reference
from core.errors import BenchError
from bench.report.tables import build_tables, table_frame
from bench.csv_files import read_rows
from bench.report.worst_case import WORST, worst_case_rows

Data = Union[str, Path, pd.DataFrame]

# Column types of the frame (a column missing from old CSVs is simply absent).
FLOATS = ("epsilon", "accuracy", "ci_low", "ci_high", "target_hit_rate", "clean_accuracy", "train_accuracy",
          "step_size", "seconds", "max_perturbation")
INTS = ("seed", "n", "n_clean_correct", "steps", "restarts", "eval_seed", "batch_size", "n_attacks")


def _csv_path(path: str | Path) -> Path:
    path = Path(path)
    csv = path / "robustness.csv" if path.is_dir() else path
    if not csv.is_file():
        raise BenchError(f"no robustness rows at {csv}: give a results folder holding robustness.csv "
                         "(results/<preset>) or the CSV itself")
    return csv


def _table_epsilon(folder: Path) -> float | None:
    """The epsilon the report's tables used (table.csv), if the folder has them."""
    rows = read_rows(folder / "table.csv")
    eps = {r["epsilon"] for r in rows if r.get("epsilon")}
    return float(eps.pop()) if len(eps) == 1 else None


def load(results: str | Path) -> pd.DataFrame:
    """The tidy rows of ``results/robustness.csv`` plus one ``attack == "worst-case"`` row per
    model and (norm, epsilon) (its ``attacks`` column names what it combines), typed.

    A seed of a user-brought model (none) is ``<NA>``; ``correct_mask`` stays the hex text
    of the CSV (``bench.eval.schema.unpack_mask`` reads it). ``df.attrs["epsilon"]`` is the
    report's table epsilon when the folder has a table.csv (``table`` and ``compare`` use it).
    """
    csv = _csv_path(results)
    rows = read_rows(csv)
    if not rows:
        raise BenchError(f"{csv} holds no rows; run `great-bench evaluate` first")
    df = pd.DataFrame(rows + worst_case_rows(rows))
    for c in FLOATS:
        if c in df:
            df[c] = pd.to_numeric(df[c].replace("", math.nan), errors="raise").astype(float)
    for c in INTS:
        if c in df:
            df[c] = pd.to_numeric(df[c].replace("", pd.NA), errors="raise").astype("Int64")
    for c in df.columns.difference(FLOATS + INTS):
        df[c] = df[c].fillna("").astype(str)
    df.attrs["epsilon"] = _table_epsilon(csv.parent)
    df.attrs["path"] = str(csv)
    return df


def to_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The attack rows of a ``load`` frame (worst case dropped: the report derives it) as the
    CSV's row dicts, missing values as empty text: what the report functions read."""
    df = df[df["attack"] != WORST]
    if "n_attacks" in df:
        df = df.drop(columns=[c for c in ("n_attacks", "attacks") if c in df])
    out = df.astype(object).where(df.notna(), "")
    return out.to_dict("records")


def _rows_and_epsilon(data: Data, epsilon: float | None) -> tuple[list[dict], float]:
    df = data if isinstance(data, pd.DataFrame) else load(data)
    eps = epsilon if epsilon is not None else df.attrs.get("epsilon")
    if eps is None:
        raise BenchError("the table epsilon is unknown (no table.csv beside the rows): pass epsilon=, "
                         "the preset's eval.epsilon")
    return to_rows(df), float(eps)


def table(data: Data, epsilon: float | None = None, cw_radius: float = 1.0) -> pd.DataFrame:
    """The robustness table (paper Table 1 layout) as table.csv holds it: one row per dataset,
    defense and column with mean_pct, std_pct, seeds, n and the 95% interval (percent).
    ``data``: a results folder, a robustness CSV or a ``load`` frame (filtered as you like)."""
    rows, eps = _rows_and_epsilon(data, epsilon)
    return table_frame(build_tables(rows, eps, cw_radius))


def compare(data: Data, against: str | None = None, epsilon: float | None = None, cw_radius: float = 1.0,
            seeds: bool = False) -> pd.DataFrame:
    """Every defense against ``against`` (default GREAT when present) per table column and seed,
    as comparison.csv holds it (paired difference in points, Newcombe interval, exact McNemar
    p, verdict); ``seeds=True``: the across-seeds summary of comparison_seeds.csv instead."""
    rows, eps = _rows_and_epsilon(data, epsilon)
    tables = build_tables(rows, eps, cw_radius)
    reference = default_reference(tables, against)
    if reference is None:
        raise BenchError("no reference defense: pass against= (one of the rows' defenses)")
    comp = _compare(tables, reference)
    return across_seeds(comp) if seeds else comp
