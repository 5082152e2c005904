"""The attack harness: every model under one protocol, results as tidy CSV rows.

Protocol (DESIGN.md, "Evaluation protocol"): models in eval mode and fp32, gradients on the
input only; clean predictions computed once per model; points misclassified clean are not
attacked (they count as errors); attacks run in batches on the examples still correct;
targets for targeted modes come from ``attacks.targets`` and are handed to torchattacks'
by-label mode. Every adversarial batch is checked to lie in [0, 1] and within epsilon.
The reported number is accuracy on the true label (the paper's metric); targeted rows also
carry the target-hit rate. Rows are written atomically after every attack, so an
interrupted evaluation keeps what it finished; rows already present for the same
checkpoint sha256, spec, examples and seed are skipped unless ``force``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn

from attacks.adversarial_store import collector_for
from attacks.perturbation import TOL, check_perturbation, perturbation_norms
from attacks.autoattack import composed_with
from attacks.layout import attack_layout
from attacks.registry import ATTACKS, build_attack, component_specs
from attacks.row_schema import (ATTACK, CASCADE, ROW_FIELDS, pack_mask, row_key, row_versions, subject_row_key, unpack_mask,
                                upgrade_rows, with_interval)
from attacks.specs import AttackSpec
from attacks.subjects import EvalSet, Subject
from attacks.targets import targets_for
from bench.errors import BenchError
from bench.progress import progress
from bench.rows import merge_rows


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """fp32, eval mode, no parameter gradients (attacks differentiate w.r.t. the input only)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


