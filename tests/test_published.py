"""``bench.publish.published`` (the first half of ``great-bench verify``): every number a results folder
publishes against the per-example masks of its rows. The committed folders agree; a copy of
results/quick with one number raised in robustness.csv, worst_case.csv, table.csv, table.md or
an exported RobustBench file disagrees, with a line naming the file and the number, and
``verify`` exits 1. Mutations each test kills are named in its docstring."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.publish.published import check_folder

ROOT = Path(__file__).resolve().parent.parent
FILES = ("robustness.csv", "worst_case.csv", "table.csv", "table.md")


def _copy(tmp_path: Path, preset: str = "quick") -> Path:
    dest = tmp_path / preset
    dest.mkdir()
    for f in FILES:
        shutil.copy(ROOT / "results" / preset / f, dest / f)
    return dest


def _edit_csv(path: Path, change) -> dict:
    """Apply ``change(rows)`` (it returns the row it changed) and write the file back."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    changed = change(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return changed


def _lines(results: Path, *extra: str, capsys) -> tuple[int, list[str]]:
    rc = main(["verify", str(results), *extra])
    out = capsys.readouterr().out
    return rc, [line for line in out.splitlines() if line.startswith("DISAGREE")]


@pytest.mark.parametrize("preset", ["quick", "quick-ablation", "study", "study-resnet"])
def test_committed_results_publish_what_their_masks_support(preset):
    found = check_folder(ROOT / "results" / preset)
    assert found.disagreements == [], [d.line() for d in found.disagreements[:5]]
    assert set(found.checked) == set(FILES) and all(k > 0 for k in found.checked.values())


def test_a_raised_row_accuracy_disagrees(tmp_path, capsys):
    """Mutation: check_rows not called (or not comparing accuracy) -> exit 0."""
    results = _copy(tmp_path)

    def raise_one(rows):
        r = next(r for r in rows if r["attack"] == "pgd" and r["defense"] == "fgsm-at")
        r["accuracy"] = str(float(r["accuracy"]) + 0.1)
        return r
    r = _edit_csv(results / "robustness.csv", raise_one)
    rc, bad = _lines(results, capsys=capsys)
    assert rc == 1
    mine = [b for b in bad if b.startswith("DISAGREE robustness.csv ")]
    assert len(mine) == 1 and "fgsm-at seed 0 pgd/untargeted Linf" in mine[0] and mine[0].endswith(
        f"accuracy: published {r['accuracy']}, supported 0.474 (237/500 in its mask)")


def test_a_raised_worst_case_disagrees(tmp_path, capsys):
    """Mutation: verify ignoring worst_case.csv -> exit 0."""
    results = _copy(tmp_path)

    def raise_one(rows):
        r = next(r for r in rows if r["defense"] == "fgsm-at" and r["norm"] == "Linf" and r["epsilon"] == "0.1")
        r["accuracy"] = "0.47"
        return r
    _edit_csv(results / "worst_case.csv", raise_one)
    rc, bad = _lines(results, capsys=capsys)
    assert rc == 1 and len(bad) == 1 and bad[0].startswith("DISAGREE worst_case.csv line ")
    assert "(fgsm-at seed 0 Linf eps 0.1) accuracy: published 0.47, supported 0.37" in bad[0]


def test_a_worst_case_over_other_attacks_disagrees(tmp_path):
    """The attack set is part of the number (mutation: attacks column not compared)."""
    results = _copy(tmp_path)

    def drop_one(rows):
        r = next(r for r in rows if r["defense"] == "great" and r["norm"] == "Linf" and r["epsilon"] == "0.1")
        r["attacks"] = " ".join(r["attacks"].split()[1:])
        return r
    _edit_csv(results / "worst_case.csv", drop_one)
    bad = check_folder(results).disagreements
    assert [(d.file, d.where.split()[-1]) for d in bad] == [("worst_case.csv", "attacks")]


def test_a_worst_case_at_an_epsilon_no_attack_ran_disagrees(tmp_path):
    results = _copy(tmp_path)
    _edit_csv(results / "worst_case.csv", lambda rows: rows[0].update(epsilon="0.123"))
    (d,) = check_folder(results).disagreements
    assert d.file == "worst_case.csv" and d.supported == "no attack rows at that norm and epsilon"


def test_a_raised_table_cell_disagrees(tmp_path, capsys):
    """Mutation: table.csv not checked (or mean_pct not compared) -> exit 0."""
    results = _copy(tmp_path)

    def raise_one(rows):
        r = next(r for r in rows if r["defense"] == "greace" and r["column"] == "Transfer")
        r["mean_pct"] = "10.0000"
        return r
    _edit_csv(results / "table.csv", raise_one)
    rc, bad = _lines(results, capsys=capsys)
    assert rc == 1 and len(bad) == 1
    assert bad[0].startswith("DISAGREE table.csv line ") and "(greace, Transfer) mean_pct: published 10.0000, " \
                                                             "supported 0.0000" in bad[0]


def test_a_changed_markdown_cell_disagrees(tmp_path, capsys):
    """Mutation: table.md not checked -> exit 0."""
    results = _copy(tmp_path)
    md = results / "table.md"
    text = md.read_text()
    old = "| 47.4 [43.1, 51.8] |"  # FGSM-AT's PGD cell
    assert text.count(old) == 1
    md.write_text(text.replace(old, "| 57.4 [43.1, 51.8] |"))
    rc, bad = _lines(results, capsys=capsys)
    assert rc == 1 and bad == ["DISAGREE table.md fashion-mnist (Adversarial, PGD): published 57.4 [43.1, 51.8], "
                               "supported 47.4 [43.1, 51.8]"]


def test_a_raised_export_disagrees(tmp_path, capsys):
    """Mutation: the export's fields not compared -> exit 0; the export itself agrees."""
    results = _copy(tmp_path)
    out = tmp_path / "export"
    assert main(["export", "--format", "robustbench", str(results), str(out), "--quiet"]) == 0
    rc, bad = _lines(results, "--export", str(out), capsys=capsys)
    assert rc == 0 and bad == []
    f = out / "fashion-mnist" / "Linf" / "fgsm-at_seed0.json"
    info = json.loads(f.read_text())
    assert info["external"] == "37.00"
    info["external"] = "47.00"
    f.write_text(json.dumps(info))
    rc, bad = _lines(results, "--export", str(out), capsys=capsys)
    assert rc == 1 and bad == [f"DISAGREE {f} external: published '47.00', supported '37.00'"]
