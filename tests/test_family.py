"""The pre-registered verdict family (bench/report/family.py, issue 30): the family and its size come
from the committed file, never from the results; one Holm correction over every comparison x
network x epsilon; unmeasured members are "not measured" and count with p = 1; bad files are
refused with the nearest valid name."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.eval.schema import ROW_FIELDS
from bench.report.claims import CLAIMS
from bench.cli import main
from core.errors import BenchError
from bench.config.eval_settings import EvalSettings
from bench.report.family import FIELDS, family_markdown, family_verdicts, load_family, parse_folders
from bench.report.write import write_report
from bench.csv_files import read_rows, write_rows
from bench.stats import holm
from tests.test_report import masks_row

STUDY_3 = Path(__file__).resolve().parents[1] / "bench" / "families" / "study-3.toml"
N = 200
# Examples (of N) each defense gets right under FGSM and iFGSM, the same on every seed.
LEVELS = {"baseline": (60, 20), "greace": (100, 150), "great": (100, 30), "great-ce": (140, 160),
          "fgsm-at": (120, 100)}


def _rows(defenses=LEVELS, epsilons=(0.0353, 0.1), seeds=(0, 1, 2), extra=()):
    rows = []
    for seed in seeds:
        for d in defenses:
            rows.append(masks_row(d, "none", "untargeted", 0.0, [1] * N, seed))
            for eps in epsilons:
                for attack, k in zip(("fgsm", "ifgsm"), LEVELS.get(d, (50, 50))):
                    rows.append(masks_row(d, attack, "untargeted", eps, np.arange(N) < k, seed))
    rows += list(extra)
    return [{**r, "dataset": "fashion-mnist"} for r in rows]


def _folder(tmp_path: Path, rows, name="res") -> Path:
    folder = tmp_path / name
    write_rows(folder / "robustness.csv", rows, ROW_FIELDS)
    return folder


def _verdicts(folder: Path):
    fam = load_family(STUDY_3)
    return fam, family_verdicts(fam, parse_folders([f"small-resnet={folder}"], fam))


def test_the_committed_study_3_family():
    fam = load_family(STUDY_3)
    assert fam.name == "study-3" and fam.dataset == "fashion-mnist" and list(fam.networks) == ["small-resnet"]
    assert [(e.value, e.units, e.pixel) for e in fam.epsilons] == [(0.1, "normalized", 0.0353), (0.1, "pixel", 0.1)]
    robust = [c for c in CLAIMS if c.comparisons[0].track == "robustness"]
    assert [c.name for c in fam.claims] == [c.name for c in robust]
    assert fam.size == 6 * 1 * 2 == len(fam.members())


def test_one_holm_correction_over_the_whole_family(tmp_path):
    fam, got = _verdicts(_folder(tmp_path, _rows()))
    assert len(got) == fam.size == 12 and all(r["verdict"] != "not measured" for r in got)
    assert [r["p_holm"] for r in got] == pytest.approx(holm([r["p_value"] for r in got]))
    # the same comparison at the two epsilons is two members of one family
    assert {r["epsilon"] for r in got} == {"0.1 normalized (0.0353 pixel)", "0.1 pixel"}
    by = {(r["first"], r["second"], r["epsilon_pixel"]): r for r in got}
    assert by[("greace", "baseline", 0.1)]["diff"] == pytest.approx(100 * (150 - 20) / N)
    assert by[("greace", "baseline", 0.1)]["verdict"] == "holds"
    assert by[("greace", "fgsm-at", 0.1)]["verdict"] == "holds"
    assert by[("great", "baseline", 0.0353)]["diff"] == pytest.approx(100 * 40 / N)


def test_extra_results_do_not_change_the_family(tmp_path):
    """Other defenses, attacks and epsilons in the results (PGD-AT, TRADES, PGD, eps 0.3) leave
    the family, its size and every number as they were."""
    _, base = _verdicts(_folder(tmp_path, _rows(), "a"))
    extra = [masks_row(d, a, "untargeted", eps, np.arange(N) < 90, s)
             for d in ("pgd-at", "trades") for a in ("fgsm", "ifgsm", "pgd") for eps in (0.0353, 0.1, 0.3)
             for s in (0, 1, 2)]
    extra += [masks_row("great", "pgd", "untargeted", 0.1, np.arange(N) < 5, s) for s in (0, 1, 2)]
    fam, more = _verdicts(_folder(tmp_path, _rows(epsilons=(0.0353, 0.1, 0.3), extra=extra), "b"))
    assert len(more) == fam.size == 12
    assert [(r["claim"], r["first"], r["second"], r["epsilon"], r["p_holm"], r["verdict"]) for r in more] == \
        [(r["claim"], r["first"], r["second"], r["epsilon"], r["p_holm"], r["verdict"]) for r in base]


def test_missing_comparisons_are_not_measured_and_still_count_in_holm(tmp_path):
    """Without FGSM-AT the family is still 12: its 4 members are "not measured" and enter Holm
    with p = 1, so the 8 measured ones are corrected for 12, not 8. "GREACE alone is robust",
    whose GREACE > baseline holds, is "partly measured", never "holds"."""
    no_at = {d: v for d, v in LEVELS.items() if d != "fgsm-at"}
    fam, got = _verdicts(_folder(tmp_path, _rows(defenses=no_at)))
    assert len(got) == fam.size == 12
    missing = [r for r in got if r["verdict"] == "not measured"]
    assert {r["second"] for r in missing} == {"fgsm-at"} and len(missing) == 4
    assert all(math.isnan(r["p_value"]) and math.isnan(r["p_holm"]) and r["n"] == 0 for r in missing)
    measured = [r for r in got if r["verdict"] != "not measured"]
    ps = [r["p_value"] for r in measured]
    assert [r["p_holm"] for r in measured] == pytest.approx(holm(ps + [1.0] * 4)[:8])
    assert holm(ps + [1.0] * 4)[:8] != pytest.approx(holm(ps))  # the derived family would be smaller
    greace = [r for r in got if r["claim"] == "GREACE alone is robust"]
    assert any(r["verdict"] == "holds" for r in greace)
    assert {r["claim_verdict"] for r in greace} == {"partly measured"}
    assert {r["cell_verdict"] for r in greace} == {"partly measured"}
    beats = [r for r in got if r["claim"].startswith("GRE(AT+CE) beats")]
    assert {r["claim_verdict"] for r in beats} == {"not measured"}
    md = family_markdown(fam, got)
    assert "Family size: 12 comparisons" in md and "8 measured, 4 not measured" in md
    assert "- **GREACE alone is robust: partly measured**" in md


def test_a_missing_epsilon_is_not_measured(tmp_path):
    fam, got = _verdicts(_folder(tmp_path, _rows(epsilons=(0.1,))))
    assert len(got) == 12
    assert {r["epsilon_pixel"] for r in got if r["verdict"] == "not measured"} == {0.0353}
    assert sum(r["verdict"] == "not measured" for r in got) == 6


def test_fewer_than_two_seeds_is_not_measured(tmp_path):
    _, got = _verdicts(_folder(tmp_path, _rows(seeds=(0,))))
    assert {r["verdict"] for r in got} == {"not measured"}
    assert {r["claim_verdict"] for r in got} == {"not measured"}


def test_trained_as_measures_a_variant_in_place_of_its_defense(tmp_path):
    text = STUDY_3.read_text().replace("[[epsilons]]", "[trained_as]\ngreat = \"great-tuned\"\n\n[[epsilons]]", 1)
    path = tmp_path / "fam.toml"
    path.write_text(text)
    rows = [{**r, "defense": "great-tuned"} if r["defense"] == "great" else r for r in _rows()]
    fam = load_family(path)
    got = family_verdicts(fam, {"small-resnet": _folder(tmp_path, rows)})
    assert all(r["verdict"] != "not measured" for r in got)
    assert next(r for r in got if r["second"] == "great")["diff"] == pytest.approx(100 * (160 - 30) / N)


def test_the_report_says_where_the_family_is_defined_and_its_size(tmp_path):
    fam, got = _verdicts(_folder(tmp_path, _rows()))
    md = family_markdown(fam, got)
    # named from the repository root, the same on every machine (not this checkout's absolute path)
    assert "defined in `bench/families/study-3.toml`" in md and str(STUDY_3) not in md
    assert "Family size: 12 comparisons" in md
    assert "6 comparisons of 4 claims x 1 network(s) x 2 epsilon(s)" in md
    assert f"sha256 {fam.sha256()[:12]}" in md
    made = fam.commit()  # '' outside a git checkout
    assert (f"committed in {made}" if made else "(not committed)") in md
    # a stored notebook leaves the commit out (a shallow clone has another) and keeps the sha256
    bare = family_markdown(fam, got, commit=False)
    assert "committed" not in bare and f"sha256 {fam.sha256()[:12]}" in bare
    assert bare == md.replace(f", committed in {made}" if made else " (not committed)", "")


def _family_naming(tmp_path: Path, folder: Path) -> Path:
    """A copy of the committed family whose network reads ``folder``, in its own family folder."""
    fams = tmp_path / "families"
    fams.mkdir()
    text = STUDY_3.read_text()
    assert 'small-resnet = "results/study-3"' in text
    (fams / "study-3.toml").write_text(text.replace('small-resnet = "results/study-3"', f'small-resnet = "{folder}"'))
    return fams


def test_a_report_into_a_study_folder_writes_its_pre_registered_verdicts(tmp_path):
    """write_report into a folder that a family names: verdicts-FAMILY.md/.csv hold exactly the
    family's verdicts, the per-folder verdicts.md points to them and the page's summary reads
    the family; a folder no family names gets none of it."""
    rows = _rows()
    folder = _folder(tmp_path, rows)
    fams = _family_naming(tmp_path, folder)
    written = write_report(rows, folder, EvalSettings(epsilon=0.0353), quiet=True, family_dir=fams)
    assert folder / "verdicts-study-3.md" in written and folder / "verdicts-study-3.csv" in written
    fam = load_family(fams / "study-3.toml")
    expect = family_verdicts(fam, {"small-resnet": folder})
    got = read_rows(folder / "verdicts-study-3.csv")
    assert [r["verdict"] for r in got] == [r["verdict"] for r in expect] and len(got) == fam.size == 12
    assert [float(r["p_holm"]) for r in got] == pytest.approx([r["p_holm"] for r in expect])
    assert list(got[0]) == FIELDS
    md = (folder / "verdicts-study-3.md").read_text()
    assert md.strip() == family_markdown(fam, expect, commit=False).strip() and "committed in" not in md
    assert "`verdicts-study-3.md`" in (folder / "verdicts.md").read_text()
    assert "one Holm correction over 12 comparisons" in (folder / "verdicts.md").read_text()
    page = (folder / "index.html").read_text()
    assert "Holm over the pre-registered family `study-3` of 12 comparisons" in page
    # the page's summary lines come from the family: a claim judged per network and epsilon
    assert "(small-resnet, 0.1 " in page

    other = _folder(tmp_path, rows, "other")
    written = write_report(rows, other, EvalSettings(epsilon=0.0353), quiet=True, family_dir=fams)
    assert not any("verdicts-" in p.name for p in written) and not (other / "verdicts-study-3.md").exists()
    assert "pre-registered" not in (other / "verdicts.md").read_text()


def test_a_report_judges_another_network_of_the_family_on_its_own_folder(tmp_path, capsys):
    """A family over two networks: a report into one network's folder reads the other network's
    rows from that network's folder; until that folder has rows, it writes no family verdicts."""
    here = tmp_path / "resnet"
    rows = _rows()
    fams = tmp_path / "families"
    fams.mkdir()
    text = STUDY_3.read_text().replace('small-resnet = "results/study-3"',
                                       f'small-resnet = "{here}"\nsmall-cnn = "{tmp_path / "cnn"}"')
    (fams / "two.toml").write_text(text)
    write_rows(here / "robustness.csv", rows, ROW_FIELDS)
    written = write_report(rows, here, EvalSettings(epsilon=0.0353), family_dir=fams)
    assert not any("verdicts-study-3" in p.name for p in written)
    assert "no robustness.csv yet" in capsys.readouterr().out
    # the other network: GREAT no better than the baseline, so GREAT - baseline differs from here
    as_great = [{**r, "defense": "great", "checkpoint_sha256": f"great-cnn{r['seed']}"}
                for r in rows if r["defense"] == "baseline"]
    other = [r for r in rows if r["defense"] != "great"] + as_great
    _folder(tmp_path, other, "cnn")
    write_report(rows, here, EvalSettings(epsilon=0.0353), quiet=True, family_dir=fams)
    fam = load_family(fams / "two.toml")
    expect = family_verdicts(fam, {"small-resnet": here, "small-cnn": tmp_path / "cnn"})
    got = read_rows(here / "verdicts-study-3.csv")
    assert len(got) == fam.size == 24
    assert [r["diff"] for r in got] == [str(r["diff"]) for r in expect]
    cnn = [r for r in got if r["network"] == "small-cnn" and r["second"] == "baseline" and r["first"] == "great"]
    resnet = [r for r in got if r["network"] == "small-resnet" and r["second"] == "baseline" and r["first"] == "great"]
    assert cnn and resnet and all(a["diff"] != b["diff"] for a, b in zip(cnn, resnet))


