"""``great-bench verify``: check a claimed worst-case accuracy from its saved adversarial
examples with one forward pass, without rerunning any attack (RobustBench's requirement for
external evaluations, issues #199 and #200).

For every model with a file under ``<results>/adversarial/`` (``bench.eval.adversarial_store``):
the checkpoint named in the rows' ``source`` column must have the sha256 the examples were
made for; the evaluation set must have the recorded fingerprint; every saved image must lie
in [0, 1] and within its cell's epsilon of its clean example (Linf or L2). Then, per
worst-case cell (norm, epsilon) of ``worst_case.csv`` (the AND of the per-attack correctness
masks, ``bench.report.worst_case``), the verified accuracy is the share of its n examples that the
model classifies correctly clean and that no valid saved adversarial of that cell fools.
It agrees when the rows' worst-case mask marks exactly the same examples robust (not only
the same number of them).

Before that, every number the folder publishes (robustness.csv, worst_case.csv, table.csv,
table.md, exported RobustBench files given with ``--export``) is recomputed from the rows'
per-example masks (``bench.publish.published``); a folder without saved examples gets those checks only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from bench.eval.adversarial_store import FOLDER, read_adversarials
from attacks.harness import frozen, predict_logits
from attacks.perturbation import TOL, ball_limit, perturbation_norms
from bench.eval.schema import unpack_mask
from bench.eval.subjects import data_of_meta, eval_set_for
from bench.report import results as frames
from bench.checkpoint import load_run, read_meta, sha256_file
from core.errors import BenchError
from bench.config.eval_settings import EvalSettings
from bench.config.folder_settings import settings_for
from bench.publish.published import check_folder
from bench.train import resolve_device
from bench.report.worst_case import WORST


@dataclass
class CellCheck:
    dataset: str
    defense: str
    seed: str
    norm: str
    epsilon: float
    n: int
    claimed: int
    verified: int | None   # None: the file or checkpoint could not be checked
    status: str            # agree | DISAGREE | FAIL | MISSING
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "agree"

    def line(self) -> str:
        got = "not checked" if self.verified is None else f"{self.verified}/{self.n} ({100 * self.verified / self.n:.2f}%)"
        text = (f"{self.status:<8} {self.dataset} {self.defense} seed {self.seed or '-'} {self.norm} "
                f"eps {self.epsilon:g}: claimed {self.claimed}/{self.n} ({100 * self.claimed / self.n:.2f}%), "
                f"verified {got}")
        return text + (f": {self.detail}" if self.detail else "")


def _outside(adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: outside the [0, 1] box or the eps-ball around x (with the harness's rounding
    slack), and its distance."""
    dist = perturbation_norms(adv - x, norm)
    limit = ball_limit(eps)
    box = (adv.flatten(1).amin(1) < -TOL) | (adv.flatten(1).amax(1) > 1 + TOL)
    return (dist > limit) | box, dist


def _model_cells(worst: pd.DataFrame, status: str, detail: str) -> list[CellCheck]:
    return [CellCheck(r["dataset"], r["defense"], "" if pd.isna(r["seed"]) else str(r["seed"]), r["norm"],
                      float(r["epsilon"]), int(r["n"]), round(float(r["accuracy"]) * int(r["n"])), None, status,
                      detail) for _, r in worst.iterrows()]


def verify_file(path: Path, worst: pd.DataFrame, source: str, *, data_dir: str | None = None,
                device: torch.device | str = "cpu") -> list[CellCheck]:
    """One model's saved file against its worst-case rows (``worst``) and its run directory."""
    saved = read_adversarials(path)
    sha = saved.meta["checkpoint_sha256"]
    run = Path(source)
    if not (run / "meta.json").is_file():
        return _model_cells(worst, "FAIL", f"cannot load the checkpoint: {run} is not a run directory "
                                           "(run verify from the folder the rows' source paths are relative to)")
    weights = run / "model.safetensors"
    found = sha256_file(weights) if weights.is_file() else "missing"
    if found != sha:
        return _model_cells(worst, "FAIL", f"checkpoint swapped: {weights} has sha256 {found[:12]}..., the "
                                           f"examples in {path} were saved for {sha[:12]}...")
    model, meta = load_run(run, device)
    n_all = int(saved.meta["n"])
    data = eval_set_for(data_of_meta(meta, str(run)), n_all, data_dir=data_dir, device=device,
                        expect_fingerprint=meta.get("test_fingerprint"))
    if len(data) < n_all or data.fingerprint(n_all) != saved.meta["data_fingerprint"]:
        return _model_cells(worst, "FAIL", f"the evaluation examples differ from those the file was made on "
                                           f"(fingerprint {saved.meta['data_fingerprint']})")
    with frozen(model):
        clean = predict_logits(model, data.x[:n_all], EvalSettings.batch_size).argmax(1).cpu() == data.y[:n_all].cpu()
        # the one forward pass over every saved adversarial (shared by the cells that use it)
        adv_pred = predict_logits(model, saved.images.to(device), EvalSettings.batch_size).argmax(1).cpu()
    x, y = data.x[:n_all].cpu(), data.y[:n_all].cpu()
    return [check_cell(r, saved, path, x, y, clean, adv_pred) for _, r in worst.iterrows()]


