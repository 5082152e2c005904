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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from attacks.autoattack import Composed, composed_with
from attacks.harness import best_of, frozen, predict_logits, run_attack
from attacks.layout import attack_layout
from attacks.perturbation import within_radius
from attacks.registry import ATTACKS, component_specs
from attacks.specs import AttackSpec
from attacks.targets import targets_for
from bench.config.eval_settings import EvalSettings
from bench.csv_files import merge_rows
from bench.eval.adversarial_store import collector_for
from bench.eval.schema import (ATTACK, CASCADE, ROW_FIELDS, pack_mask, row_key, row_versions, subject_row_key, unpack_mask,
                               upgrade_rows, with_interval)
from bench.eval.subjects import EvalSet, Subject
from bench.progress import progress


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
    never feed it; the Linf worst case (``bench.report.worst_case``) joins them all afterwards."""
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


@dataclass(frozen=True)
class SweepPlan:
    """What one model's sweep runs: its per-model specs (plain attacks first, then the cascades
    in sweep order, so a cascade sees every other row first), how many examples each runs on,
    and each cascade's inputs (``cascade_inputs``)."""

    specs: list[AttackSpec]
    n_of: dict[str, int]
    inputs: dict[str, list[AttackSpec]]


def plan_sweep(specs: Sequence[AttackSpec], data: EvalSet, n_test: int | None) -> SweepPlan:
    # transfer attacks are made on another model: bench.eval.transfer evaluates them (via ``evaluate``)
    specs = [s for s in specs if not ATTACKS.get(s.name).transfer]
    n_of = {s.key(): data.examples_for(s.n, n_test) for s in specs}
    return SweepPlan(sorted(specs, key=lambda s: s.cascade), n_of, cascade_inputs(specs, n_of))


@dataclass(frozen=True)
class UnderAttack:
    """One spec's attack on a model: the first ``n`` examples, which of them were correct clean
    (``correct0``) and which it attacks (``alive``: clean-correct and left correct by every
    input of a cascade; ``idx`` their indices), their targets, and the composed AutoAttack
    that stands in for parts already run (``attacks.autoattack.composed_with``)."""

    spec: AttackSpec
    x: torch.Tensor
    y: torch.Tensor
    correct0: torch.Tensor
    alive: torch.Tensor
    idx: torch.Tensor
    targets: torch.Tensor | None
    composed: Composed | None

    @property
    def n(self) -> int:
        return len(self.y)


def under_attack(spec: AttackSpec, data: EvalSet, n: int, logits: torch.Tensor, before: Sequence[AttackSpec],
                 masks: dict[str, torch.Tensor], eval_seed: int) -> UnderAttack:
    """What ``spec`` attacks on the first ``n`` examples; ``masks`` are the per-example
    correctness of the rows known so far (spec key -> mask)."""
    y = data.y[:n]
    correct0 = logits[:n].argmax(1) == y
    alive = correct0.clone()
    for s in before:
        if s.key() in masks:
            alive &= masks[s.key()][:n]
    composed = composed_with(spec, before, data.num_classes) if spec.cascade else None
    return UnderAttack(spec, data.x[:n], y, correct0, alive, alive.nonzero().squeeze(1),
                       targets_for(spec.mode, logits[:n], y, data.num_classes, eval_seed), composed)


class AttackRuns:
    """The attack runs of one model, cached by run key: the radii of a minimum-norm attack
    share one run, and the parts of a combined entry are runs of their own. A run is
    (predictions, norms, largest norm, seconds) on the attacked examples. ``on_adversarials``
    as in ``evaluate_subject``."""

    def __init__(self, model: torch.nn.Module, num_classes: int, eval_seed: int, batch_size: int,
                 on_adversarials: Callable | None):
        self.model, self.num_classes, self.eval_seed, self.batch_size = model, num_classes, eval_seed, batch_size
        self.on_adversarials = on_adversarials
        self.cache: dict[str, tuple] = {}

    def get(self, s: AttackSpec, target: UnderAttack) -> tuple:
        composed = target.composed if s is target.spec else None
        rk = f"{s.run_key()}|n={target.n}" + (f"|after={composed.stood_in.key()}" if composed else "")
        if rk not in self.cache:
            if ATTACKS.get(s.name).combines:
                parts = [self.get(c, target) for c in component_specs(s)]
                self.cache[rk] = (*best_of([r[:3] for r in parts], target.y[target.idx]), sum(r[3] for r in parts))
            else:
                self.cache[rk] = self._run(s, target, composed)
        return self.cache[rk]

    def _run(self, s: AttackSpec, target: UnderAttack, composed: Composed | None) -> tuple:
        t0 = time.time()
        idx = target.idx
        images = None if self.on_adversarials is None else torch.empty_like(target.x[idx])
        out = run_attack(self.model, s, target.x[idx], target.y[idx],
                         None if target.targets is None else target.targets[idx], num_classes=self.num_classes,
                         seed=self.eval_seed, batch_size=self.batch_size, images_out=images,
                         build=composed.build if composed else None)
        run = (*out, time.time() - t0)
        if self.on_adversarials is not None:
            self.on_adversarials(s, idx, images, out[0], out[1])
        return run


