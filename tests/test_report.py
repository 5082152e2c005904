"""Tables, curves, saliency maps and the report/evaluate commands, from a small fixture of rows."""
import csv
import io

import pytest
import torch
import torch.nn as nn

from attacks.evaluate import ROW_FIELDS, pack_mask, write_rows
from bench.cli import main
from bench.plots import plot_acc_vs_eps
from bench.report import COLUMNS, build_tables, to_csv, to_latex, to_markdown
from bench.saliency import plot_saliency, saliency

ACC = {  # defense -> seed -> (attack, mode, eps) -> accuracy
    "baseline": {0: {("none", "untargeted", 0.0): 0.90, ("fgsm", "untargeted", 0.1): 0.30,
                     ("ifgsm", "untargeted", 0.1): 0.02, ("fgsm", "worst", 0.1): 0.70,
                     ("fgsm", "untargeted", 0.3): 0.10, ("l2min", "untargeted", 1.0): 0.20},
                 1: {("none", "untargeted", 0.0): 0.92, ("fgsm", "untargeted", 0.1): 0.34,
                     ("ifgsm", "untargeted", 0.1): 0.04, ("fgsm", "worst", 0.1): 0.72,
                     ("fgsm", "untargeted", 0.3): 0.12, ("l2min", "untargeted", 1.0): 0.22}},
    "great-ce": {0: {("none", "untargeted", 0.0): 0.88, ("fgsm", "untargeted", 0.1): 0.80,
                     ("ifgsm", "untargeted", 0.1): 0.75, ("fgsm", "worst", 0.1): 0.85,
                     ("fgsm", "untargeted", 0.3): 0.50}},
}
N = 50


def fixture_rows():
    rows = []
    for d, seeds in ACC.items():
        for seed, accs in seeds.items():
            for (attack, mode, eps), acc in accs.items():
                correct = torch.arange(N) < round(acc * N)
                rows.append({k: "" for k in ROW_FIELDS} | {
                    "dataset": "toy", "defense": d, "seed": seed, "attack": attack, "norm": "L2" if attack == "l2min" else "Linf",
                    "epsilon": eps, "mode": mode, "accuracy": acc, "n": N, "train_accuracy": 0.99 - seed / 100,
                    "restarts": 1, "params": "{}", "spec": f"{attack}:eps={eps},mode={mode}",
                    "checkpoint_sha256": f"{d}{seed}", "correct_mask": pack_mask(correct)})
    return rows


def test_table_layout_and_mean_std_over_seeds():
    [t] = build_tables(fixture_rows(), epsilon=0.1, cw_radius=1.0)
    labels = [f"{c.group} {c.label}".strip() for c in t.columns]
    assert labels == ["Train", "No attack", "Non-targeted FGSM", "Non-targeted iFGSM", "Targeted FGSM Worst", "Min-norm L2"]
    fgsm = next(c for c in COLUMNS if c.label == "FGSM" and c.mode == "untargeted")
    mean, std, n = t.stat("baseline", fgsm)
    assert (mean, n) == (pytest.approx(32.0), 2) and std == pytest.approx(2.8284, abs=1e-3)  # sample std
    assert t.text("great-ce", fgsm) == "80.00"
    md = to_markdown([t])
    assert "| Baseline | 98.50 ± 0.71 | 91.00 ± 1.41 | 32.00 ± 2.83 |" in md
    assert "| GRE(AT+CE) |" in md and "–" in md  # great-ce has no min-norm L2 value
    tex = to_latex([t])
    assert r"\begin{tabular}{lrrrrrr}" in tex and r"32.00 $\pm$ 2.83" in tex and r"\multicolumn{2}{c}{Non-targeted}" in tex
    parsed = list(csv.DictReader(io.StringIO(to_csv([t]))))
    assert {"defense": "baseline", "column": "Non-targeted FGSM", "mean_pct": "32.0000", "seeds": "2"}.items() <= parsed[2].items()


def test_curves_are_written_as_png_and_pdf(tmp_path):
    panels = plot_acc_vs_eps(fixture_rows(), tmp_path / "c.png", tmp_path / "c.pdf")
    assert panels == [("fgsm", "untargeted", "Linf")]  # the only attack run at two epsilons
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"


def test_saliency_is_the_input_gradient_magnitude(tmp_path):
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
    s = saliency(lin, x, y)
    # linear model: d CE / d x = W^T (softmax - onehot)
    p = torch.softmax(lin(x), 1) - torch.eye(3)[y]
    expected = (p @ lin[1].weight).abs().view(2, 4, 4)
    assert torch.allclose(s, expected, atol=1e-6)
    plot_saliency([("baseline", lin), ("great", lin)], x, y, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_report_command_writes_every_file(tmp_path, capsys):
    write_rows(tmp_path / "robustness.csv", fixture_rows())
    assert main(["report", "--preset", "smoke", "--results", str(tmp_path), "--quiet"]) == 0
    for name in ("table.md", "table.tex", "table.csv", "masking.csv", "acc_vs_eps.png", "acc_vs_eps.pdf"):
        assert (tmp_path / name).stat().st_size > 0, name
    masking = list(csv.DictReader(open(tmp_path / "masking.csv")))
    assert {r["check"] for r in masking} == {"iterative_vs_single", "monotone_in_eps", "large_eps",
                                             "black_box_vs_white_box", "l2_contains_linf"}
    assert len(masking) == 3 * 5  # three (defense, seed) models x five checks
    assert "Gradient-masking checks" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize("argv, msg", [
    (["evaluate", "--attack", "fgsm:eps=2", "runs/none"], "[0, 1]"),
    (["evaluate", "--attack", "fgsmx", "runs/none"], "unknown attack"),
    (["evaluate", "--attack", "autoattack:mode=worst", "runs/none"], "cannot run mode"),
    (["evaluate", "--attack", "fgsm", "{tmp}"], "no finished checkpoint"),
    (["evaluate", "--attack", "fgsm"], "nothing to evaluate"),
    (["evaluate", "--attack", "fgsm", "--model", "x:y"], "go together"),
    (["report", "--results", "{tmp}"], "does not exist"),
])
def test_bad_input_gives_one_message_and_exit_2(argv, msg, tmp_path, capsys):
    (tmp_path / "robustness.csv.keep").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--preset", "smoke", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("error:") == 1
    assert (tmp_path / "robustness.csv.keep").read_text() == "x"  # nothing already written is lost
