"""Transfer attack: adversarial examples made on one source model, evaluated on the others.

The cheapest strong check against gradient masking (Athalye, Carlini & Wagner, ICML 2018,
section 3.1; Carlini et al. 2019, "On evaluating adversarial robustness", section 4.4): a
defense whose gradients are broken can still be fooled by examples made with the clean
gradients of an undefended model of the same data. The source is the run named by
``eval.transfer_source`` (the ``baseline``) of the same dataset and training seed; the
attack is the registry's ``transfer`` entry (PGD with a random start at the table's
epsilon, or MI-FGSM with ``momentum`` > 0) run on the source, on every one of the first n
evaluation examples.

The examples are made once per (source checkpoint, spec, n, evaluation seed, examples) and
reused for every target. A target is scored as in the harness: its clean errors stay
errors, its clean-correct examples are classified from the source's adversarials. The source
never evaluates its own examples (that would be a white-box PGD): it has no transfer row.
Rows carry ``transfer_from`` ("<defense> seed <k> <sha256 prefix>") and join the Linf worst
case like any attack row (``bench.report.worst_case``).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from attacks.harness import frozen, predict_logits, run_attack
from attacks.perturbation import perturbation_norms
from attacks.registry import ATTACKS
from attacks.specs import AttackSpec
from bench.config.eval_settings import EvalSettings
from bench.eval.evaluate import attack_row
from bench.eval.schema import subject_row_key, transfer_label
from bench.eval.subjects import EvalSet, Subject


def transfer_specs(specs: Sequence[AttackSpec]) -> list[AttackSpec]:
    """The entries of a sweep that are transfer attacks."""
    return [s for s in specs if ATTACKS.get(s.name).transfer]


def find_source(target: Subject, candidates: Sequence[Subject], source: str) -> Subject | None:
    """The run of defense ``source`` with the target's dataset and seed among ``candidates``."""
    return next((c for c in candidates if str(c.defense) == source and c.dataset == target.dataset
                 and str(c.seed) == str(target.seed)), None)


class TransferAttack:
    """The transfer examples of one source model, made on first use and kept for every target."""

    def __init__(self, source: Subject, batch_size: int = EvalSettings.batch_size):
        self.source, self.batch_size = source, batch_size
        self.label = transfer_label(str(source.defense), source.seed, source.sha256)
        # (spec, n, eval seed, examples' fingerprint) -> (images, perturbation norms, seconds)
        self._examples: dict[tuple[str, int, int, str], tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.generated = 0  # how many example sets were made (the rest were reused)

    def serves(self, target: Subject) -> bool:
        """Whether ``target`` gets transfer rows from this source: same dataset and seed, and
        not the source itself (same weights: its own examples would be white-box)."""
        return (target.dataset == self.source.dataset and str(target.seed) == str(self.source.seed)
                and target.sha256 != self.source.sha256)

    def current(self, row: dict[str, Any]) -> bool:
        """False for a transfer row this source should have made but another checkpoint made
        (the source was retrained): that row is superseded and recomputed."""
        return (not row.get("transfer_from") or row["dataset"] != self.source.dataset
                or str(row["seed"]) != str(self.source.seed) or row["transfer_from"] == self.label)

    def examples(self, spec: AttackSpec, data: EvalSet, n: int, eval_seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(adversarial images, their perturbation norms, seconds it took: 0 when reused) for
        the first ``n`` examples of ``data``, made on the source."""
        key = (spec.key(), n, eval_seed, data.fingerprint(n))
        if key in self._examples:
            adv, norms, _ = self._examples[key]
            return adv, norms, 0.0
        t0 = time.time()
        x, y = data.x[:n], data.y[:n]
        adv = torch.empty_like(x)
        with frozen(self.source.model):
            run_attack(self.source.model, spec, x, y, None, num_classes=data.num_classes, seed=eval_seed,
                       batch_size=self.batch_size, images_out=adv)  # checks the box and the eps-ball per batch
        norms = perturbation_norms(adv - x, spec.norm)
        self._examples[key] = (adv, norms, time.time() - t0)
        self.generated += 1
        return adv, norms, self._examples[key][2]

    def rows(self, target: Subject, data: EvalSet, specs: Sequence[AttackSpec], *, n_test: int | None = None,
             eval_seed: int = EvalSettings.seed, batch_size: int = EvalSettings.batch_size, skip: set[tuple[str, ...]] = frozenset(),
             on_row: Callable[[dict], None] | None = None, on_adversarials=None) -> list[dict[str, Any]]:
        """The transfer rows of one target (none when it is not served). ``seconds`` is the
        target's forward passes plus the source's generation, counted on the first row that
        used the examples, so the column sums to the real cost. ``skip`` and ``on_row``,
        ``on_adversarials`` as in ``bench.eval.evaluate.evaluate_subject``."""
        if not self.serves(target):
            return []
        rows = []
        with frozen(target.model):
            for spec in transfer_specs(specs):
                n = data.examples_for(spec.n, n_test)
                fp = data.fingerprint(n)
                if subject_row_key(target, spec.key(), n, eval_seed, fp) in skip:
                    continue
                adv, norms, generation_seconds = self.examples(spec, data, n, eval_seed)
                t0 = time.time()
                y = data.y[:n]
                pred = predict_logits(target.model, data.x[:n], batch_size).argmax(1)
                correct0 = pred == y
                idx = correct0.nonzero().squeeze(1)  # clean errors stay errors, as in the harness
                pred[idx] = predict_logits(target.model, adv[idx], batch_size).argmax(1)
                largest = float(norms[idx].max()) if len(idx) else 0.0
                row = attack_row(target, spec, pred == y, correct0, target_hit_rate="", eval_seed=eval_seed,
                                 batch_size=batch_size, seconds=generation_seconds + time.time() - t0, max_perturbation=largest,
                                 data_fingerprint=fp, transfer_from=self.label)
                rows.append(row)
                if on_adversarials is not None:
                    on_adversarials(spec, idx, adv[idx], pred[idx], norms[idx])
                if on_row is not None:
                    on_row(row)
        return rows
