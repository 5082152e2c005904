"""The paper's claims side by side across settings: one row per claim, one column per
results folder (a network, an epsilon), each cell the folder's own verdict and the
comparison that decides it.

Each folder's ``verdicts.csv`` is read as written by its report (``bench.report.claims``: its own
Holm family, its own seeds); nothing is recomputed here, so every cell can be traced to
one file. A claim a folder cannot measure (no distillation track, no targeted column at
that epsilon) is "not measured".
"""
from __future__ import annotations

from pathlib import Path

from bench.report.claims import CLAIMS, PARTLY, format_difference, format_p, is_measured
from core.errors import BenchError
from bench.defense_cards import display
from bench.csv_files import read_rows


def _deciding(rows: list[dict]) -> dict:
    """The comparison behind a claim's verdict: when it holds, its weakest comparison (the
    largest Holm p); otherwise the comparison with the smallest Holm p among those that do
    not hold, which is an opposite-signed one (adjusted p < 0.05) when there is one, else the
    unsettled comparison closest to settling."""
    measured = [r for r in rows if is_measured(r)]
    if rows[0]["claim_verdict"] in ("holds", PARTLY) and all(r["verdict"] == "holds" for r in measured):
        return max(measured, key=lambda r: float(r["p_holm"]))
    return min((r for r in measured if r["verdict"] != "holds"), key=lambda r: float(r["p_holm"]))


def _cell(rows: list[dict]) -> str:
    if not rows:
        return "not measured"
    r = _deciding(rows)
    missing = [m for m in rows if not is_measured(m)]
    unmeasured = ("; not measured: " + ", ".join(f"{display(m['first'])} − {display(m['second'])}, {m['column']}"
                                                 for m in missing)) if missing else ""
    return (f"**{r['claim_verdict']}**: {display(r['first'])} − {display(r['second'])}, {r['column']}: "
            f"{format_difference(r)}{'' if r['unit'] == 'points' else ' ' + r['unit']}, "
            f"Holm p {format_p(float(r['p_holm']))}{unmeasured}")


def parse_columns(pairs: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=FOLDER`` arguments, each folder holding a ``verdicts.csv``."""
    out = []
    for text in pairs:
        label, sep, folder = text.partition("=")
        if not sep or not label or not folder:
            raise BenchError(f"{text!r}: expected LABEL=FOLDER, e.g. 'small-cnn, pixel 0.1=results/study'")
        if not (Path(folder) / "verdicts.csv").is_file():
            raise BenchError(f"{folder}/verdicts.csv not found: write it with `great-bench report` "
                             "(it holds the folder's verdicts, bench/report/claims.py)")
        out.append((label, Path(folder)))
    if not out:
        raise BenchError("no LABEL=FOLDER given")
    return out


def verdict_matrix(columns: list[tuple[str, Path]]) -> str:
    """Markdown: a row per claim of ``bench.report.claims.CLAIMS`` (in its order) measured in at least
    one folder, a column per folder, and a last row with each folder's family size."""
    return matrix_markdown([(f"{label} (`{folder}`)", read_rows(folder / "verdicts.csv")) for label, folder in columns])


def matrix_markdown(per: list[tuple[str, list[dict]]], count_label: str = "Comparisons in the Holm family") -> str:
    """The same table from (column label, verdict rows) pairs, e.g. rows recomputed by
    ``bench.report.claims.verdicts`` (the study notebooks). The last row counts each column's
    measured rows under ``count_label`` (name it otherwise when the rows are a part of a family)."""
    names = [c.name for c in CLAIMS if any(r["claim"] == c.name for _, rows in per for r in rows)]
    head = ["Claim", *(label for label, _ in per)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        out.append("| " + " | ".join([name, *(_cell([r for r in rows if r["claim"] == name]) for _, rows in per)]) + " |")
    out.append("| " + " | ".join([count_label,
                                  *(str(sum(map(is_measured, rows))) for _, rows in per)]) + " |")
    return "\n".join(out) + "\n"
