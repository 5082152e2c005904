"""Every number a results folder publishes, recomputed from the per-example masks its rows carry.

``great-bench verify`` (``bench.publish.verify``) checks the saved adversarial examples against the
masks; this module checks what is published against the masks:

- ``robustness.csv``: each row's accuracy and 95% Wilson interval against its own
  ``correct_mask`` and n;
- ``worst_case.csv``: each row against the AND of the masks of the attacks at its norm and
  epsilon (``bench.report.worst_case``), including which attacks it says it covers;
- ``table.csv`` and the accuracy tables of ``table.md``: every cell against the table
  rebuilt from the rows (``bench.report.tables.build_tables``);
- exported RobustBench JSON (``bench.publish.robustbench``): the accuracy fields and the interval
  extras against the export recomputed from the rows.

Each mismatch is a ``Disagreement``: its line reads ``DISAGREE <file> <where>: published X,
supported Y``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from bench.eval.schema import unpack_mask, upgrade_rows
from bench.report.tables import WORST_CASE, build_tables, table_frame
from bench.publish.robustbench import model_infos
from bench.csv_files import read_rows
from bench.stats import wilson
from bench.report.worst_case import worst_case_rows

TOL_FRACTION = 1e-6   # accuracies are written with full float precision, intervals with 6 decimals
TOL_PCT = 6e-5        # table.csv writes percentages with 4 decimals


@dataclass(frozen=True)
class Disagreement:
    file: str
    where: str
    published: str
    supported: str

    def line(self) -> str:
        return f"DISAGREE {self.file} {self.where}: published {self.published}, supported {self.supported}"


@dataclass
class Published:
    """What the published checks found: disagreements and how many numbers agreed, per file."""
    disagreements: list[Disagreement] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def count(self, file: str, k: int = 1) -> None:
        self.checked[file] = self.checked.get(file, 0) + k

    def disagree(self, file: str, where: str, published: Any, supported: Any) -> None:
        self.disagreements.append(Disagreement(file, where, str(published), str(supported)))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _differs(a: Any, b: Any, tol: float) -> bool:
    x, y = _num(a), _num(b)
    if math.isnan(x) or math.isnan(y):
        return not (math.isnan(x) and math.isnan(y))
    return abs(x - y) > tol


def _row_label(line: int, r: dict) -> str:
    seed = r.get("seed") or "-"
    return f"line {line} ({r['defense']} seed {seed} {r['attack']}/{r['mode']} {r['norm']} eps {r['epsilon']} n {r['n']})"


def check_rows(rows: Sequence[dict], out: Published, file: str = "robustness.csv") -> None:
    """Each row's accuracy and interval against its own mask (rows without a mask: not checked)."""
    for i, r in enumerate(rows, start=2):
        if not r.get("correct_mask"):
            continue
        n = int(r["n"])
        k = int(unpack_mask(r["correct_mask"], n).sum())
        where = _row_label(i, r)
        if _differs(r["accuracy"], k / n, TOL_FRACTION):
            out.disagree(file, f"{where} accuracy", r["accuracy"], f"{k / n:g} ({k}/{n} in its mask)")
        lo, hi = wilson(k, n)
        for name, value in (("ci_low", lo), ("ci_high", hi)):
            if r.get(name, "") != "" and _differs(r[name], value, TOL_FRACTION):
                out.disagree(file, f"{where} {name}", r[name], f"{value:.6f} (Wilson interval of {k}/{n})")
        out.count(file)


WORST_KEY = ("dataset", "defense", "seed", "checkpoint_sha256", "norm")
WORST_VALUES = (("accuracy", TOL_FRACTION), ("n", 0), ("n_attacks", 0), ("ci_low", TOL_FRACTION),
                ("ci_high", TOL_FRACTION))


def check_worst_case(rows: Sequence[dict], published: Sequence[dict], out: Published,
                     file: str = "worst_case.csv") -> None:
    """Each published worst-case row against the AND of the masks at its norm and epsilon."""
    support: dict[tuple, list[dict]] = {}
    for w in worst_case_rows(rows):
        support.setdefault((*(str(w[k]) for k in WORST_KEY), float(w["epsilon"])), []).append(w)
    for i, p in enumerate(published, start=2):
        key = (*(str(p[k]) for k in WORST_KEY), _num(p["epsilon"]))
        where = f"line {i} ({p['defense']} seed {p['seed'] or '-'} {p['norm']} eps {p['epsilon']})"
        candidates = support.get(key, [])
        if not candidates:
            out.disagree(file, where, f"accuracy {p['accuracy']}", "no attack rows at that norm and epsilon")
            continue
        # two evaluation seeds of one model give two rows with the same key: either may match
        diffs = [[(name, p[name], w[name]) for name, tol in WORST_VALUES if _differs(p[name], w[name], tol)]
                 + ([("attacks", p["attacks"], w["attacks"])] if p["attacks"] != w["attacks"] else [])
                 for w in candidates]
        best = min(diffs, key=len)
        for name, pub, sup in best:
            out.disagree(file, f"{where} {name}", pub, sup)
        out.count(file)


TABLE_VALUES = ("mean_pct", "std_pct", "seeds", "n", "ci_low_pct", "ci_high_pct")


def table_cw_radius(published: Sequence[dict], default: float) -> float:
    """The CW radius of a table.csv (its 'Worst case L2 r' column), else ``default``."""
    for r in published:
        m = re.fullmatch(rf"{WORST_CASE} L2 (\S+)", r["column"])
        if m:
            return float(m.group(1))
    return default


def _tables(rows: Sequence[dict], published: Sequence[dict], cw_radius: float):
    eps = {r["epsilon"] for r in published if r.get("epsilon")}
    if len(eps) != 1:
        return None
    return build_tables(rows, float(eps.pop()), cw_radius)


