"""Tables, curves, saliency maps and the report/evaluate commands, from a small fixture of rows."""
import csv
import io
import re
from types import SimpleNamespace
from importlib.metadata import version

import pytest
import torch
import torch.nn as nn

import numpy as np

from bench.eval.evaluate import evaluate
from bench.eval.schema import ROW_FIELDS, pack_mask, with_interval, write_rows
from attacks.registry import sweep
from bench.eval.subjects import EvalSet, Subject
from bench import csv_files as bench_rows
from bench.csv_files import read_rows
from bench.cli import main
from bench.report.compare import across_seeds, compare, comparison_markdown, default_reference
from core.errors import BenchError
from bench.config.eval_settings import EvalSettings
from bench.report.plots import curves, plot_acc_vs_eps
from bench.report.tables import COLUMNS, build_tables, to_csv, to_latex, to_markdown
from bench.report.write import write_report
from bench.saliency import plot_saliency, saliency
from bench.stats import aggregate, mcnemar_exact, newcombe_paired, wilson
from bench.report.worst_case import worst_case_rows

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


def test_table_layout_mean_std_over_seeds_and_intervals():
    [t] = build_tables(fixture_rows(), epsilon=0.1, cw_radius=1.0)
    labels = [c.name for c in t.columns]
    assert labels == ["Train", "No attack", "Non-targeted FGSM", "Non-targeted iFGSM", "Targeted FGSM Worst", "Min-norm L2",
                      "Worst case Linf 0.1"]
    fgsm = next(c for c in COLUMNS if c.label == "FGSM" and c.mode == "untargeted")
    s = t.stat("baseline", fgsm)
    assert (s.mean, s.seeds, s.n) == (pytest.approx(0.32), 2, N)
    assert s.std == pytest.approx(0.028284, abs=1e-6)  # sample std of 0.30, 0.34
    assert (s.ci_low, s.ci_high) == pytest.approx(
        (aggregate([0.30, 0.34], [N, N]).ci_low, aggregate([0.30, 0.34], [N, N]).ci_high))
    one = t.stat("great-ce", fgsm)
    assert (one.ci_low, one.ci_high) == pytest.approx(wilson(40, N))  # one seed: Wilson over n
    md = re.sub(" +", " ", to_markdown([t]))  # tabulate pads cells to the column width
    lo, hi = (100 * v for v in wilson(40, N))
    assert f"| 80.0 [{lo:.1f}, {hi:.1f}] |" in md
    assert "| Baseline | 98.5 ± 0.7 | 91.0 ± 1.4 [" in md
    assert "32.0 ± 2.8 [" in md and "GRE(AT+CE)" in md and "–" in md  # great-ce has no min-norm L2 value
    assert "| n (examples) | | 50 |" in md
    tex = to_latex([t])
    assert r"\begin{tabular}{lrrrrrrr}" in tex and r"32.0 $\pm$ 2.8 [" in tex
    assert r"\multicolumn{2}{c}{Non-targeted}" in tex
    parsed = list(csv.DictReader(io.StringIO(to_csv([t]))))
    row = next(r for r in parsed if r["defense"] == "baseline" and r["column"] == "Non-targeted FGSM")
    assert {"mean_pct": "32.0000", "std_pct": "2.8284", "seeds": "2", "n": str(N)}.items() <= row.items()
    assert float(row["ci_low_pct"]) == pytest.approx(100 * s.ci_low, abs=1e-4)
    assert [r["defense"] for r in parsed[:3]] == ["baseline"] * 3  # defense-major, table order


def masks_row(defense, attack, mode, eps, bits, seed=0, norm="Linf"):
    bits = np.asarray(bits, bool)
    return {k: "" for k in ROW_FIELDS} | {
        "dataset": "toy", "defense": defense, "seed": seed, "attack": attack, "norm": norm, "epsilon": eps,
        "mode": mode, "accuracy": bits.mean(), "n": len(bits), "restarts": 1, "spec": f"{attack}:{eps},{mode}",
        "eval_seed": 0, "checkpoint_sha256": f"{defense}{seed}", "correct_mask": pack_mask(torch.from_numpy(bits))}