def test_cli_writes_markdown_and_csv(tmp_path, capsys):
    folder = _folder(tmp_path, _rows())
    out = tmp_path / "out" / "verdicts-family.md"
    assert main(["verdicts", "--family", str(STUDY_3), f"small-resnet={folder}", "--out", str(out)]) == 0
    assert "Family size: 12" in out.read_text()
    assert len(read_rows(out.with_suffix(".csv"))) == 12


# ---------------------------------------------------------------- bad family files

def _bad(tmp_path, old, new, count=1):
    text = STUDY_3.read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, count))
    return path


@pytest.mark.parametrize("old,new,message", [
    ('name = "GREACE alone is robust"', 'name = "GREACE alone is robst"',
     r"claims\[1\].name = 'GREACE alone is robst' is not a known claim of bench/report/claims.py; "
     r"did you mean GREACE alone is robust\?"),
    ('{first = "greace", second = "fgsm-at"', '{first = "greace", second = "fgsm_at"',
     r"claims\[1\].comparisons\[1\].second = 'fgsm_at' is not a known defense; did you mean fgsm-at\?"),
    ('column = "Non-targeted FGSM", sign = "+"},\n]\n\n[[claims]]\nname = "GREACE',
     'column = "Nontargeted FGSM", sign = "+"},\n]\n\n[[claims]]\nname = "GREACE',
     r"claims\[0\].comparisons\[0\].column = 'Nontargeted FGSM' is not a known table column \(attack\); "
     r"did you mean Non-targeted FGSM\?"),
    ('column = "Non-targeted FGSM", sign = "+"}', 'column = "Non-targeted FGSM", sign = "up"}',
     r"sign = 'up' is invalid: \"\+\" \(first above second\) or \"-\""),
    ('alpha = 0.05', 'alpah = 0.05', r"unknown section alpah; did you mean alpha\?"),
    ('small-resnet = "results/study-3"', 'small-resnat = "results/study-3"',
     r"\[networks\] key = 'small-resnat' is not a known model; did you mean small-resnet\?"),
    ('units = "normalized"   #', 'units = "normalised"   #',
     r"epsilons\[0\].units = 'normalised' is invalid: expected one of 'pixel', 'normalized'"),
    ('value = 0.1\nunits = "pixel"', 'value = 0.0353\nunits = "pixel"', r"repeats an epsilon of the family"),
    ('{first = "greace", second = "fgsm-at", column = "Non-targeted iFGSM", sign = "+"},\n', '',
     r"lists other comparisons than bench/report/claims.py defines for it: greace > baseline on Non-targeted iFGSM; "
     r"greace > fgsm-at on Non-targeted iFGSM"),
    ('name = "GREAT adds robustness to single-step attacks"', 'name = "GREAT is the best student in the sparse regime"',
     r"is a distillation claim; a family file holds robustness claims"),
    ('dataset = "fashion-mnist"', 'dataset = "fashion"', r"dataset = 'fashion' is not a known dataset; did you mean"),
])
def test_bad_family_files_are_refused_with_what_is_valid(tmp_path, old, new, message):
    with pytest.raises(BenchError, match=message):
        load_family(_bad(tmp_path, old, new))


