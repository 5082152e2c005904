"""``bench.report.results``: the DataFrame API checked against the committed CSVs, with an interval
and a worst case recomputed here independently (scipy's Wilson interval, masks unpacked
from their hex text bit by bit), and the README's notebook example run as printed."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from bench.report import results
from core.errors import BenchError

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "results" / "quick"


@pytest.fixture(scope="module")
def quick() -> pd.DataFrame:
    return results.load(QUICK)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _bits(hex_text: str, n: int) -> list[bool]:
    # bit i of the mask is example i, most significant bit of each byte first
    value = int(hex_text, 16) if hex_text else 0
    width = 4 * len(hex_text)
    return [bool(value >> (width - 1 - i) & 1) for i in range(n)]


def test_load_types_every_column(quick):
    assert quick["accuracy"].dtype == np.float64 and quick["ci_low"].dtype == np.float64
    assert quick["epsilon"].dtype == np.float64
    assert str(quick["n"].dtype) == "Int64" and str(quick["seed"].dtype) == "Int64"
    assert quick.attrs["epsilon"] == pytest.approx(0.1)


def test_load_matches_the_csv_row_by_row(quick):
    raw = _csv(QUICK / "robustness.csv")
    rows = quick[quick["attack"] != "worst-case"]
    assert len(rows) == len(raw)
    for r, (_, d) in zip(raw, rows.iterrows()):
        assert (d["defense"], d["attack"], d["mode"], d["spec"]) == (r["defense"], r["attack"], r["mode"], r["spec"])
        assert d["accuracy"] == float(r["accuracy"]) and d["n"] == int(r["n"]) and d["seed"] == int(r["seed"])
        assert d["correct_mask"] == r["correct_mask"]
        # the interval, recomputed by scipy (not bench.stats)
        n = int(r["n"])
        ci = binomtest(round(float(r["accuracy"]) * n), n).proportion_ci(method="wilson")
        assert d["ci_low"] == pytest.approx(ci.low, abs=2e-6) and d["ci_high"] == pytest.approx(ci.high, abs=2e-6)
        # the mask says the same accuracy as the row
        assert sum(_bits(r["correct_mask"], n)) == round(d["accuracy"] * n)


def test_worst_case_rows_recomputed_from_the_masks(quick):
    raw = [r for r in _csv(QUICK / "robustness.csv") if r["attack"] != "none" and float(r["epsilon"]) > 0]
    cells: dict[tuple, list[dict]] = {}
    for r in raw:
        cells.setdefault((r["defense"], r["seed"], r["norm"], float(r["epsilon"])), []).append(r)
    worst = quick[quick["attack"] == "worst-case"]
    assert len(worst) == len(cells)
    for _, w in worst.iterrows():
        runs = cells[(w["defense"], str(w["seed"]), w["norm"], w["epsilon"])]
        n = min(int(r["n"]) for r in runs)
        robust = [all(_bits(r["correct_mask"], int(r["n"]))[i] for r in runs) for i in range(n)]
        assert w["n"] == n and w["n_attacks"] == len(runs)
        assert w["accuracy"] == sum(robust) / n
        ci = binomtest(sum(robust), n).proportion_ci(method="wilson")
        assert w["ci_low"] == pytest.approx(ci.low, abs=2e-6) and w["ci_high"] == pytest.approx(ci.high, abs=2e-6)
    # and what the report wrote as worst_case.csv
    ref = pd.read_csv(QUICK / "worst_case.csv")
    merged = worst.assign(seed=worst["seed"].astype(int)).merge(ref, on=["defense", "seed", "norm", "epsilon"],
                                                                  suffixes=("", "_csv"))
    assert len(merged) == len(ref) == len(worst)
    assert np.allclose(merged["accuracy"], merged["accuracy_csv"]) and (merged["n"] == merged["n_csv"]).all()


def test_table_and_compare_are_the_report_files(quick):
    table = results.table(quick)
    ref = pd.read_csv(QUICK / "table.csv")
    assert list(table.columns) == list(ref.columns)
    assert (table[["defense", "column"]].values == ref[["defense", "column"]].values).all()
    for c in ("mean_pct", "std_pct", "ci_low_pct", "ci_high_pct"):
        assert np.allclose(table[c].astype(float), ref[c], atol=1e-4, equal_nan=True), c
    assert (table["n"].fillna(-1).astype(int) == ref["n"].fillna(-1).astype(int)).all()
    comp = results.compare(quick)
    ref = pd.read_csv(QUICK / "comparison.csv")
    assert len(comp) == len(ref) and (comp["verdict"].values == ref["verdict"].values).all()
    assert np.allclose(comp["diff_pct"], ref["diff_pct"], atol=1e-4)
    assert np.allclose(comp["p_value"], ref["p_value"], rtol=1e-5)


def test_table_of_a_filtered_frame_and_missing_epsilon(quick):
    two = quick[quick["defense"].isin(["baseline", "great"])]
    assert set(results.table(two)["defense"]) == {"baseline", "great"}
    bare = two.copy()
    bare.attrs = {}
    with pytest.raises(BenchError, match="epsilon"):
        results.table(bare)
    assert results.table(bare, epsilon=0.1).equals(results.table(two))


def test_load_refuses_a_folder_without_rows(tmp_path):
    with pytest.raises(BenchError, match="robustness.csv"):
        results.load(tmp_path)


def test_readme_notebook_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    code = re.search(r"<!-- example-results -->\s*```python\n(.*?)```", (ROOT / "README.md").read_text(),
                     re.S).group(1)
    (tmp_path / "results").symlink_to(ROOT / "results")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md:example-results", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "great" in out and "Worst case" not in out  # the printed slice of the table
    assert (tmp_path / "great_ifgsm.png").stat().st_size > 1000