def test_worst_case_needs_every_attack_on_the_common_examples():
    rows = [
        masks_row("a", "none", "untargeted", 0.0, [1, 1, 1, 1, 1, 1, 0, 1]),
        masks_row("a", "fgsm", "untargeted", 0.1, [1, 1, 0, 1, 1, 0, 0, 1]),
        masks_row("a", "fgsm", "worst", 0.1, [1, 0, 1, 1, 1, 1, 0, 0]),
        masks_row("a", "autoattack", "untargeted", 0.1, [1, 1, 1, 0, 1, 1]),  # only the first 6 examples
        masks_row("a", "fgsm", "untargeted", 0.2, [0, 1, 0, 0, 0, 0, 0, 1]),
    ]
    got = {(r["norm"], r["epsilon"]): r for r in worst_case_rows(rows)}
    w = got[("Linf", 0.1)]
    # examples 0..5: robust to all three attacks only at 0 and 4
    assert (w["n"], w["accuracy"], w["n_attacks"]) == (6, 2 / 6, 3)
    assert w["attacks"] == "autoattack/untargeted fgsm/untargeted fgsm/worst"
    assert (w["ci_low"], w["ci_high"]) == pytest.approx(wilson(2, 6), abs=1e-6)
    assert got[("Linf", 0.2)]["accuracy"] == 2 / 8 and got[("Linf", 0.2)]["n"] == 8
    assert ("Linf", 0.0) not in got  # the clean row is not an attack
    # the worst case becomes a table column (two or more attacks at the table's epsilon)
    [t] = build_tables(rows, epsilon=0.1)
    col = next(c for c in t.columns if c.name == "Worst case Linf 0.1")
    assert t.stat("a", col).mean == pytest.approx(2 / 6) and t.stat("a", col).n == 6