def score(target: UnderAttack, clean_pred: torch.Tensor, run: tuple) -> tuple[torch.Tensor, float | str, float]:
    """(per-example correctness under attack, target-hit rate, largest perturbation) of a run.
    An example an earlier attack of the cascade broke stays broken."""
    spec, n, y = target.spec, target.n, target.y
    preds, norms, largest, _ = run
    final = clean_pred[:n].clone()
    final[target.idx] = preds
    hit_adv = torch.ones(n, dtype=torch.bool, device=y.device)
    if ATTACKS.get(spec.name).min_norm:
        # One minimum-norm run: an example is broken at radius eps iff the attack
        # found an adversarial example no farther than eps.
        within = torch.zeros(n, dtype=torch.bool, device=y.device)
        inside = within_radius(norms, spec.eps)
        within[target.idx] = inside
        final = torch.where(within | ~target.correct0, final, y)
        hit_adv = within | ~target.correct0
        largest = float(norms[inside].max()) if bool(inside.any()) else 0.0
    correct = (final == y) & target.alive
    # exact fractions (float32 means would differ from count / n in the last digits)
    hit = "" if target.targets is None else int(((final == target.targets) & hit_adv).sum()) / n
    return correct, hit, largest


def stands(spec: AttackSpec, old: dict[str, Any] | None, after: str, before: Sequence[AttackSpec],
           computed: set[str]) -> bool:
    """Whether a row already computed for ``spec`` stands. A cascade row stands only if its
    inputs are the sweep's and none was computed anew here: an input spec changed (say APGD's
    targets) keeps its label but not its mask."""
    if old is None or not spec.cascade:
        return True
    return old.get("cascade_after", "") == after and not any(s.key() in computed for s in before)


def earlier_rows(subject: Subject, data: EvalSet, known: Sequence[dict[str, Any]], eval_seed: int) -> dict:
    """Earlier rows of this checkpoint and examples, by row key: a skipped spec's row feeds the
    cascades after it. A recomputed spec is remembered once, from its new row."""
    return {row_key(r): r for r in known if r["checkpoint_sha256"] == subject.sha256
            and str(r["eval_seed"]) == str(eval_seed) and r["data_fingerprint"] == data.fingerprint(int(r["n"]))}


