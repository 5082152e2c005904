"""The claims side by side across results folders (bench/report/verdict_matrix.py): each cell is
the folder's own verdict with the comparison that decides it, read from its verdicts.csv."""
from __future__ import annotations

import pytest

from bench.report.claims import CLAIMS, FIELDS
from core.errors import BenchError
from bench.csv_files import write_rows
from bench.report.verdict_matrix import parse_columns, verdict_matrix


def _row(claim, first, second, column, diff, p_holm, verdict, claim_verdict):
    return {"claim": claim, "track": "robustness", "dataset": "fashion-mnist", "first": first, "second": second,
            "column": column, "sign": 1, "seeds": 3, "n": 1000, "diff": diff, "ci_low": diff - 1, "ci_high": diff + 1,
            "p_value": p_holm / 2, "p_holm": p_holm, "verdict": verdict, "claim_verdict": claim_verdict,
            "unit": "points"}


def test_each_cell_is_the_folders_verdict_with_its_deciding_comparison(tmp_path):
    single, greace, boost = CLAIMS[0].name, CLAIMS[1].name, CLAIMS[2].name
    a, b = tmp_path / "a", tmp_path / "b"
    write_rows(a / "verdicts.csv", [
        _row(single, "great", "baseline", "Non-targeted FGSM", -2.0, 0.10, "cannot tell", "cannot tell"),
        # does not hold: the opposite-signed comparison decides, not the unsettled one
        _row(greace, "greace", "baseline", "Non-targeted iFGSM", 0.6, 0.9, "cannot tell", "does not hold"),
        _row(greace, "greace", "fgsm-at", "Non-targeted iFGSM", -52.4, 0.016, "does not hold", "does not hold"),
        # cannot tell: the unsettled comparison closest to settling decides, not one that holds
        _row(boost, "great-ce", "greace", "Non-targeted iFGSM", 7.0, 0.001, "holds", "cannot tell"),
        _row(boost, "great-ce", "great", "Non-targeted iFGSM", 0.5, 1.0, "cannot tell", "cannot tell"),
        _row(boost, "great-ce", "great", "Targeted FGSM Worst", 4.0, 0.4, "cannot tell", "cannot tell"),
    ], FIELDS)
    write_rows(b / "verdicts.csv", [
        _row(single, "great", "baseline", "Non-targeted FGSM", 5.0, 0.04, "holds", "holds"),
        # holds: the weakest link (largest Holm p) decides
        _row(boost, "great-ce", "greace", "Non-targeted iFGSM", 9.0, 0.001, "holds", "holds"),
        _row(boost, "great-ce", "great", "Non-targeted iFGSM", 3.0, 0.03, "holds", "holds"),
    ], FIELDS)
    text = verdict_matrix(parse_columns([f"cnn={a}", f"resnet={b}"]))
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    assert "**cannot tell**: GREAT − Baseline, Non-targeted FGSM: -2.0 [-3.0, -1.0], Holm p 0.100" in lines[single]
    assert "**holds**: GREAT − Baseline, Non-targeted FGSM: +5.0" in lines[single]
    assert "**does not hold**: GREACE − Adversarial, Non-targeted iFGSM: -52.4 [-53.4, -51.4], Holm p 0.016" \
        in lines[greace]
    assert lines[greace].endswith("| not measured |")
    assert "**cannot tell**: GRE(AT+CE) − GREAT, Targeted FGSM Worst: +4.0 [+3.0, +5.0], Holm p 0.400" \
        in lines[boost].split(" | ")[1]
    assert "GRE(AT+CE) − GREAT, Non-targeted iFGSM: +3.0 [+2.0, +4.0], Holm p 0.030" in lines[boost]
    assert lines["Comparisons in the Holm family"].endswith("| 6 | 3 |")
    # claims in bench.report.claims order, only those some folder measured
    order = [line.split(" | ")[0].strip("| ") for line in text.splitlines()[2:-1]]
    assert order == [single, greace, boost]


def test_bad_columns_are_refused_with_what_is_valid(tmp_path):
    with pytest.raises(BenchError, match="expected LABEL=FOLDER"):
        parse_columns(["results/study"])
    with pytest.raises(BenchError, match="verdicts.csv not found: write it with `great-bench report`"):
        parse_columns([f"x={tmp_path}"])


def test_a_partly_measured_cell_names_what_was_not_measured(tmp_path):
    import math
    greace = CLAIMS[1].name
    a = tmp_path / "a"
    write_rows(a / "verdicts.csv", [
        _row(greace, "greace", "baseline", "Non-targeted iFGSM", 40.0, 0.001, "holds", "partly measured"),
        {**_row(greace, "greace", "fgsm-at", "Non-targeted iFGSM", math.nan, math.nan, "not measured",
                "partly measured"), "p_value": math.nan, "n": 0, "seeds": 0},
    ], FIELDS)
    text = verdict_matrix(parse_columns([f"x={a}"]))
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    assert "**partly measured**: GREACE − Baseline, Non-targeted iFGSM: +40.0" in lines[greace]
    assert "not measured: GREACE − Adversarial, Non-targeted iFGSM" in lines[greace]
    assert lines["Comparisons in the Holm family"].endswith("| 1 |")