def check_cell(r: pd.Series, saved, path: Path, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
               adv_pred: torch.Tensor) -> CellCheck:
    """One worst-case row against the saved examples of its (norm, epsilon): the count and the
    per-example mask it claims, from the model's predictions on them (``adv_pred``, one per saved
    image; ``clean``, per example, correct without attack)."""
    norm, eps, n = r["norm"], float(r["epsilon"]), int(r["n"])
    check = CellCheck(r["dataset"], r["defense"], "" if pd.isna(r["seed"]) else str(r["seed"]), norm, eps, n,
                      round(float(r["accuracy"]) * n), None, "FAIL")
    cell = saved.cells.get((norm, eps))
    if cell is None:
        check.detail = f"{path} holds no examples for this cell"
        return check
    index, image, _ = cell
    in_first_n = index < n
    index, image = index[in_first_n], image[in_first_n]
    bad, dist = _outside(saved.images[image], x[index], norm, eps)
    broken = torch.zeros(n, dtype=torch.bool)
    valid = ~bad
    broken[index[valid]] = adv_pred[image[valid]] != y[index[valid]]
    robust = clean[:n] & ~broken
    check.verified = int(robust.sum())
    # which examples, not only how many: the published mask against the saved examples
    published = torch.from_numpy(unpack_mask(r["correct_mask"], n)) if r.get("correct_mask") else None
    differ = (published != robust).nonzero().squeeze(1).tolist() if published is not None else []
    if bool(bad.any()):
        j = int(bad.nonzero().squeeze(1)[dist[bad].argmax()])  # the farthest offender
        check.detail = (f"{int(bad.sum())} saved example(s) outside the {norm} ball of {eps:g} or the [0, 1] "
                        f"box (example {int(index[j])}: distance {float(dist[j]):.4g}); not counted")
    elif check.verified != check.claimed:
        check.status = "DISAGREE"
        check.detail = (f"the saved adversarials fool the model on {int(broken.sum())} example(s); the claim needs "
                        f"{int(clean[:n].sum()) - check.claimed}")
    elif differ:
        check.status = "DISAGREE"
        shown = ", ".join(map(str, differ[:5])) + (", ..." if len(differ) > 5 else "")
        check.detail = (f"same count, other examples: the rows' masks and the saved examples differ on "
                        f"{len(differ)} example(s) ({shown})")
    else:
        check.status = "agree"
    return check


def verify(results: str | Path, *, data_dir: str | None = None, device: str | None = None) -> list[CellCheck]:
    """Every worst-case cell of the results folder, checked against the saved examples; a model
    with no file gives MISSING lines. Raises BenchError when nothing was saved at all."""
    results = Path(results)
    files = sorted((results / FOLDER).rglob("*.safetensors"))
    if not files:
        raise BenchError(f"no saved adversarial examples under {results / FOLDER}; evaluate with --save-adv "
                         "(or eval.save_adv = true in the preset) first")
    df = frames.load(results)
    worst = df[df["attack"] == WORST]
    dev = resolve_device(device)
    # one model and evaluation set: what one file covers
    keys = pd.DataFrame({"defense": worst["defense"], "seed": worst["seed"].astype(str).replace("<NA>", ""),
                         "sha": worst["checkpoint_sha256"], "eval_seed": worst["eval_seed"].astype(str)})
    out: list[CellCheck] = []
    seen: set[tuple[str, ...]] = set()
    for path in files:
        meta = read_adversarials(path).meta
        key = (meta["defense"], meta["seed"], meta["checkpoint_sha256"], meta["eval_seed"])
        mine = worst[(keys == list(key)).all(axis=1)]
        if mine.empty or key in seen:  # re-trained since; or an older-named file of a model already checked
            continue
        seen.add(key)
        rows = df[(df["checkpoint_sha256"] == key[2]) & (df["attack"] != WORST)]
        out += verify_file(path, mine, rows["source"].iloc[0], data_dir=data_dir, device=dev)
    for key, g in worst.groupby([keys[c] for c in keys.columns], sort=False):
        if tuple(key) not in seen:
            out += _model_cells(g, "MISSING", "no saved adversarial examples for this model and evaluation "
                                              "seed (evaluate it with --save-adv)")
    return out


def run_verify(results: str | Path, *, data_dir: str | None = None, device: str | None = None,
               exports: Sequence[str | Path] = (), cw_radius: float = 1.0) -> int:
    """``great-bench verify``: every published number against the rows' masks (``bench.publish.published``:
    a DISAGREE line each), then every worst-case cell against the saved examples (a line per
    cell, a summary); 0 when everything agrees, else 1."""
    results = Path(results)
    frames._csv_path(results)  # a clear error when there are no rows
    try:  # the table's CW radius when the folder says what made it (table.csv names it otherwise)
        cw_radius = settings_for(results).eval.cw_radius
    except BenchError:
        pass
    published = check_folder(results, cw_radius=cw_radius, exports=[Path(e) for e in exports])
    for d in published.disagreements:
        print(d.line())
    for note in published.notes:
        print(f"note: {note}")
    counted = ", ".join(f"{f} {k}" for f, k in published.checked.items())
    print(f"published numbers: {counted or 'none'} checked against the rows' per-example masks; "
          + (f"{len(published.disagreements)} disagree" if published.disagreements else "all agree"))
    if not sorted((results / FOLDER).rglob("*.safetensors")):
        print(f"no saved adversarial examples under {results / FOLDER}: the worst-case cells were not checked "
              "against examples (evaluate with --save-adv, or eval.save_adv = true, to check them)")
        return 1 if published.disagreements else 0
    checks = verify(results, data_dir=data_dir, device=device)
    for c in checks:
        print(c.line())
    bad = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(bad)} of {len(checks)} worst-case cells verified"
          + (f"; {len(bad)} not ({', '.join(sorted({c.status for c in bad}))})" if bad else ""))
    return 1 if bad or not checks or published.disagreements else 0