def test_missing_pieces_and_folders_are_clear_errors(tmp_path):
    head = STUDY_3.read_text().split("[[claims]]")[0]
    (tmp_path / "noclaims.toml").write_text(head)
    with pytest.raises(BenchError, match="lacks 'claims' \\(it needs name, dataset, networks, epsilons and claims\\)"):
        load_family(tmp_path / "noclaims.toml")
    with pytest.raises(BenchError, match=r"unknown section claimz; did you mean claims\?"):
        load_family(_bad(tmp_path, "[[claims]]", "[[claimz]]", 4))
    with pytest.raises(BenchError, match="not found; the committed ones are in bench/families/"):
        load_family(tmp_path / "nope.toml")
    fam = load_family(STUDY_3)
    with pytest.raises(BenchError, match=r"NETWORK = 'small-cnn' is not a known network of family 'study-3'"):
        parse_folders(["small-cnn=results/study"], fam)
    with pytest.raises(BenchError, match="robustness.csv not found"):
        family_verdicts(fam, {"small-resnet": tmp_path / "empty"})


def test_cli_bad_family_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    folder = _folder(tmp_path, _rows())
    out = tmp_path / "out" / "v.md"
    bad = _bad(tmp_path, 'sign = "+"}', 'sign = "?"}')
    assert main(["verdicts", "--family", str(bad), f"small-resnet={folder}", "--out", str(out)]) == 2
    assert "sign = '?' is invalid" in capsys.readouterr().err
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert main(["verdicts"]) == 2 and "--family" in capsys.readouterr().err


def test_a_nominal_result_is_judged_on_its_holm_p(tmp_path, monkeypatch):
    """GREAT right on 65 of 200 FGSM examples against the baseline's 60 on 3 seeds: p = 0.044 alone,
    Holm p = 0.088 in the family of 12, so "cannot tell", not "holds"."""
    monkeypatch.setitem(LEVELS, "great", (65, 30))
    _, got = _verdicts(_folder(tmp_path, _rows()))
    r = next(r for r in got if (r["first"], r["second"], r["epsilon_pixel"]) == ("great", "baseline", 0.1))
    assert r["p_value"] < 0.05 < r["p_holm"] and r["verdict"] == "cannot tell"


def test_list_names_the_families_and_augmentations():
    from bench.listing import lines
    text = "\n".join(lines())
    assert "verdict families (verdicts --family): bench/families/study-3.toml" in text
    assert "augmentations ([data] augment): none, crop, flip, crop-flip, crop2, crop2-flip" in text
