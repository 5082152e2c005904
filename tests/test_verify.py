"""Saved adversarial examples (``evaluate --save-adv``) and ``great-bench verify``.

Two tiny trained runs are attacked with a sweep that has every kind of worst-case cell
(single Linf attacks, several attacks at one epsilon, PGD with restarts, a minimum-norm L2
entry whose one run serves several radii). The saved files are checked independently of ``bench.publish.verify``
(every cell's examples are exactly the clean-correct examples the CSV's masks call broken,
every image inside its ball), then ``verify`` must agree everywhere, and fail with a clear
line on a tampered example, an example that no longer fools the model, a swapped
checkpoint and a model with no saved file.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench.eval.adversarial_store import read_adversarials
from bench.eval.schema import unpack_mask
from bench.eval.subjects import data_of_meta, eval_set_for
from bench.checkpoint import read_meta, sha256_file
from bench.cli import main
from bench.publish.robustbench import model_infos
from bench.publish.verify import verify

pytestmark = pytest.mark.usefixtures("one_thread")

SWEEP = ["none", "fgsm:eps=0.1|0.3", "ifgsm:eps=0.1,n=64", "pgd:eps=0.05,steps=1,restarts=4,n=64",
         "l2min:eps=0.5|1.5,cw_steps=5,cw_search=3,fmn_steps=10,n=32"]


def _evaluate(runs, csv_path: Path, sweep, *extra: str) -> None:
    args = ["evaluate", *map(str, runs), "--preset", "smoke", "--n", "96", "--out", str(csv_path), "--quiet"]
    assert main(args + [a for spec in sweep for a in ("--attack", spec)] + list(extra)) == 0


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_data_dir):
    """(results folder, run dirs): baseline and fgsm-at, one epoch, the sweep with --save-adv
    (through the command line, as a user would)."""
    import bench.data as data

    root = tmp_path_factory.mktemp("verify")
    with pytest.MonkeyPatch.context() as mp:  # the tiny data, as conftest's per-test fixture does
        mp.setattr(data, "DEFAULT_DATA_DIR", tiny_data_dir)
        mp.setattr(data, "_CACHE", {})
        spec = data.DATASETS.get("fashion-mnist")
        mp.setitem(data.DATASETS._items, "fashion-mnist", data.DatasetSpec(**{**spec.__dict__, "debian_dir": None}))
        runs = []
        for defense in ("baseline", "fgsm-at"):
            assert main(["train", "--preset", "smoke", "--defense", defense, "--epochs", "1", "--out",
                         str(root / "runs"), "--quiet"]) == 0
            runs.append(root / "runs" / "fashion-mnist" / defense / "seed0")
        _evaluate(runs, root / "results" / "robustness.csv", SWEEP, "--save-adv")
    return root / "results", runs


def _rows(results: Path) -> list[dict[str, str]]:
    with open(results / "robustness.csv", newline="") as f:
        return list(csv.DictReader(f))


def _copy(results: Path, dest: Path) -> Path:
    shutil.copytree(results, dest)
    return dest


def test_saved_cells_are_exactly_the_broken_examples_and_inside_their_balls(evaluated):
    results, runs = evaluated
    files = sorted((results / "adversarial").rglob("*.safetensors"))
    assert [f.relative_to(results).as_posix() for f in files] == [
        "adversarial/fashion-mnist/baseline/seed0.eval0.safetensors",
        "adversarial/fashion-mnist/fgsm-at/seed0.eval0.safetensors"]
    rows = _rows(results)
    for f, run in zip(files, runs):
        saved = read_adversarials(f)
        mine = [r for r in rows if r["checkpoint_sha256"] == saved.meta["checkpoint_sha256"]]
        assert saved.meta["checkpoint_sha256"] == read_meta(run)["files"]["model.safetensors"]["sha256"]
        assert saved.meta["source"] == str(run)
        data = eval_set_for(data_of_meta(read_meta(run), str(run)), 96)
        clean = [r for r in mine if r["attack"] == "none"][0]
        correct = unpack_mask(clean["correct_mask"], int(clean["n"]))
        cells = {(r["norm"], float(r["epsilon"])) for r in mine if r["attack"] != "none"}
        assert set(saved.cells) == cells == {("Linf", 0.05), ("Linf", 0.1), ("Linf", 0.3), ("L2", 0.5),
                                                 ("L2", 1.5)}
        for (norm, eps), (index, image, attack) in saved.cells.items():
            runs_here = [r for r in mine if r["norm"] == norm and float(r["epsilon"]) == eps]
            n_max = max(int(r["n"]) for r in runs_here)
            broken = set()
            for r in runs_here:
                m = unpack_mask(r["correct_mask"], int(r["n"]))
                broken |= {i for i in range(int(r["n"])) if correct[i] and not m[i]}
            assert set(index.tolist()) == broken, (norm, eps)  # every broken example, only those
            assert all(i < n_max for i in index.tolist()) and len(set(index.tolist())) == len(index)
            delta = (saved.images[image] - data.x[index]).flatten(1)
            dist = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
            assert bool((dist <= eps * (1 + 1e-4) + 1e-5).all()), (norm, eps, float(dist.max()))
            assert saved.images.min() >= 0 and saved.images.max() <= 1
            names = [saved.attacks[a] for a in attack.tolist()]
            assert set(names) <= {f"{r['attack']}/{r['mode']}" for r in runs_here} | {
                "cw/untargeted", "fmn/untargeted", "fmn-warm/untargeted"}  # the parts of l2min
        # the L2 radii share the minimum-norm runs' images: stored once
        small, large = saved.cells[("L2", 0.5)], saved.cells[("L2", 1.5)]
        assert set(small[0].tolist()) <= set(large[0].tolist())
        # the same run's adversarial of an example is one image row in every cell that uses it
        # (another part of l2min may have broken it first at the larger radius)
        shared = {e: (r, a) for e, r, a in zip(*(t.tolist() for t in large))}
        same_run = [(r, shared[e][0]) for e, r, a in zip(*(t.tolist() for t in small)) if shared[e][1] == a]
        assert same_run and all(r == r_large for r, r_large in same_run)


def test_export_names_the_saved_examples(evaluated, tmp_path):
    results, _ = evaluated
    infos = model_infos(results, epsilon=0.1)
    for rel, info in infos.items():
        ev = info["great_bench"]["adversarial_examples"]
        path = results / ev["path"]
        assert path.is_file() and ev["sha256"] == sha256_file(path)
        assert read_adversarials(path).meta["checkpoint_sha256"] == info["great_bench"]["checkpoint_sha256"]


def test_verify_agrees_on_every_worst_case_cell(evaluated, capsys):
    results, _ = evaluated
    checks = verify(results)
    assert len(checks) == 10 and all(c.ok for c in checks), [c.line() for c in checks]
    assert all(c.verified == c.claimed for c in checks)
    assert main(["verify", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.count("agree ") == 10 and "10 of 10 worst-case cells verified" in out
    assert "DISAGREE" not in out and "published numbers: robustness.csv 14 checked" in out


def _rewrite(path: Path, change) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def _cell_key(path: Path, norm: str, eps: float) -> str:
    import json

    with safe_open(str(path), framework="pt") as f:
        cells = json.loads(f.metadata()["cells"])
    return next(c["name"] for c in cells if c["norm"] == norm and c["epsilon"] == eps)


def _to_tamper(evaluated, tmp_path: Path, model: int, eps: float):
    """A copy of the results; the file, its Linf cell's name and the evaluation set of one model."""
    results = _copy(evaluated[0], tmp_path / "r")
    run = evaluated[1][model]
    path = results / "adversarial" / "fashion-mnist" / run.parent.name / "seed0.eval0.safetensors"
    return results, path, _cell_key(path, "Linf", eps), eval_set_for(data_of_meta(read_meta(run), str(run)), 96)