def check_table_csv(rows: Sequence[dict], published: Sequence[dict], out: Published, cw_radius: float,
                    file: str = "table.csv") -> None:
    """Each table.csv cell against the table rebuilt from the rows."""
    tables = _tables(rows, published, cw_radius)
    if tables is None:
        out.notes.append(f"{file}: not one epsilon in its rows; not checked")
        return
    frame = table_frame(tables)
    support = {(str(r["dataset"]), str(r["defense"]), str(r["column"])): r for r in frame.to_dict("records")}
    for i, p in enumerate(published, start=2):
        where = f"line {i} ({p['defense']}, {p['column']})"
        s = support.get((p["dataset"], p["defense"], p["column"]))
        if s is None:
            out.disagree(file, where, f"mean_pct {p['mean_pct']}", "no rows for that cell")
            continue
        for name in TABLE_VALUES:
            sup = math.nan if pd.isna(s[name]) else float(s[name])
            if _differs(p[name], sup, TOL_PCT):
                out.disagree(file, f"{where} {name}", p[name] or "(empty)", "(empty)" if math.isnan(sup) else f"{sup:.4f}")
        out.count(file)


def _markdown_tables(text: str, dataset: str) -> list[list[str]] | None:
    """The rows (cells split) of the accuracy table of ``dataset`` in a table.md, header first."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"**{dataset} test accuracy (%)")), None)
    if start is None:
        return None
    body = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            body.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif body:
            break
    return [body[0]] + body[2:] if len(body) > 2 else None


def check_table_md(rows: Sequence[dict], text: str, published_csv: Sequence[dict], out: Published,
                   cw_radius: float, file: str = "table.md") -> None:
    """Each cell of table.md's accuracy tables against the same cell rebuilt from the rows."""
    eps = {r["epsilon"] for r in published_csv if r.get("epsilon")}
    if len(eps) != 1:
        out.notes.append(f"{file}: its epsilon is unknown (no table.csv with one epsilon); not checked")
        return
    for t in build_tables(rows, float(eps.pop()), cw_radius):
        md = _markdown_tables(text, t.dataset)
        if md is None:
            continue
        wide = t.wide()
        header, cells = md[0], md[1:]
        for row in cells:
            method = row[0]
            for col, value in zip(header[1:], row[1:]):
                sup = wide.loc[method, col] if method in wide.index and col in wide.columns else None
                if sup is None:
                    out.disagree(file, f"{t.dataset} ({method}, {col})", value or "(empty)", "no such cell")
                elif str(sup) != value:
                    out.disagree(file, f"{t.dataset} ({method}, {col})", value, sup)
                out.count(file)


EXPORT_FIELDS = ("clean_acc", "external", "autoattack_acc")
EXPORT_EXTRAS = ("clean", "external", "autoattack")


def check_exports(results: Path, files: Sequence[Path], out: Published) -> None:
    """Each exported RobustBench file's accuracy fields against the export recomputed from the rows."""
    by_threat: dict[tuple[str, float], dict] = {}
    for f in files:
        try:
            obj = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            out.disagree(str(f), "file", "unreadable", f"JSON ({exc})")
            continue
        gb = obj.get("great_bench") if isinstance(obj, dict) else None
        if not isinstance(gb, dict):
            continue  # not a great-bench export
        tm = gb["threat_model"]
        threat = (str(tm["norm"]), float(tm["epsilon"]))
        if threat not in by_threat:
            infos = model_infos(results, epsilon=threat[1], norm=threat[0])
            by_threat[threat] = {(i["great_bench"]["defense"], i["great_bench"]["seed"],
                                  i["great_bench"]["checkpoint_sha256"]): i for i in infos.values()}
        sup = by_threat[threat].get((gb["defense"], gb["seed"], gb["checkpoint_sha256"]))
        name = str(f)
        if sup is None:
            out.disagree(name, "model", f"{gb['defense']} seed {gb['seed']}", "no rows of that checkpoint")
            continue
        for k in EXPORT_FIELDS:
            if obj.get(k) != sup.get(k):
                out.disagree(name, k, repr(obj.get(k)), repr(sup.get(k)))
        for k in EXPORT_EXTRAS:
            if gb.get(k) != sup["great_bench"].get(k):
                out.disagree(name, f"great_bench.{k}", gb.get(k), sup["great_bench"].get(k))
        for k in ("eval_seed", "adversarial_examples"):
            if gb.get(k) != sup["great_bench"].get(k):
                out.disagree(name, f"great_bench.{k}", gb.get(k), sup["great_bench"].get(k))
        out.count(name)


def check_folder(results: str | Path, *, cw_radius: float = 1.0, exports: Sequence[Path] = ()) -> Published:
    """Every published number of a results folder (and of the exported files given) against its rows."""
    results = Path(results)
    out = Published()
    csv = results / "robustness.csv"
    raw = read_rows(csv)
    check_rows(raw, out)  # as written: the upgrade of older files recomputes their intervals
    rows = upgrade_rows(csv, raw)
    if (results / "worst_case.csv").is_file():
        check_worst_case(rows, read_rows(results / "worst_case.csv"), out)
    table = read_rows(results / "table.csv")
    radius = table_cw_radius(table, cw_radius)
    if table:
        check_table_csv(rows, table, out, radius)
    if (results / "table.md").is_file():
        check_table_md(rows, (results / "table.md").read_text(), table, out, radius)
    json_files = sorted(p for d in exports for p in Path(d).rglob("*.json"))
    if json_files:
        check_exports(results, json_files, out)
    return out
