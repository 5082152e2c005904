"""Worst case over attacks, per example: robust accuracy at one (norm, epsilon).

An example counts as robust only if it stays correctly classified under every attack (and
every targeted mode) the sweep ran at that norm and epsilon, the number AutoAttack's
authors ask users to report (Croce & Hein 2020) instead of a per-attack figure. It is
computed from the per-example correctness masks stored in robustness.csv. Attacks may run
on different numbers of examples; each runs on the first n of the same evaluation set, so
the examples common to all of them are the first min(n) and the worst case is taken over
those: its n is the smallest n of the attacks at that epsilon (often AutoAttack's).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from bench.eval.schema import WORST_CASE, pack_mask, robust_on_all
from bench.stats import wilson

# The attack name of the derived rows (never a registered attack).
WORST = "worst-case"


def _group_key(r: dict) -> tuple[str, ...]:
    # one model and one evaluation set: masks index the same examples
    return tuple(str(r[k]) for k in ("dataset", "defense", "seed", "checkpoint_sha256", "eval_seed"))


def worst_case_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model and (norm, epsilon > 0) at which any attack ran: accuracy over the
    examples that survive every attack there, with n, the attacks taken and a 95% Wilson interval.
    A (norm, epsilon) where some attack row carries no mask is left out (nothing to combine)."""
    groups: dict[tuple, dict[tuple[str, float], dict[str, dict]]] = {}
    for r in rows:
        if r["attack"] in ("none", WORST) or float(r["epsilon"]) <= 0:
            continue
        at = groups.setdefault(_group_key(r), {}).setdefault((str(r["norm"]), float(r["epsilon"])), {})
        at[str(r["spec"])] = r  # the same spec twice: the later row wins, as in the tables
    out = []
    for key, by_eps in groups.items():
        for (norm, eps), specs in sorted(by_eps.items()):
            runs = list(specs.values())
            if any(not r.get("correct_mask") for r in runs):
                continue
            robust, n = robust_on_all(runs)
            k = int(robust.sum())
            lo, hi = wilson(k, n)
            first = runs[0]
            out.append({
                "dataset": first["dataset"], "defense": first["defense"], "seed": first["seed"],
                "attack": WORST, "kind": WORST_CASE, "norm": norm, "epsilon": eps, "mode": "all", "accuracy": k / n,
                "ci_low": round(lo, 6), "ci_high": round(hi, 6), "n": n, "n_attacks": len(runs),
                "attacks": " ".join(sorted(f"{r['attack']}/{r['mode']}" for r in runs)),
                "train_accuracy": "", "checkpoint_sha256": first["checkpoint_sha256"],
                "eval_seed": first["eval_seed"], "spec": f"{WORST}:norm={norm},eps={eps:g}",
                "correct_mask": pack_mask(torch.from_numpy(robust)),
            })
    return out


WORST_FIELDS = ["dataset", "defense", "seed", "norm", "epsilon", "accuracy", "ci_low", "ci_high", "n",
                "n_attacks", "attacks", "checkpoint_sha256"]