def test_comparison_pairs_the_same_examples_against_the_reference():
    ref = [1, 1, 0, 0, 1, 0, 0, 0, 1, 1]
    new = [1, 1, 1, 1, 1, 1, 1, 0, 0, 1]  # a=4 both, b=4 only new, c=1 only ref, d=1 neither
    rows = [masks_row("great", "none", "untargeted", 0.0, [1] * 10),
            masks_row("great", "fgsm", "untargeted", 0.1, ref),
            masks_row("mine", "none", "untargeted", 0.0, [1] * 10),
            masks_row("mine", "fgsm", "untargeted", 0.1, new + [1, 1])]  # two extra examples are not paired
    tables = build_tables(rows, epsilon=0.1)
    assert default_reference(tables, None) == "great"
    comp = compare(tables, "great")
    r = comp[comp["column"] == "Non-targeted FGSM"].iloc[0]
    assert (r["n"], r["both"], r["only_defense"], r["only_against"], r["neither"]) == (10, 4, 4, 1, 1)
    theta, lo, hi = newcombe_paired(4, 4, 1, 1)
    assert (r["diff_pct"], r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx((100 * theta, 100 * lo, 100 * hi))
    assert r["p_value"] == pytest.approx(mcnemar_exact(4, 1)) == pytest.approx(0.375)
    assert r["verdict"] == "cannot say"
    with pytest.raises(BenchError, match="not a defense of these rows; valid: great, mine"):
        default_reference(tables, "gerat")


def test_across_seeds_adds_the_paired_t_and_the_sampling_error_of_the_shared_examples():
    """The seeds' paired t half-width (scipy) and Newcombe's interval of the seed-averaged
    table, added in quadrature on each side (bench.stats.paired_across_seeds)."""
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(0)
    rows, diffs = [], []
    for seed in (0, 1, 2):
        ref = rng.random(200) < 0.3
        new = rng.random(200) < 0.3 + 0.1 * seed  # the gap grows with the seed
        rows += [masks_row("great", "none", "untargeted", 0.0, [1] * 200, seed),
                 masks_row("great", "fgsm", "untargeted", 0.1, ref, seed),
                 masks_row("mine", "none", "untargeted", 0.0, [1] * 200, seed),
                 masks_row("mine", "fgsm", "untargeted", 0.1, new, seed)]
        diffs.append(100 * (new.mean() - ref.mean()))
    tables = build_tables(rows, epsilon=0.1)
    comp = compare(tables, "great")
    s = across_seeds(comp)
    r = s[s["column"] == "Non-targeted FGSM"].iloc[0]
    ci = ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    h = (ci.high - ci.low) / 2
    g = comp[comp["column"] == "Non-targeted FGSM"]
    mean_table = g[["both", "only_defense", "only_against", "neither"]].to_numpy().mean(axis=0)
    d, lo_n, hi_n = (100 * v for v in newcombe_paired(*mean_table))
    assert r["seeds"] == 3 and r["mean_diff_pct"] == pytest.approx(np.mean(diffs)) == pytest.approx(d)
    assert (r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx(
        (d - np.hypot(d - lo_n, h), d + np.hypot(hi_n - d, h)))
    assert r["ci_low_pct"] < ci.low and r["ci_high_pct"] > ci.high  # wider than the t-interval alone
    # the clean column: every seed's difference is 0, yet the interval is n = 200's sampling width
    z = s[s["column"] == "No attack"].iloc[0]
    assert z["mean_diff_pct"] == 0 and z["ci_low_pct"] < -1 and z["ci_high_pct"] > 1 and z["p_value"] == 1
    per_seed = comp[comp["column"] == "Non-targeted FGSM"]["verdict"].value_counts()
    assert (r["better"], r["worse"], r["cannot_say"]) == (
        per_seed.get("better", 0), per_seed.get("worse", 0), per_seed.get("cannot say", 0))
    assert "across 3 training seeds" in comparison_markdown(comp, tables)
    from bench.report.html import across_seeds_table

    html = across_seeds_table(s, tables[0])
    assert 'id="across-seeds-toy"' in html and f"{r['mean_diff_pct']:+.1f} [{r['ci_low_pct']:+.1f}," in html
    assert ('class="better"' in html) == (r["ci_low_pct"] > 0)
    # one seed: no across-seeds summary
    assert across_seeds(compare(build_tables(rows[:4], epsilon=0.1), "great")).empty


def test_curve_bands_are_the_intervals(tmp_path):
    panel = curves(fixture_rows())[("fgsm", "untargeted", "Linf")]
    eps, s = panel["great-ce"][1]
    assert eps == 0.1 and (s.ci_low, s.ci_high) == pytest.approx(wilson(40, N))
    eps, s = panel["baseline"][2]
    assert eps == 0.3 and (s.ci_low, s.ci_high) == pytest.approx(
        (aggregate([0.10, 0.12], [N, N]).ci_low, aggregate([0.10, 0.12], [N, N]).ci_high))


def test_rows_carry_their_interval_and_older_csvs_are_upgraded(tmp_path):
    row = with_interval({"accuracy": 0.8, "n": 10})
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(8, 10), abs=1e-6)
    assert ROW_FIELDS[ROW_FIELDS.index("accuracy") + 1: ROW_FIELDS.index("accuracy") + 3] == ["ci_low", "ci_high"]
    # a CSV written before the interval and foolbox columns existed is read, filled in and extended
    old = tmp_path / "rob.csv"
    old_fields = [f for f in ROW_FIELDS if f not in ("ci_low", "ci_high", "foolbox")]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=old_fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerow(fixture_rows()[0])
    old.write_text(buf.getvalue())
    torch.manual_seed(0)
    data = EvalSet(torch.rand(12, 1, 4, 4), torch.randint(0, 3, (12,)), 3, "toy")
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    evaluate([Subject(net, "lin", 0, "toy", "sha")], data, sweep(["none"]), old)
    got = read_rows(old)
    assert len(got) == 2 and all(r["ci_low"] != "" for r in got)
    assert [r["foolbox"] for r in got] == ["", version("foolbox")]  # unknown for the old row
    assert float(got[0]["ci_high"]) == pytest.approx(wilson(45, 50)[1], abs=1e-6)


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


def test_a_report_from_the_csv_alone_keeps_the_sanity_flags_of_the_same_checkpoints(tmp_path):
    """Sanity flags need the models; re-making a report from the CSV alone (run folders gone)
    keeps those an earlier report computed on the very same checkpoints (sha256), no others."""
    rows = fixture_rows()
    shas = sorted({r["checkpoint_sha256"] for r in rows})
    old = [{"defense": "d", "seed": 0, "checkpoint_sha256": sha, "check": check, "status": "flag", "value": 0.3,
            "threshold": 0.0, "detail": "from the models"}
           for sha in (shas[0], "retrained" * 4) for check in ("zero_gradients", "deterministic")]
    old.append({**old[0], "check": "large_eps"})  # a row check: recomputed from the rows, never carried
    bench_rows.write_rows(tmp_path / "masking.csv", old, list(old[0]))
    write_report(rows, tmp_path, EvalSettings(epsilon=0.1), quiet=True)
    kept = [r for r in read_rows(tmp_path / "masking.csv") if r["detail"] == "from the models"]
    assert sorted((r["checkpoint_sha256"], r["check"]) for r in kept) == [(shas[0], "deterministic"),
                                                                         (shas[0], "zero_gradients")]


def test_report_command_writes_every_file(tmp_path, capsys):
    write_rows(tmp_path / "robustness.csv", fixture_rows())
    assert main(["report", "--preset", "smoke", "--results", str(tmp_path), "--quiet"]) == 0
    for name in ("table.md", "table.tex", "table.csv", "worst_case.csv", "masking.csv", "acc_vs_eps.png",
                 "acc_vs_eps.pdf", "index.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    masking = list(csv.DictReader(open(tmp_path / "masking.csv")))
    assert {r["check"] for r in masking} == {"iterative_vs_single", "monotone_in_eps", "large_eps",
                                             "black_box_vs_white_box", "l2_contains_linf", "min_norm_vs_fixed_radius",
                                             "transfer_vs_white_box"}
    assert len(masking) == 3 * 7  # three (defense, seed) models x seven checks
    md = re.sub(" +", " ", (tmp_path / "table.md").read_text())
    assert "Gradient-masking checks" in md
    first = masking[0]
    status = {"flag": "**FLAG**", "pass": "pass"}[first["status"]]
    assert f"| Baseline | 0 | {status} ({float(first['value']):.3f}) |" in md
    assert not (tmp_path / "comparison.md").exists()  # no GREAT in the rows and no --against
    assert main(["report", "--preset", "smoke", "--results", str(tmp_path), "--against", "baseline", "--quiet"]) == 0
    comp = list(csv.DictReader(open(tmp_path / "comparison.csv")))
    assert {r["defense"] for r in comp} == {"great-ce"} and {r["against"] for r in comp} == {"baseline"}
    assert "minus Baseline" in (tmp_path / "comparison.md").read_text()
    assert "minus Baseline" in (tmp_path / "table.md").read_text()  # printed beside the table


def test_given_the_models_tables_follow_their_order_not_the_csvs(tmp_path):
    # a re-evaluated run's rows come last in the CSV; the table still lists the preset's order
    rows = fixture_rows()
    rows = [r for r in rows if r["defense"] == "great-ce"] + [r for r in rows if r["defense"] != "great-ce"]
    subjects = [SimpleNamespace(defense="baseline", seed=0, sha256="baseline0"),
                SimpleNamespace(defense="great-ce", seed=0, sha256="great-ce0")]
    write_report(rows, tmp_path, EvalSettings(), subjects=subjects, quiet=True)
    md = (tmp_path / "table.md").read_text()
    assert md.index("| Baseline ") < md.index("| GRE(AT+CE) ")
    write_report(rows, tmp_path, EvalSettings(), quiet=True)  # without models: first appearance
    md = (tmp_path / "table.md").read_text()
    assert md.index("| GRE(AT+CE) ") < md.index("| Baseline ")


@pytest.mark.parametrize("argv, msg", [
    (["evaluate", "--attack", "fgsm:eps=2", "runs/none"], "[0, 1]"),
    (["evaluate", "--attack", "fgsmx", "runs/none"], "unknown attack"),
    (["evaluate", "--attack", "autoattack:mode=worst", "runs/none"], "cannot run mode"),
    (["evaluate", "--attack", "fgsm", "{tmp}"], "no finished checkpoint"),
    (["evaluate", "--attack", "fgsm"], "nothing to evaluate"),
    (["evaluate", "--attack", "fgsm", "--model", "x:y"], "go together"),
    (["report", "--results", "{tmp}"], "does not exist"),
    (["report", "--results", "{tmp}", "--csv", "{tmp}/rob.csv", "--against", "nope"], "not a defense"),
])
def test_bad_input_gives_one_message_and_exit_2(argv, msg, tmp_path, capsys):
    (tmp_path / "robustness.csv.keep").write_text("x")
    write_rows(tmp_path / "rob.csv", fixture_rows())
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--preset", "smoke", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("error:") == 1
    assert (tmp_path / "robustness.csv.keep").read_text() == "x"  # nothing already written is lost