def run_attack(model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor,
               targets: torch.Tensor | None, *, num_classes: int, seed: int, batch_size: int,
               keep: torch.Tensor | None = None, build=None):
    """Attack the given (clean-correct) examples; return (adversarial predictions, L2/Linf norms).
    ``build(model, spec, num_classes, seed)`` replaces the registry's builder (a composed attack).
    ``keep`` (shaped like ``x``) receives each example's adversarial image, from the restart
    that produced its prediction.

    Restarts (PGD) re-attack only the examples every earlier restart failed on. The global
    RNG is seeded per batch and restart, so random starts are reproducible for a given
    seed and batch size.
    """
    atk = build(model, spec, num_classes, seed) if build else build_attack(model, spec, num_classes, seed)
    preds = torch.empty_like(y)
    norms = torch.zeros(len(y), device=x.device)
    top = 0.0
    for start in range(0, len(y), batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = x[sl], y[sl]
        lab = targets[sl] if targets is not None else yb
        todo = torch.arange(len(yb), device=x.device)
        pb = yb.clone()
        nb = torch.zeros(len(yb), device=x.device)
        # an attack that restarts itself (APGD) is called once
        for r in range(1 if ATTACKS.get(spec.name).own_restarts else spec.restarts):
            torch.manual_seed(seed + 1_000_003 * r + start)
            adv = atk(xb[todo], lab[todo]).detach()
            top = max(top, check_perturbation(adv, xb[todo], spec))
            if keep is not None:
                keep[sl][todo] = adv
            with torch.no_grad():
                p = model(adv).argmax(1)
            pb[todo] = p
            nb[todo] = perturbation_norms(adv - xb[todo], spec.norm)
            todo = todo[p == yb[todo]]
            if len(todo) == 0:
                break
        preds[sl], norms[sl] = pb, nb
    if model.training:
        raise BenchError(f"{spec.key()}: the model was left in training mode by the attack")
    return preds, norms, top


def best_of(runs: Sequence[tuple[torch.Tensor, torch.Tensor, float]], y: torch.Tensor):
    """Per example, the smallest adversarial perturbation over several minimum-norm runs.

    Each run is (predictions, L2 norms, max norm) on the same examples. An example is broken
    by a run iff its prediction differs from the true label; the combined run keeps the
    smallest such norm (inf and the true label where no run broke it), so at every radius
    an example counts as robust only if no run found an adversarial within that radius.
    """
    preds = torch.stack([p for p, _, _ in runs])                   # (runs, examples)
    norms = torch.stack([d for _, d, _ in runs]).clone()
    norms[preds == y] = torch.inf
    d, which = norms.min(0)
    p = torch.where(torch.isfinite(d), preds.gather(0, which[None]).squeeze(0), y)
    top = float(d[torch.isfinite(d)].max()) if bool(torch.isfinite(d).any()) else 0.0
    return p, d, top


def attack_row(subject: Subject, spec: AttackSpec, correct: torch.Tensor, correct0: torch.Tensor, *,
               target_hit_rate: float | str, eval_seed: int, batch_size: int, seconds: float,
               max_perturbation: float, data_fingerprint: str, transfer_from: str = "", cascade_after: str = "",
               n_attacked: int | str = "", components: str = "") -> dict[str, Any]:
    """One robustness.csv row (``ROW_FIELDS``) from the per-example correctness under attack
    (``correct``) and without (``correct0``) on the first n examples, with its Wilson interval."""
    n = len(correct)
    row = {
        "dataset": subject.dataset, "defense": subject.defense, "seed": subject.seed,
        "attack": spec.name, "norm": spec.norm, "epsilon": spec.eps, "epsilon_units": spec.units, "mode": spec.mode,
        "accuracy": int(correct.sum()) / n, "target_hit_rate": target_hit_rate, "n": n,
        "n_clean_correct": int(correct0.sum()), "clean_accuracy": int(correct0.sum()) / n,
        "train_accuracy": "" if subject.train_accuracy is None else subject.train_accuracy,
        "steps": "" if spec.steps is None else spec.steps,
        "step_size": "" if spec.step_size is None else spec.step_size,
        "restarts": spec.restarts, "params": spec.params_json(), "spec": spec.key(),
        "eval_seed": eval_seed, "batch_size": batch_size, "seconds": round(seconds, 3),
        "max_perturbation": round(max_perturbation, 6), "checkpoint_sha256": subject.sha256,
        "data_fingerprint": data_fingerprint, "source": subject.source, "transfer_from": transfer_from,
        **row_versions(), "correct_mask": pack_mask(correct), "cascade_after": cascade_after, "n_attacked": n_attacked,
        "kind": CASCADE if spec.cascade else ATTACK, "components": components,
    }
    return with_interval(row)


def cascade_inputs(specs: Sequence[AttackSpec], n_of: dict[str, int]) -> dict[str, list[AttackSpec]]:
    """For each cascade spec, the specs of this sweep it follows: every other per-model attack
    at its norm and epsilon on at least its examples, plain attacks in sweep order and then the
    cascades before it. Derived from the sweep alone (issue 27), so a fresh ``run`` and a later
    ``evaluate`` give a cascade the same inputs, whatever rows the CSV happens to hold:
    transfer rows (made after every job, on another model) and rows of attacks not in the sweep
    never feed it; the Linf worst case (``bench.worst_case``) joins them all afterwards."""
    order = sorted(specs, key=lambda s: s.cascade)  # stable: plain attacks first
    out: dict[str, list[AttackSpec]] = {}
    for i, spec in enumerate(order):
        if spec.cascade:
            out[spec.key()] = [s for s in order[:i] if s.name != "none" and s.norm == spec.norm
                               and round(s.eps, 9) == round(spec.eps, 9) and n_of[s.key()] >= n_of[spec.key()]
                               and not ATTACKS.get(s.name).transfer]
    return out


def attack_label(spec: AttackSpec) -> str:
    """How ``cascade_after`` names an earlier attack."""
    return f"{spec.name}/{spec.mode}"


def evaluate_subject(subject: Subject, data: EvalSet, specs: Sequence[AttackSpec], *, n_test: int | None = None,
                     eval_seed: int = 0, batch_size: int = 500, skip: set[tuple[str, ...]] = frozenset(),
                     known: Sequence[dict[str, Any]] = (), on_row=None, on_adversarials=None,
                     quiet: bool = True) -> list[dict[str, Any]]:
    """Rows for one model. ``skip`` holds row keys already computed; ``known`` are rows of this
    model computed earlier (the skipped ones feed the cascade); ``on_row`` sees each new row;
    ``on_adversarials(spec, example indices, images, predictions, norms)`` each attack run
    (``attacks.adversarial_store``).

    A ``cascade`` spec runs after the other specs (cascades in sweep order) and attacks only the
    clean-correct examples that every attack of ``cascade_inputs`` left correct; an example one
    of them broke counts as broken, so its row (kind ``cascade``) is the per-example worst case
    over those attacks and itself (``cascade_after`` names them, ``n_attacked`` counts the
    examples it attacked). A skipped cascade row whose inputs differ from the sweep's is
    recomputed. Standard AutoAttack after a standard APGD-CE+T row runs only its FAB-T and
    Square parts (``attacks.autoattack.composed_with``): its APGD parts already ran there.
    """
    model = subject.model
    # transfer attacks are made on another model: attacks.transfer evaluates them (via ``evaluate``)
    specs = [s for s in specs if not ATTACKS.get(s.name).transfer]
    if not specs:
        return []
    n_default = min(n_test or len(data), len(data))
    n_of = {s.key(): min(s.n or n_default, len(data)) for s in specs}
    inputs = cascade_inputs(specs, n_of)
    rows: list[dict[str, Any]] = []
    specs = sorted(specs, key=lambda s: s.cascade)  # stable: the cascade sees every other row first
    with frozen(model), attack_layout(model, data.x) as images:
        data = replace(data, x=images)  # same values, the faster layout (attacks.layout)
        n_max = max(n_of.values(), default=0)
        logits = predict_logits(model, data.x[:n_max], batch_size)
        clean_pred = logits.argmax(1)
        fps = {n: data.fingerprint(n) for n in set(n_of.values())}
        masks: dict[str, torch.Tensor] = {}  # spec key -> per-example correctness of its row

        def remember(r: dict[str, Any]) -> None:
            if r.get("correct_mask"):
                n_r = int(r["n"])
                masks[r["spec"]] = torch.from_numpy(unpack_mask(r["correct_mask"], n_r)).to(clean_pred.device)

        keys = {s.key(): subject_row_key(subject, s.key(), n_of[s.key()], eval_seed, fps[n_of[s.key()]])
                for s in specs}
        # Earlier rows of this checkpoint and examples, by row key: a skipped spec's row feeds
        # the cascades after it. A recomputed spec is remembered once, from its new row.
        earlier = {row_key(r): r for r in known if r["checkpoint_sha256"] == subject.sha256
                   and str(r["eval_seed"]) == str(eval_seed) and r["data_fingerprint"] == data.fingerprint(int(r["n"]))}
        runs: dict[str, tuple] = {}  # run_key -> (preds, norms, top, seconds): CW radii share a run
        computed: set[str] = set()  # spec keys whose rows this call computed
        for spec in progress(specs, quiet=quiet, desc=subject.defense, leave=False, unit="attack"):
            n = n_of[spec.key()]
            key = keys[spec.key()]
            before = inputs.get(spec.key(), [])
            after = " ".join(sorted(attack_label(s) for s in before))
            old = earlier.get(key)
            # a cascade row stands only if its inputs are the sweep's and none was computed anew
            # here: an input spec changed (say APGD's targets) keeps its label but not its mask
            same_inputs = not spec.cascade or (old is not None and old.get("cascade_after", "") == after
                                               and not any(s.key() in computed for s in before))
            if key in skip and (old is None or same_inputs):
                if old is not None:
                    remember(old)
                continue
            x, y = data.x[:n], data.y[:n]
            correct0 = clean_pred[:n] == y
            targets = targets_for(spec.mode, logits[:n], y, data.num_classes, eval_seed)
            alive = correct0.clone()
            for s in before:
                if s.key() in masks:
                    alive &= masks[s.key()][:n]
            idx = alive.nonzero().squeeze(1)
            composed = composed_with(spec, before, data.num_classes) if spec.cascade else None

            def get_run(s: AttackSpec) -> tuple:
                """One attack run on this n (cached: CW radii, and the parts of a combined entry)."""
                rk = f"{s.run_key()}|n={n}" + (f"|after={composed.stood_in.key()}" if composed and s is spec else "")
                if rk not in runs:
                    if ATTACKS.get(s.name).combines:
                        parts = [get_run(c) for c in component_specs(s)]
                        runs[rk] = (*best_of([r[:3] for r in parts], y[idx]), sum(r[3] for r in parts))
                    else:
                        t0 = time.time()
                        images = None if on_adversarials is None else torch.empty_like(x[idx])
                        out = run_attack(model, s, x[idx], y[idx], None if targets is None else targets[idx],
                                         num_classes=data.num_classes, seed=eval_seed, batch_size=batch_size,
                                         keep=images, build=composed.build if composed and s is spec else None)
                        runs[rk] = (*out, time.time() - t0)
                        if on_adversarials is not None:
                            on_adversarials(s, idx, images, out[0], out[1])
                return runs[rk]

            p, d, top, secs = get_run(spec)
            final = clean_pred[:n].clone()
            final[idx] = p
            hit_adv = torch.ones(n, dtype=torch.bool, device=y.device)
            if ATTACKS.get(spec.name).min_norm:
                # One minimum-norm run: an example is broken at radius eps iff the attack
                # found an adversarial example no farther than eps.
                within = torch.zeros(n, dtype=torch.bool, device=y.device)
                within[idx] = d <= spec.eps + TOL
                final = torch.where(within | ~correct0, final, y)
                hit_adv = within | ~correct0
                top = float(d[d <= spec.eps + TOL].max()) if bool((d <= spec.eps + TOL).any()) else 0.0
            correct = (final == y) & alive  # an example an earlier attack of the cascade broke stays broken
            # exact fractions (float32 means would differ from count / n in the last digits)
            hit = "" if targets is None else int(((final == targets) & hit_adv).sum()) / n
            row = attack_row(subject, spec, correct, correct0, target_hit_rate=hit, eval_seed=eval_seed,
                             batch_size=batch_size, seconds=secs, max_perturbation=top, data_fingerprint=fps[n],
                             cascade_after=after, n_attacked=int(len(idx)),
                             components=composed.describe() if composed else "")
            rows.append(row)
            computed.add(spec.key())
            remember(row)
            if on_row is not None:
                on_row(row)
    return rows


def evaluate(subjects: Sequence[Subject], data: EvalSet, specs: Sequence[AttackSpec], csv_path: str | Path, *,
             n_test: int | None = None, eval_seed: int = 0, batch_size: int = 500, force: bool = False,
             quiet: bool = True, save_adv: bool = False, transfer=None) -> list[dict[str, Any]]:
    """Evaluate every subject; merge the rows into ``csv_path`` after each row. ``save_adv``:
    also save each model's adversarial examples beside the CSV (``attacks.adversarial_store``);
    a row whose examples are not saved yet is then recomputed. ``transfer``: an
    ``attacks.transfer.TransferAttack`` that adds the transfer rows of the subjects it serves
    (without it the sweep's transfer entries are left out); its rows from an older source
    checkpoint are superseded.

    Each merge happens under the CSV's file lock (``bench.rows.merge_rows``): any number of
    evaluators sharing the file keep every row; the rewrite itself is atomic.
    """
    csv_path = Path(csv_path)

    def prepare(existing: list[dict[str, str]]) -> list[dict[str, Any]]:
        return upgrade_rows(csv_path, existing)

    # A run re-trained since its last evaluation has a new checkpoint: its old rows are superseded.
    current = {(s.dataset, str(s.defense), str(s.seed)): s.sha256 for s in subjects}

    def keep(r: dict[str, Any]) -> bool:
        return (current.get((r["dataset"], r["defense"], str(r["seed"])), r["checkpoint_sha256"]) == r["checkpoint_sha256"]
                and (transfer is None or transfer.current(r)))

    table = merge_rows(csv_path, [], row_key, ROW_FIELDS, keep=keep, prepare=prepare)
    skip = set() if force else {row_key(r) for r in table}
    rows: list[dict[str, Any]] = []

    def on_row(row: dict[str, Any]) -> None:
        rows.append(row)
        merge_rows(csv_path, [row], row_key, ROW_FIELDS, keep=keep, prepare=prepare)

    for subject in subjects:
        adv = collector_for(csv_path.parent, subject, data, specs, eval_seed) if save_adv else None
        done = skip if adv is None else {k for k in skip if adv.covers(k[3])}
        evaluate_subject(subject, data, specs, n_test=n_test, eval_seed=eval_seed, batch_size=batch_size,
                         skip=done, known=[r for r in table if r["checkpoint_sha256"] == subject.sha256],
                         on_row=on_row, on_adversarials=adv and adv.on_run, quiet=quiet)
        if transfer is not None:
            transfer.rows(subject, data, specs, n_test=n_test, eval_seed=eval_seed, batch_size=batch_size,
                          skip=done, on_row=on_row, on_adversarials=adv and adv.on_run)
        if adv is not None:
            adv.save()
    return merge_rows(csv_path, [], row_key, ROW_FIELDS, keep=keep, prepare=prepare)

