"""Independent Linf attacks against a sweep's worst case.

An attack is only as strong as the strongest independent attack that agrees with it. Two attacks
here share no code with the harness (``attacks/``): foolbox's ``LinfPGD`` (Madry et al. 2018:
cross-entropy, random start) and projected gradient ascent on the logit margin
``max_{j != y} z_j - z_y`` (the loss of Carlini & Wagner 2017), written below. An example is
independently robust when it survives both. Against the worst case over the sweep's attacks at
the same epsilon and on the same first ``n`` examples, the check counts the examples the
independent attacks break that the worst case left robust (the sweep's deficit: it should be 0)
and the converse (how much the sweep adds).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import foolbox as fb
import torch
from torch import nn

from bench.csv_files import lock_for, read_rows, write_rows
from bench.eval.schema import unpack_mask
from bench.eval.subjects import EvalSet, Subject, data_of_meta, eval_set_for, subject_from_run
from bench.report.worst_case import worst_case_rows
from bench.train import resolve_device
from core.errors import BenchError

# The defaults of every entry point (the command's too): AutoAttack's n in the studies, and a
# budget at which both attacks reach the closed-form optimum of a linear model.
N, STEPS, RESTARTS = 200, 100, 2

FIELDS = ["dataset", "defense", "seed", "checkpoint_sha256", "norm", "epsilon", "n", "worst_case_attacks",
          "worst_case_robust", "foolbox_pgd_robust", "margin_pgd_robust", "independent_robust",
          "broken_beyond_worst_case", "worst_case_beyond_independent", "steps", "restarts", "seconds"]


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example, the largest other logit minus the true one: > 0 exactly when misclassified."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], -math.inf).amax(1)
    return other - true


def margin_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = STEPS,
               restarts: int = RESTARTS, generator: torch.Generator | None = None) -> torch.Tensor:
    """Robust mask under sign-gradient ascent on ``margin_loss`` within the Linf ball of ``eps``
    and the [0, 1] box: a uniform random start per restart, step eps/4, quartered at half-way."""
    robust = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for _ in range(restarts):
        delta = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps
        delta = (x + delta).clamp(0, 1) - x
        step = eps / 4
        for t in range(steps):
            delta.requires_grad_(True)
            loss = margin_loss(model(x + delta), y).sum()
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + step * grad.sign()).clamp(-eps, eps)
                delta = (x + delta).clamp(0, 1) - x
            if t + 1 == steps // 2:
                step /= 4
        with torch.no_grad():
            robust &= model(x + delta).argmax(1) == y
    return robust


def foolbox_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = STEPS,
                restarts: int = RESTARTS) -> torch.Tensor:
    """Robust mask under foolbox's LinfPGD (its own step rule, cross-entropy), ``restarts`` runs."""
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    robust = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for _ in range(restarts):
        _, _, success = fb.attacks.LinfPGD(steps=steps, rel_stepsize=0.025, random_start=True)(
            fmodel, x, y, epsilons=eps)
        robust &= ~success
    return robust


def worst_case_mask(rows: Sequence[dict[str, Any]], subject: Subject, eps: float) -> tuple[torch.Tensor, int]:
    """The sweep's per-example worst case at Linf ``eps`` for this checkpoint, and how many attacks."""
    mine = [r for r in rows if r.get("checkpoint_sha256") == subject.sha256]
    if not mine:
        raise BenchError(f"{subject.defense} seed {subject.seed}: no row of robustness.csv comes from this checkpoint "
                         f"(sha256 {subject.sha256[:12]}); the folder was evaluated on other weights: cross-check the "
                         "runs that made it, or evaluate these first (`great-bench evaluate`)")
    hits = [w for w in worst_case_rows(mine) if w["norm"] == "Linf" and math.isclose(w["epsilon"], eps, rel_tol=1e-6)]
    if not hits:
        at = sorted({float(w["epsilon"]) for w in worst_case_rows(mine) if w["norm"] == "Linf"})
        raise BenchError(f"{subject.defense} seed {subject.seed}: no Linf worst case at epsilon {eps:g} in the rows "
                         f"(this checkpoint has Linf attacks at {', '.join(f'{e:g}' for e in at) or 'no epsilon'})")
    w = hits[0]
    return torch.from_numpy(unpack_mask(w["correct_mask"], int(w["n"])).astype(bool)), int(w["n_attacks"])