def evaluate_subject(subject: Subject, data: EvalSet, specs: Sequence[AttackSpec], *, n_test: int | None = None,
                     eval_seed: int = EvalSettings.seed, batch_size: int = EvalSettings.batch_size,
                     skip: set[tuple[str, ...]] = frozenset(), known: Sequence[dict[str, Any]] = (), on_row=None,
                     on_adversarials=None, quiet: bool = True) -> list[dict[str, Any]]:
    """Rows for one model. ``skip`` holds row keys already computed; ``known`` are rows of this
    model computed earlier (the skipped ones feed the cascade); ``on_row`` sees each new row;
    ``on_adversarials(spec, example indices, images, predictions, norms)`` each attack run
    (``bench.eval.adversarial_store``).

    A ``cascade`` spec runs after the other specs (cascades in sweep order) and attacks only the
    clean-correct examples that every attack of ``cascade_inputs`` left correct; an example one
    of them broke counts as broken, so its row (kind ``cascade``) is the per-example worst case
    over those attacks and itself (``cascade_after`` names them, ``n_attacked`` counts the
    examples it attacked). A skipped cascade row whose inputs differ from the sweep's is
    recomputed (``stands``). Standard AutoAttack after a standard APGD-CE+T row runs only its
    FAB-T and Square parts (``attacks.autoattack.composed_with``): its APGD parts already ran there.
    """
    plan = plan_sweep(specs, data, n_test)
    if not plan.specs:
        return []
    rows: list[dict[str, Any]] = []
    model = subject.model
    with frozen(model), attack_layout(model, data.x) as images:
        data = replace(data, x=images)  # same values, the faster layout (attacks.layout)
        logits = predict_logits(model, data.x[:max(plan.n_of.values())], batch_size)
        clean_pred = logits.argmax(1)
        fps = {n: data.fingerprint(n) for n in set(plan.n_of.values())}
        masks: dict[str, torch.Tensor] = {}  # spec key -> per-example correctness of its row
        earlier = earlier_rows(subject, data, known, eval_seed)
        runs = AttackRuns(model, data.num_classes, eval_seed, batch_size, on_adversarials)
        computed: set[str] = set()  # spec keys whose rows this call computed
        for spec in progress(plan.specs, quiet=quiet, desc=subject.defense, leave=False, unit="attack"):
            n = plan.n_of[spec.key()]
            key = subject_row_key(subject, spec.key(), n, eval_seed, fps[n])
            before = plan.inputs.get(spec.key(), [])
            after = " ".join(sorted(attack_label(s) for s in before))
            old = earlier.get(key)
            if key in skip and stands(spec, old, after, before, computed):
                if old is not None:
                    remember(masks, old, clean_pred.device)
                continue
            target = under_attack(spec, data, n, logits, before, masks, eval_seed)
            run = runs.get(spec, target)
            correct, hit, largest = score(target, clean_pred, run)
            row = attack_row(subject, spec, correct, target.correct0, target_hit_rate=hit, eval_seed=eval_seed,
                             batch_size=batch_size, seconds=run[3], max_perturbation=largest,
                             data_fingerprint=fps[n], cascade_after=after, n_attacked=int(len(target.idx)),
                             components=target.composed.describe() if target.composed else "")
            rows.append(row)
            computed.add(spec.key())
            remember(masks, row, clean_pred.device)
            if on_row is not None:
                on_row(row)
    return rows


def remember(masks: dict[str, torch.Tensor], row: dict[str, Any], device: torch.device) -> None:
    """Keep a row's per-example correctness (its ``correct_mask``) under its spec key."""
    if row.get("correct_mask"):
        masks[row["spec"]] = torch.from_numpy(unpack_mask(row["correct_mask"], int(row["n"]))).to(device)


def evaluate(subjects: Sequence[Subject], data: EvalSet, specs: Sequence[AttackSpec], csv_path: str | Path, *,
             n_test: int | None = None, eval_seed: int = EvalSettings.seed, batch_size: int = EvalSettings.batch_size,
             force: bool = False,
             quiet: bool = True, save_adv: bool = False, transfer=None) -> list[dict[str, Any]]:
    """Evaluate every subject; merge the rows into ``csv_path`` after each row. ``save_adv``:
    also save each model's adversarial examples beside the CSV (``bench.eval.adversarial_store``);
    a row whose examples are not saved yet is then recomputed. ``transfer``: an
    ``bench.eval.transfer.TransferAttack`` that adds the transfer rows of the subjects it serves
    (without it the sweep's transfer entries are left out); its rows from an older source
    checkpoint are superseded.

    Each merge happens under the CSV's file lock (``bench.csv_files.merge_rows``): any number of
    evaluators sharing the file keep every row; the rewrite itself is atomic.
    """
    csv_path = Path(csv_path)

    def prepare(existing: list[dict[str, str]]) -> list[dict[str, Any]]:
        return upgrade_rows(csv_path, existing)

    # A run re-trained since its last evaluation has a new checkpoint: its old rows are superseded.
    current = {(s.dataset, str(s.defense), str(s.seed)): s.sha256 for s in subjects}

    def is_current(r: dict[str, Any]) -> bool:
        return (current.get((r["dataset"], r["defense"], str(r["seed"])), r["checkpoint_sha256"]) == r["checkpoint_sha256"]
                and (transfer is None or transfer.current(r)))

    table = merge_rows(csv_path, [], row_key, ROW_FIELDS, keep=is_current, prepare=prepare)
    skip = set() if force else {row_key(r) for r in table}
    rows: list[dict[str, Any]] = []

    def on_row(row: dict[str, Any]) -> None:
        rows.append(row)
        merge_rows(csv_path, [row], row_key, ROW_FIELDS, keep=is_current, prepare=prepare)

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
    return merge_rows(csv_path, [], row_key, ROW_FIELDS, keep=is_current, prepare=prepare)

