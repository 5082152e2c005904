"""The transfer attack (issue 20): examples made by PGD on the undefended source model,
evaluated on another model; its rows, its masking check, its place in the worst case and
in the tables, and the pipeline that finds the source run."""
import csv
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

from bench.eval.evaluate import evaluate
from attacks.registry import parse_spec, sweep
from bench.eval.schema import ROW_FIELDS, pack_mask, unpack_mask, upgrade_rows
from bench.eval.subjects import EvalSet, Subject
from bench.eval.transfer import TransferAttack, find_source
from core.errors import BenchError
from bench.report.masking import Thresholds, masking_checks, transfer_vs_white_box
from bench.csv_files import read_rows
from bench.report.worst_case import worst_case_rows

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.3


class Quantise(nn.Module):
    """round(2x)/2: zero gradient almost everywhere (white-box attacks see nothing)."""

    def forward(self, x):
        return torch.round(x * 2) / 2


def _train(x, y, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def models():
    """Two small MLPs trained on four binary 8x8 patterns (pixels 0.1 / 0.9 plus noise): the
    source ("baseline") and another, and the latter behind a quantiser (masked gradients)."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float() * 0.8 + 0.1
    y = torch.randint(0, 4, (400,), generator=g)
    x = (protos[y] + 0.04 * torch.randn(400, 1, 8, 8, generator=g)).clamp(0, 1)
    source = _train(x[:300], y[:300], 0)
    other = _train(x[:300], y[:300], 1)
    masked = nn.Sequential(Quantise(), other).eval()
    return source, other, masked, EvalSet(x[300:], y[300:], 4, "toy")


def subject(net, defense, sha, seed=0, dataset="toy"):
    return Subject(net, defense, seed, dataset, sha)


def test_the_spec_parses_as_an_untargeted_linf_pgd():
    spec = parse_spec("transfer:eps=0.1,n=500")
    assert (spec.norm, spec.mode, spec.steps, spec.n) == ("Linf", "untargeted", 20, 500)
    assert spec.step_size == pytest.approx(2.5 * 0.1 / 20)  # PGD's default step
    with pytest.raises(BenchError, match="cannot run mode"):
        parse_spec("transfer:eps=0.1,mode=random")
    with pytest.raises(BenchError, match="cascade=1 does not apply"):
        parse_spec("transfer:eps=0.1,cascade=1")


def test_examples_are_made_on_the_source_and_scored_on_the_target(models):
    source, other, masked, data = models
    spec = parse_spec(f"transfer:eps={EPS},steps=10")
    attack = TransferAttack(subject(source, "baseline", "a" * 64), batch_size=500)
    [row] = attack.rows(subject(masked, "masked", "b" * 64), data, [spec], eval_seed=3)
    adv, _, _ = attack.examples(spec, data, len(data), 3)
    # the examples are torchattacks' PGD on the source, called directly with the harness's seed
    torch.manual_seed(3)
    direct = torchattacks.PGD(source, eps=EPS, alpha=spec.step_size, steps=10, random_start=True)(data.x, data.y)
    assert torch.allclose(adv, direct, atol=1e-6)
    # ... and the row scores the target on them (clean errors stay errors)
    with torch.no_grad():
        clean_ok = masked(data.x).argmax(1) == data.y
        expected = clean_ok & (masked(adv).argmax(1) == data.y)
        on_source = source(adv).argmax(1) == data.y
    got = torch.from_numpy(unpack_mask(row["correct_mask"], len(data)))
    assert torch.equal(got, expected)
    assert not torch.equal(expected, on_source)  # the two models disagree: the check above can tell them apart
    assert row["accuracy"] == pytest.approx(float(expected.float().mean()))
    assert row["transfer_from"] == "baseline seed 0 " + "a" * 12 and row["attack"] == "transfer"
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]


class WrongOnClean(nn.Module):
    """The wrapped model, but a wrong class on the first k clean images themselves: clean
    errors that the (perturbed) transfer examples would classify correctly."""

    def __init__(self, net, clean, k):
        super().__init__()
        self.net, self.clean = net, clean[:k]

    def forward(self, x):
        logits = self.net(x)
        hit = (x.flatten(1)[:, None] == self.clean.flatten(1)[None]).all(-1).any(1)
        return torch.where(hit[:, None], logits.roll(1, dims=1), logits)


def test_clean_errors_of_the_target_stay_errors(models):
    source, other, _, data = models
    target = WrongOnClean(other, data.x, 20).eval()
    spec = parse_spec(f"transfer:eps={EPS},steps=10")
    [row] = TransferAttack(subject(source, "baseline", "a" * 64)).rows(subject(target, "t", "b" * 64), data, [spec])
    mask = unpack_mask(row["correct_mask"], len(data))
    assert row["n_clean_correct"] <= len(data) - 20 and not mask[:20].any()
    adv, _, _ = TransferAttack(subject(source, "baseline", "a" * 64)).examples(spec, data, len(data), 0)
    with torch.no_grad():  # the transfer examples alone would leave some of them correct
        assert (target(adv[:20]).argmax(1) == data.y[:20]).any()


def test_examples_lie_in_the_box_and_the_eps_ball_and_are_made_once(models):
    source, other, masked, data = models
    spec = parse_spec(f"transfer:eps={EPS},steps=10")
    attack = TransferAttack(subject(source, "baseline", "a" * 64))
    rows = [attack.rows(subject(m, name, sha), data, [spec])[0]
            for m, name, sha in ((other, "other", "b" * 64), (masked, "masked", "c" * 64))]
    adv, norms, _ = attack.examples(spec, data, len(data), 0)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert float((adv - data.x).abs().amax()) <= EPS + 1e-6 and float(norms.max()) <= EPS + 1e-6
    assert float((adv - data.x).abs().amax()) > EPS / 2  # a real perturbation
    assert attack.generated == 1  # one example set for both targets
    assert rows[0]["seconds"] > 0 and all(float(r["max_perturbation"]) <= EPS + 1e-6 for r in rows)


def test_the_source_gets_no_row_and_other_seeds_or_datasets_none_either(models):
    source, other, _, data = models
    spec = parse_spec(f"transfer:eps={EPS},steps=5")
    attack = TransferAttack(subject(source, "baseline", "a" * 64))
    assert attack.rows(subject(source, "baseline", "a" * 64), data, [spec]) == []
    assert attack.rows(subject(other, "other", "b" * 64, seed=1), data, [spec]) == []
    assert attack.rows(subject(other, "other", "b" * 64, dataset="mnist"), data, [spec]) == []
    runs = [subject(other, "baseline", "c", seed=1), subject(source, "baseline", "a"), subject(other, "x", "b")]
    assert find_source(runs[2], runs, "baseline") is runs[1]
    assert find_source(runs[2], runs, "fgsm-at") is None


def test_a_gradient_masking_defense_is_caught_end_to_end(models):
    """White-box iFGSM sees zero gradients through the quantiser; the source's examples do not
    need them: the transfer check flags the masked model and passes the plain one."""
    source, other, masked, data = models
    specs = sweep(["none", f"ifgsm:eps={EPS}", f"transfer:eps={EPS},steps=10"])
    attack = TransferAttack(subject(source, "baseline", "a" * 64))
    rows = []
    for net, name, sha in ((source, "baseline", "a" * 64), (other, "other", "b" * 64), (masked, "masked", "c" * 64)):
        s = subject(net, name, sha)
        rows += evaluate_rows(s, data, specs, attack)
    by = {(c.defense, c.check): c for c in masking_checks(rows)}
    assert by["masked", "transfer_vs_white_box"].status == "flag"
    assert by["other", "transfer_vs_white_box"].status == "pass"
    assert by["baseline", "transfer_vs_white_box"].status == "n/a"
    assert "transfer source (baseline) itself" in by["baseline", "transfer_vs_white_box"].detail


def evaluate_rows(s, data, specs, attack):
    from bench.eval.evaluate import evaluate_subject

    return evaluate_subject(s, data, specs) + attack.rows(s, data, specs)


def row(attack, eps, correct, mode="untargeted", **kw):
    c = torch.tensor(correct, dtype=torch.bool)
    r = {"dataset": "toy", "defense": "d", "seed": 0, "checkpoint_sha256": "s", "attack": attack, "epsilon": eps,
         "mode": mode, "norm": "Linf", "n": len(correct), "accuracy": float(c.float().mean()),
         "correct_mask": pack_mask(c), "steps": "", "restarts": 1, "params": "{}", "spec": f"{attack}:{eps}",
         "eval_seed": 0, "transfer_from": "baseline seed 0 aaaa" if attack == "transfer" else ""}
    r.update(kw)
    return r


def test_the_flag_fires_when_transfer_beats_the_strongest_white_box_attack():
    th = Thresholds(tol=0.1)
    rows = [row("fgsm", 0.1, [1, 1, 1, 0]), row("pgd", 0.1, [1, 1, 0, 0]), row("transfer", 0.1, [1, 0, 0, 0])]
    status, value, detail = transfer_vs_white_box(rows, th, source="baseline")
    assert (status, value) == ("flag", 0.25)  # against PGD (50%), the strongest, not FGSM (75%)
    assert detail == "transfer/untargeted@0.1 25.0% vs white-box pgd/untargeted@0.1 50.0% on n=4"
    rows[-1] = row("transfer", 0.1, [1, 1, 0, 0])  # as strong as PGD: no sign of masking
    assert transfer_vs_white_box(rows, th, source="baseline")[:2] == ("pass", 0.0)
    rows[-1] = row("transfer", 0.1, [1, 1, 1, 1])  # weaker than white box: the usual case
    assert transfer_vs_white_box(rows, th, source="baseline")[:2] == ("pass", -0.5)
    # other epsilons, norms, targeted modes and black-box attacks are not the white-box reference
    others = [row("pgd", 0.2, [0, 0, 0, 0]), row("ifgsm", 0.1, [0, 0, 0, 0], mode="worst"),
              row("square", 0.1, [0, 0, 0, 0]), row("transfer", 0.1, [1, 0, 0, 0])]
    assert transfer_vs_white_box(others, th, source="baseline")[0] == "n/a"
    assert transfer_vs_white_box([row("fgsm", 0.1, [1, 1, 1, 1])] + others, th, source="baseline")[0] == "flag"


def test_without_a_source_the_check_says_so_instead_of_passing():
    rows = [row("none", 0.0, [1, 1, 1, 1]), row("pgd", 0.1, [1, 1, 0, 0])]
    [check] = [c for c in masking_checks(rows) if c.check == "transfer_vs_white_box"]
    assert check.status == "no source"
    assert check.detail == "no transfer source (baseline) in this preset: no transfer attack was run"
    # a baseline of the same dataset and seed is there: the sweep just has no transfer attack
    base = [row("none", 0.0, [1, 1, 1, 1], defense="baseline", checkpoint_sha256="b")]
    by = {c.defense: c for c in masking_checks(rows + base) if c.check == "transfer_vs_white_box"}
    assert by["d"].status == "n/a" and "no transfer row" in by["d"].detail
    # ... but not of this seed, or under another name (eval.transfer_source)
    other_seed = [row("none", 0.0, [1, 1, 1, 1], defense="baseline", checkpoint_sha256="b", seed=1)]
    by = {c.defense: c for c in masking_checks(rows + other_seed) if c.check == "transfer_vs_white_box"}
    assert by["d"].status == "no source"
    by = {c.defense: c for c in masking_checks(rows + base, transfer_source="vanilla")
          if c.check == "transfer_vs_white_box"}
    assert by["d"].status == "no source" and "(vanilla)" in by["d"].detail


def test_transfer_rows_join_the_linf_worst_case():
    rows = [row("pgd", 0.1, [1, 1, 0, 0]), row("transfer", 0.1, [1, 0, 1, 0])]
    [worst] = worst_case_rows(rows)
    assert worst["accuracy"] == 0.25 and worst["attacks"] == "pgd/untargeted transfer/untargeted"


def test_csvs_without_the_transfer_column_still_load(tmp_path):
    old = tmp_path / "rob.csv"
    fields = [f for f in ROW_FIELDS if f != "transfer_from"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerow({k: "" for k in fields} | row("pgd", 0.1, [1, 1, 0, 0]))
    old.write_text(buf.getvalue())
    [r] = upgrade_rows(old, read_rows(old))
    assert r["transfer_from"] == "" and set(r) == set(ROW_FIELDS)
    assert worst_case_rows([r] + [row("transfer", 0.1, [0, 1, 1, 0], checkpoint_sha256="s")])[0]["accuracy"] == 0.25
    # a harness run merging into it extends the file, the old row kept
    torch.manual_seed(0)
    data = EvalSet(torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,)), 3, "toy")
    evaluate([Subject(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), "lin", 0, "toy", "sha")], data,
             sweep(["none"]), old)
    got = read_rows(old)
    assert len(got) == 2 and [r["transfer_from"] for r in got] == ["", ""]


def test_rows_of_a_retrained_source_are_superseded_and_recomputed(models, tmp_path):
    source, other, _, data = models
    specs = sweep([f"transfer:eps={EPS},steps=5"])
    out = tmp_path / "rob.csv"
    target = subject(other, "other", "b" * 64)
    evaluate([target], data, specs, out, transfer=TransferAttack(subject(source, "baseline", "a" * 64)))
    assert [r["transfer_from"] for r in read_rows(out)] == ["baseline seed 0 " + "a" * 12]
    retrained = TransferAttack(subject(_noise_net(), "baseline", "c" * 64))
    evaluate([target], data, specs, out, transfer=retrained)
    assert [r["transfer_from"] for r in read_rows(out)] == ["baseline seed 0 " + "c" * 12]
    assert retrained.generated == 1
    # the same source again: the row is kept, nothing is made
    again = TransferAttack(subject(_noise_net(), "baseline", "c" * 64))
    evaluate([target], data, specs, out, transfer=again)
    assert again.generated == 0 and len(read_rows(out)) == 1


def _noise_net():
    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()


SWEEP = "eval.sweep=['none', 'pgd:eps=0.1,steps=5', 'transfer:eps=0.1,steps=5']"


def test_the_pipeline_finds_the_source_run_and_every_view_shows_the_column(tmp_path):
    from bench.pipeline import benchmark, evaluate_runs, resolve_config

    cfg = resolve_config("smoke", ["train.defenses=['baseline', 'fgsm-at']", "train.epochs=1", SWEEP])
    res = benchmark(cfg, out=tmp_path / "runs", results=tmp_path / "res", quiet=True)
    rows = read_rows(res / "robustness.csv")
    [tr] = [r for r in rows if r["attack"] == "transfer"]  # none for the baseline itself
    assert tr["defense"] == "fgsm-at" and tr["transfer_from"].startswith("baseline seed 0 ")
    [base] = [r for r in rows if r["defense"] == "baseline" and r["attack"] == "none"]
    assert tr["transfer_from"] == f"baseline seed 0 {base['checkpoint_sha256'][:12]}"
    checks = {(r["defense"], r["check"]): r for r in read_rows(res / "masking.csv")}
    assert checks["fgsm-at", "transfer_vs_white_box"]["status"] in ("pass", "flag")
    assert "% vs white-box pgd/untargeted@0.1" in checks["fgsm-at", "transfer_vs_white_box"]["detail"]
    assert checks["baseline", "transfer_vs_white_box"]["status"] == "n/a"
    worst = {r["defense"]: r for r in read_rows(res / "worst_case.csv")}
    assert "transfer/untargeted" in worst["fgsm-at"]["attacks"]
    for page in ("table.md", "index.html", "table.tex"):
        text = (res / page).read_text()
        assert "Transfer" in text and "made on the Baseline run of the same seed" in text, page
    assert "Transfer" in {r["column"] for r in read_rows(res / "table.csv")}
    # `evaluate RUNS`: the source is found beside the run in the standard layout
    run = tmp_path / "runs" / "fashion-mnist" / "fgsm-at" / "seed0"
    from bench.config.eval_settings import sweep_specs

    got, _ = evaluate_runs([run], sweep_specs(cfg.eval.sweep), tmp_path / "e.csv", cfg.eval, quiet=True)
    [again] = [r for r in got if r["attack"] == "transfer"]
    assert (again["transfer_from"], again["correct_mask"]) == (tr["transfer_from"], tr["correct_mask"])
    # a preset without the baseline: no transfer rows, and the masking check says why
    cfg = resolve_config("smoke", ["train.defenses=['fgsm-at']", "train.epochs=1", SWEEP])
    res = benchmark(cfg, out=tmp_path / "runs", results=tmp_path / "res2", quiet=True)
    assert not [r for r in read_rows(res / "robustness.csv") if r["attack"] == "transfer"]
    [check] = [r for r in read_rows(res / "masking.csv") if r["check"] == "transfer_vs_white_box"]
    assert check["status"] == "no source" and "no transfer source (baseline)" in check["detail"]