def crosscheck(subject: Subject, data: EvalSet, rows: Sequence[dict[str, Any]], epsilons: Sequence[float], *,
               n: int = N, steps: int = STEPS, restarts: int = RESTARTS, seed: int = 0) -> list[dict[str, Any]]:
    """One row (``FIELDS``) per epsilon: the worst case against the two independent attacks on the
    first ``n`` examples (fewer when the worst case covers fewer)."""
    model = subject.model.eval()
    out = []
    for eps in epsilons:
        worst, attacks = worst_case_mask(rows, subject, eps)
        k = min(n, len(worst), len(data))
        worst = worst[:k]
        x, y = data.x[:k], data.y[:k]
        start = time.perf_counter()
        generator = torch.Generator(device=x.device).manual_seed(seed)
        fb_robust = foolbox_pgd(model, x, y, eps, steps=steps, restarts=restarts).cpu()
        mg_robust = margin_pgd(model, x, y, eps, steps=steps, restarts=restarts, generator=generator).cpu()
        both = fb_robust & mg_robust
        out.append({"dataset": subject.dataset, "defense": subject.defense, "seed": subject.seed,
                    "checkpoint_sha256": subject.sha256, "norm": "Linf", "epsilon": eps, "n": k,
                    "worst_case_attacks": attacks, "worst_case_robust": int(worst.sum()),
                    "foolbox_pgd_robust": int(fb_robust.sum()), "margin_pgd_robust": int(mg_robust.sum()),
                    "independent_robust": int(both.sum()), "broken_beyond_worst_case": int((worst & ~both).sum()),
                    "worst_case_beyond_independent": int((both & ~worst).sum()), "steps": steps,
                    "restarts": restarts, "seconds": round(time.perf_counter() - start, 2)})
    return out


def run_crosscheck(results: str | Path, runs: Sequence[str | Path], epsilons: Sequence[float], *, n: int = N,
                   steps: int = STEPS, restarts: int = RESTARTS, data_dir: str | None = None, device: str | None = None,
                   quiet: bool = False) -> Path:
    """Cross-check each run in ``runs`` at each epsilon against ``results/robustness.csv`` and
    merge the rows into ``results/crosscheck.csv`` (a re-checked checkpoint and epsilon replaces
    its row; written atomically under the file's lock)."""
    results = Path(results)
    rows = read_rows(results / "robustness.csv")
    if not rows:
        raise BenchError(f"{results}/robustness.csv not found or empty: cross-check a folder written by "
                         "`great-bench run` or `evaluate`")
    if not runs:
        raise BenchError("give the run directories to cross-check (--runs runs/<preset>/<dataset>/<defense>/seed<S>)")
    if not epsilons or any(not e > 0 for e in epsilons):
        raise BenchError(f"epsilons {list(epsilons)} are invalid: one or more Linf radii > 0, in pixels, at which "
                         "the rows hold a worst case")
    if n < 1 or steps < 1 or restarts < 1:
        raise BenchError(f"n={n}, steps={steps}, restarts={restarts}: each must be at least 1")
    dev = resolve_device(device)
    new = []
    for run in runs:
        subject = subject_from_run(run, dev)
        data = eval_set_for(data_of_meta(subject.meta, str(run)), n, data_dir=data_dir, device=dev,
                            expect_fingerprint=subject.meta.get("test_fingerprint"))
        for row in crosscheck(subject, data, rows, epsilons, n=n, steps=steps, restarts=restarts):
            new.append(row)
            if not quiet:
                print(f"{row['defense']} seed {row['seed']} Linf {row['epsilon']:g}: worst case {row['worst_case_robust']}"
                      f"/{row['n']}, independent {row['independent_robust']}, broken beyond the worst case "
                      f"{row['broken_beyond_worst_case']} ({row['seconds']:.0f} s)", flush=True)
    out = results / "crosscheck.csv"
    done = {(r["checkpoint_sha256"], float(r["epsilon"])) for r in new}
    with lock_for(out):
        kept = [r for r in read_rows(out) if (r["checkpoint_sha256"], float(r["epsilon"])) not in done]
        write_rows(out, kept + new, FIELDS)
    return out