def test_an_example_moved_outside_the_ball_fails(evaluated, tmp_path, capsys):
    results, path, cell, _ = _to_tamper(evaluated, tmp_path, 0, 0.1)

    def push(t, meta):
        row = int(t[f"{cell}/image"][0])
        img = t["images"][row]
        # one pixel 0.2 away from where it was: the image leaves the 0.1 ball
        flat = img.flatten().clone()
        flat[0] = 0.9 if flat[0] < 0.5 else 0.1
        t["images"][row] = flat.view_as(img)
    _rewrite(path, push)
    assert main(["verify", str(results)]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(bad) == 1 and "baseline seed 0 Linf eps 0.1" in bad[0]
    assert "1 saved example(s) outside the Linf ball of 0.1" in bad[0]


def test_an_example_pushed_out_of_the_box_fails(evaluated, tmp_path, capsys):
    results, path, cell, data = _to_tamper(evaluated, tmp_path, 0, 0.3)

    def above_one(t, meta):
        # an example with a bright pixel: 0.05 above it is inside the 0.3 ball but above 1
        j = next(j for j, ex in enumerate(t[f"{cell}/index"].tolist()) if float(data.x[ex].max()) > 0.96)
        ex, row = int(t[f"{cell}/index"][j]), int(t[f"{cell}/image"][j])
        img = data.x[ex].cpu().clone().flatten()
        img[int(img.argmax())] += 0.05
        t["images"][row] = img.view_as(t["images"][row])
    _rewrite(path, above_one)
    assert main(["verify", str(results)]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(bad) == 1 and "baseline seed 0 Linf eps 0.3" in bad[0] and "[0, 1] box" in bad[0]


def test_an_adversarial_that_no_longer_fools_the_model_disagrees(evaluated, tmp_path, capsys):
    results, path, cell, data = _to_tamper(evaluated, tmp_path, 1, 0.3)

    def restore_clean(t, meta):
        ex, row = int(t[f"{cell}/index"][0]), int(t[f"{cell}/image"][0])
        t["images"][row] = data.x[ex].cpu()  # inside the ball, but the clean image: correctly classified
    _rewrite(path, restore_clean)
    checks = verify(results)
    bad = [c for c in checks if not c.ok]
    assert len(bad) == 1 and (bad[0].defense, bad[0].norm, bad[0].epsilon, bad[0].status) == (
        "fgsm-at", "Linf", 0.3, "DISAGREE")
    assert bad[0].verified == bad[0].claimed + 1


def test_a_swapped_checkpoint_fails(evaluated, tmp_path, capsys):
    results, (base, fgsm) = evaluated
    results = _copy(results, tmp_path / "r")
    swapped = tmp_path / "runs" / "baseline"
    shutil.copytree(base, swapped)
    for name in ("model.safetensors", "meta.json"):  # another run's checkpoint, consistent in itself
        shutil.copy(fgsm / name, swapped / name)
    text = (results / "robustness.csv").read_text().replace(str(base), str(swapped))
    (results / "robustness.csv").write_text(text)
    assert main(["verify", str(results)]) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 5 and all("baseline seed 0" in f and "checkpoint swapped" in f for f in fails)
    assert out.count("agree ") == 5  # fgsm-at's cells still verify


def test_a_model_without_saved_examples_is_missing_and_nothing_saved_is_an_error(evaluated, tmp_path, capsys):
    results = _copy(evaluated[0], tmp_path / "r")
    (results / "adversarial" / "fashion-mnist" / "fgsm-at" / "seed0.eval0.safetensors").unlink()
    assert main(["verify", str(results)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("MISSING  fashion-mnist fgsm-at seed 0") for line in lines) == 5
    assert lines[-1] == "5 of 10 worst-case cells verified; 5 not (MISSING)"
    shutil.rmtree(results / "adversarial")
    # nothing saved: the published numbers are still checked against the masks, and it says so
    assert main(["verify", str(results)]) == 0
    out = capsys.readouterr().out
    assert "robustness.csv 14 checked" in out and "all agree" in out
    assert "no saved adversarial examples" in out and "evaluate with --save-adv" in out


def test_rows_evaluated_without_saving_are_recomputed_when_saving(evaluated, tmp_path):
    _, runs = evaluated
    csv_path = tmp_path / "results" / "robustness.csv"
    _evaluate(runs[:1], csv_path, SWEEP[:2])   # no examples saved
    assert not (tmp_path / "results" / "adversarial").exists()
    _evaluate(runs[:1], csv_path, SWEEP[:3], "--save-adv")
    checks = verify(tmp_path / "results")
    assert len(checks) == 2 and all(c.ok for c in checks), [c.line() for c in checks]
    (path,) = (tmp_path / "results" / "adversarial").rglob("*.safetensors")
    before = path.read_bytes()
    _evaluate(runs[:1], csv_path, SWEEP[:3], "--save-adv")  # every row and example kept: nothing rewritten
    assert path.read_bytes() == before


def test_rows_of_another_evaluation_seed_need_their_own_examples(evaluated, tmp_path, capsys):
    results = _copy(evaluated[0], tmp_path / "r")
    _evaluate(evaluated[1][:1], results / "robustness.csv", SWEEP[:2], "--seed", "1")  # not saved
    assert main(["verify", str(results)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("agree ") for line in lines) == 10  # the saved evaluation, unaffected
    missing = [line for line in lines if line.startswith("MISSING")]
    assert len(missing) == 2 and all("baseline seed 0 Linf" in line for line in missing)


def test_examples_of_another_evaluation_data_fail(evaluated, tmp_path, capsys):
    """The file records the fingerprint of the examples it was made on (mutation: verify without
    the data-fingerprint clause agrees)."""
    results, path, _, _ = _to_tamper(evaluated, tmp_path, 0, 0.1)
    _rewrite(path, lambda t, meta: meta.update(data_fingerprint="0123456789abcdef"))
    assert main(["verify", str(results)]) == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 5 and all("baseline seed 0" in f and "evaluation examples differ" in f for f in fails)


def _swap_examples(results: Path, defense: str, norm: str, eps: float, broken: int, robust: int) -> None:
    """In every attack row of one model at (norm, eps), swap the mask bits of two examples:
    each row keeps its count, the worst case keeps its count, but another example is broken."""
    import numpy as np
    from bench.eval.schema import pack_mask

    rows = _rows(results)
    for r in rows:
        if r["defense"] == defense and r["norm"] == norm and float(r["epsilon"]) == eps and r["attack"] != "none":
            m = unpack_mask(r["correct_mask"], int(r["n"])).copy()
            m[[broken, robust]] = m[[robust, broken]]
            r["correct_mask"] = pack_mask(torch.from_numpy(np.ascontiguousarray(m)))
    with open(results / "robustness.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_masks_breaking_as_many_other_examples_disagree(evaluated, tmp_path, capsys):
    """Issue 28 item 8: rows whose masks break as many examples as the saved files, but other
    ones, disagree (mutation: comparing only how many agrees)."""
    from bench.report.worst_case import worst_case_rows

    results, path, _, _ = _to_tamper(evaluated, tmp_path, 1, 0.1)  # fgsm-at: robust examples exist
    rows = _rows(results)
    (w,) = [r for r in worst_case_rows(rows) if r["defense"] == "fgsm-at" and r["norm"] == "Linf"
            and r["epsilon"] == 0.1]
    n = int(w["n"])
    robust = unpack_mask(w["correct_mask"], n)
    clean = [r for r in rows if r["defense"] == "fgsm-at" and r["attack"] == "none"][0]
    correct = unpack_mask(clean["correct_mask"], int(clean["n"]))
    index = read_adversarials(path).cells[("Linf", 0.1)][0].tolist()
    a = next(i for i in index if i < n and correct[i])      # broken by a saved example
    b = next(i for i in range(n) if robust[i])               # robust under every attack there
    _swap_examples(results, "fgsm-at", "Linf", 0.1, a, b)
    assert main(["verify", str(results)]) == 1
    out = capsys.readouterr().out
    assert "published numbers" in out and "all agree" in out  # every count is unchanged
    bad = [line for line in out.splitlines() if line.startswith("DISAGREE")]
    assert len(bad) == 1 and "fgsm-at seed 0 Linf eps 0.1" in bad[0], out
    assert "same count, other examples" in bad[0] and "on 2 example(s)" in bad[0]
    assert f"({min(a, b)}, {max(a, b)})" in bad[0]


def test_two_evaluation_seeds_keep_two_files(evaluated, tmp_path, capsys):
    """Saving at evaluation seed 1 keeps seed 0's file (mutation: the path without the evaluation
    seed replaces it, and seed 0's cells fail); the export names the file of its numbers' seed."""
    results = _copy(evaluated[0], tmp_path / "r")
    first = results / "adversarial" / "fashion-mnist" / "baseline" / "seed0.eval0.safetensors"
    before = first.read_bytes()
    _evaluate(evaluated[1][:1], results / "robustness.csv", SWEEP[:2], "--seed", "1", "--save-adv")
    second = first.with_name("seed0.eval1.safetensors")
    assert first.read_bytes() == before and read_adversarials(second).meta["eval_seed"] == "1"
    assert main(["verify", str(results)]) == 0
    out = capsys.readouterr().out
    assert "12 of 12 worst-case cells verified" in out, out
    infos = model_infos(results, epsilon=0.1)
    base = next(i for i in infos.values() if i["great_bench"]["defense"] == "baseline")
    seed = base["great_bench"]["eval_seed"]
    assert base["great_bench"]["adversarial_examples"]["path"].endswith(f"seed0.eval{seed}.safetensors")


def test_files_named_before_the_evaluation_seed_are_still_read(evaluated, tmp_path, capsys):
    results = _copy(evaluated[0], tmp_path / "r")
    for f in (results / "adversarial").rglob("*.eval0.safetensors"):
        f.rename(f.with_name(f.name.replace(".eval0", "")))
    assert main(["verify", str(results)]) == 0
    assert "10 of 10 worst-case cells verified" in capsys.readouterr().out
    info = next(iter(model_infos(results, epsilon=0.1).values()))
    assert info["great_bench"]["adversarial_examples"]["path"].endswith("/seed0.safetensors")


def test_a_folder_made_by_evaluate_describes_itself(evaluated, tmp_path, capsys):
    """Issue 28 item 3: evaluate writes settings.json, so report, export and verify need no
    --preset on a folder not named after one (mutations: evaluate not writing it; export or
    report not reading it). The generated report then verifies number by number (item 1)."""
    import json

    results = _copy(evaluated[0], tmp_path / "mine")
    record = json.loads((results / "settings.json").read_text())
    assert record["preset"] == "smoke" and record["config"]["eval"]["n_test"] == 96
    assert record["config"]["eval"]["save_adv"] is True
    assert main(["report", "--results", str(results), "--quiet"]) == 0
    assert {"table.csv", "table.md", "worst_case.csv"} <= {p.name for p in results.iterdir()}
    assert main(["export", "--format", "robustbench", str(results), str(tmp_path / "out"), "--quiet"]) == 0
    info = json.loads((tmp_path / "out" / "fashion-mnist" / "Linf" / "fgsm-at_seed0.json").read_text())
    assert info["architecture"] == "small-cnn" and "preset smoke" in info["footnote"]
    capsys.readouterr()
    assert main(["verify", str(results), "--export", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "DISAGREE" not in out and "10 of 10 worst-case cells verified" in out
    published = next(line for line in out.splitlines() if line.startswith("published numbers"))
    for f in ("robustness.csv", "worst_case.csv 10", "table.csv", "table.md", "fgsm-at_seed0.json 1"):
        assert f in published, published
    # an older folder without the file and not named after a preset: a clear error
    (results / "settings.json").unlink()
    assert main(["export", "--format", "robustbench", str(results), str(tmp_path / "out2")]) == 2
    assert "has no settings.json" in capsys.readouterr().err and not (tmp_path / "out2").exists()
