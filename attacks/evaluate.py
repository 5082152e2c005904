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

import functools
import hashlib
import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from attacks.adversarial_store import collector_for
from attacks.registry import ATTACKS, build_attack, component_specs
from attacks.specs import AttackSpec
from attacks.targets import targets_for
from bench.checkpoint import load_run, load_weights, sha256_file
from bench.data import load_dataset, to_float
from bench.errors import BenchError
from bench.progress import progress
from bench.registry import load_object
from bench.rows import merge_rows, read_rows
from bench.rows import write_rows as _write_rows
from bench.run import versions
from bench.stats import wilson

# Column order of robustness.csv (one row per dataset, defense, seed, attack, norm, epsilon, mode).
ROW_FIELDS = [
    "dataset", "defense", "seed", "attack", "norm", "epsilon", "mode", "accuracy", "ci_low", "ci_high",
    "target_hit_rate", "n", "n_clean_correct", "clean_accuracy", "train_accuracy", "steps", "step_size",
    "restarts", "params", "spec", "eval_seed", "batch_size", "seconds", "max_perturbation", "checkpoint_sha256",
    "data_fingerprint", "source", "torch", "torchattacks", "foolbox", "great_bench", "correct_mask",
]
# Added after the first results were written: older CSVs without them are filled in on read
# (the interval from n and accuracy; the foolbox version as unknown, "").
INTERVAL_FIELDS = ("ci_low", "ci_high")
LATER_FIELDS = (*INTERVAL_FIELDS, "foolbox")
# Slack for float rounding when checking that perturbations stay within epsilon.
TOL = 1e-5


@dataclass
class Subject:
    """One model to evaluate and what identifies it in the rows."""

    model: nn.Module
    defense: str
    seed: int | str
    dataset: str
    sha256: str
    train_accuracy: float | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class EvalSet:
    """The evaluation examples: float images in [0, 1] and labels, on the attack device."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    dataset: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def fingerprint(self, n: int | None = None) -> str:
        n = len(self) if n is None else n
        h = hashlib.sha256()
        h.update((self.x[:n] * 255).round().to(torch.uint8).cpu().numpy().tobytes())
        h.update(self.y[:n].cpu().numpy().astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def pack_mask(correct: torch.Tensor) -> str:
    """Per-example correctness as hex (bit i = example i): lets the masking checks count
    samples that flip back to correct at a larger epsilon, from the CSV alone."""
    return np.packbits(correct.cpu().numpy().astype(np.uint8)).tobytes().hex()


def unpack_mask(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


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


def check_perturbation(adv: torch.Tensor, x: torch.Tensor, spec: AttackSpec) -> float:
    """Adversarial images lie in [0, 1] and within epsilon in the attack's norm; returns the max norm."""
    if adv.shape != x.shape or not torch.isfinite(adv).all():
        raise BenchError(f"{spec.key()}: the attack returned malformed images (shape or non-finite values)")
    if adv.min() < -TOL or adv.max() > 1 + TOL:
        raise BenchError(f"{spec.key()}: adversarial images leave [0, 1] (min {float(adv.min()):.4g}, "
                         f"max {float(adv.max()):.4g})")
    delta = (adv - x).flatten(1)
    norms = delta.abs().amax(1) if spec.norm == "Linf" else delta.norm(dim=1)
    top = float(norms.max()) if len(norms) else 0.0
    if not ATTACKS.get(spec.name).min_norm and top > spec.eps * (1 + 1e-4) + TOL:
        raise BenchError(f"{spec.key()}: perturbation of {spec.norm} norm {top:.6g} exceeds epsilon {spec.eps}")
    return top


def run_attack(model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor,
               targets: torch.Tensor | None, *, num_classes: int, seed: int, batch_size: int,
               keep: torch.Tensor | None = None):
    """Attack the given (clean-correct) examples; return (adversarial predictions, L2/Linf norms).
    ``keep`` (shaped like ``x``) receives each example's adversarial image, from the restart
    that produced its prediction.

    Restarts (PGD) re-attack only the examples every earlier restart failed on. The global
    RNG is seeded per batch and restart, so random starts are reproducible for a given
    seed and batch size.
    """
    atk = build_attack(model, spec, num_classes, seed)
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
        for r in range(spec.restarts):
            torch.manual_seed(seed + 1_000_003 * r + start)
            adv = atk(xb[todo], lab[todo]).detach()
            top = max(top, check_perturbation(adv, xb[todo], spec))
            if keep is not None:
                keep[sl][todo] = adv
            with torch.no_grad():
                p = model(adv).argmax(1)
            pb[todo] = p
            d = (adv - xb[todo]).flatten(1)
            nb[todo] = d.abs().amax(1) if spec.norm == "Linf" else d.norm(dim=1)
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


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    v = versions()
    return {"torch": v["torch"], "torchattacks": v["torchattacks"], "foolbox": v["foolbox"],
            "great_bench": v["great-bench"]}


# What identifies a row: the defense's name and seed are part of it, so two names whose
# checkpoints happen to be equal (a variant that changes nothing in the first epochs) keep
# a row each.
ROW_KEY = ("defense", "seed", "checkpoint_sha256", "spec", "n", "eval_seed", "data_fingerprint")


def with_interval(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its 95% Wilson interval (bench.stats) over its n examples."""
    n = int(row["n"])
    lo, hi = wilson(round(float(row["accuracy"]) * n), n)
    return {**row, "ci_low": round(lo, 6), "ci_high": round(hi, 6)}


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in ROW_KEY)


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Replace a robustness CSV with ``rows`` (atomic; ``merge_rows`` is the shared-file way)."""
    _write_rows(path, rows, ROW_FIELDS)


def evaluate_subject(subject: Subject, data: EvalSet, specs: Sequence[AttackSpec], *, n_test: int | None = None,
                     eval_seed: int = 0, batch_size: int = 500, skip: set[tuple[str, ...]] = frozenset(),
                     on_row=None, on_adversarials=None, quiet: bool = True) -> list[dict[str, Any]]:
    """Rows for one model. ``skip`` holds row keys already computed; ``on_row`` sees each new row;
    ``on_adversarials(spec, example indices, images, predictions, norms)`` each attack run
    (``attacks.adversarial_store``)."""
    model = subject.model
    n_default = min(n_test or len(data), len(data))
    n_of = {s.key(): min(s.n or n_default, len(data)) for s in specs}
    vers = dict(_versions())
    rows: list[dict[str, Any]] = []
    with frozen(model):
        n_max = max(n_of.values(), default=0)
        logits = predict_logits(model, data.x[:n_max], batch_size)
        clean_pred = logits.argmax(1)
        fps = {n: data.fingerprint(n) for n in set(n_of.values())}
        runs: dict[str, tuple] = {}  # run_key -> (preds, norms, top, seconds): CW radii share a run
        for spec in progress(specs, quiet=quiet, desc=subject.defense, leave=False, unit="attack"):
            n = n_of[spec.key()]
            key = (str(subject.defense), str(subject.seed), subject.sha256, spec.key(), str(n), str(eval_seed), fps[n])
            if key in skip:
                continue
            x, y = data.x[:n], data.y[:n]
            correct0 = clean_pred[:n] == y
            targets = targets_for(spec.mode, logits[:n], y, data.num_classes, eval_seed)
            idx = correct0.nonzero().squeeze(1)

            def get_run(s: AttackSpec) -> tuple:
                """One attack run on this n (cached: CW radii, and the parts of a combined entry)."""
                rk = f"{s.run_key()}|n={n}"
                if rk not in runs:
                    if ATTACKS.get(s.name).combines:
                        parts = [get_run(c) for c in component_specs(s)]
                        runs[rk] = (*best_of([r[:3] for r in parts], y[idx]), sum(r[3] for r in parts))
                    else:
                        t0 = time.time()
                        keep = None if on_adversarials is None else torch.empty_like(x[idx])
                        out = run_attack(model, s, x[idx], y[idx], None if targets is None else targets[idx],
                                         num_classes=data.num_classes, seed=eval_seed, batch_size=batch_size,
                                         keep=keep)
                        runs[rk] = (*out, time.time() - t0)
                        if on_adversarials is not None:
                            on_adversarials(s, idx, keep, out[0], out[1])
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
            correct = final == y
            # exact fractions (float32 means would differ from count / n in the last digits)
            hit = "" if targets is None else int(((final == targets) & hit_adv).sum()) / n
            row = {
                "dataset": subject.dataset, "defense": subject.defense, "seed": subject.seed,
                "attack": spec.name, "norm": spec.norm, "epsilon": spec.eps, "mode": spec.mode,
                "accuracy": int(correct.sum()) / n, "target_hit_rate": hit, "n": n,
                "n_clean_correct": int(correct0.sum()), "clean_accuracy": int(correct0.sum()) / n,
                "train_accuracy": "" if subject.train_accuracy is None else subject.train_accuracy,
                "steps": "" if spec.steps is None else spec.steps,
                "step_size": "" if spec.step_size is None else spec.step_size,
                "restarts": spec.restarts, "params": spec.params_json(), "spec": spec.key(),
                "eval_seed": eval_seed, "batch_size": batch_size, "seconds": round(secs, 3),
                "max_perturbation": round(top, 6), "checkpoint_sha256": subject.sha256,
                "data_fingerprint": fps[n], "source": subject.source, **vers, "correct_mask": pack_mask(correct),
            }
            row = with_interval(row)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def evaluate(subjects: Sequence[Subject], data: EvalSet, specs: Sequence[AttackSpec], csv_path: str | Path, *,
             n_test: int | None = None, eval_seed: int = 0, batch_size: int = 500, force: bool = False,
             quiet: bool = True, save_adv: bool = False) -> list[dict[str, Any]]:
    """Evaluate every subject; merge the rows into ``csv_path`` after each row. ``save_adv``:
    also save each model's adversarial examples beside the CSV (``attacks.adversarial_store``);
    a row whose examples are not saved yet is then recomputed.

    Each merge happens under the CSV's file lock (``bench.rows.merge_rows``): any number of
    evaluators sharing the file keep every row; the rewrite itself is atomic.
    """
    csv_path = Path(csv_path)

    def prepare(existing: list[dict[str, str]]) -> list[dict[str, Any]]:
        # Rows written before the later columns existed get them filled in.
        if existing and set(ROW_FIELDS) - set(LATER_FIELDS) <= set(existing[0]) < set(ROW_FIELDS):
            existing = [with_interval({"foolbox": "", **r}) for r in existing]
        if existing and set(existing[0]) != set(ROW_FIELDS):
            raise BenchError(f"{csv_path} has different columns than this version writes; "
                             "move it away or pass another output path")
        return existing

    # A run re-trained since its last evaluation has a new checkpoint: its old rows are superseded.
    current = {(s.dataset, str(s.defense), str(s.seed)): s.sha256 for s in subjects}

    def keep(r: dict[str, Any]) -> bool:
        return current.get((r["dataset"], r["defense"], str(r["seed"])), r["checkpoint_sha256"]) == r["checkpoint_sha256"]

    table = merge_rows(csv_path, [], row_key, ROW_FIELDS, keep=keep, prepare=prepare)
    skip = set() if force else {row_key(r) for r in table}
    rows: list[dict[str, Any]] = []

    def on_row(row: dict[str, Any]) -> None:
        rows.append(row)
        merge_rows(csv_path, [row], row_key, ROW_FIELDS, keep=keep, prepare=prepare)

    for subject in subjects:
        adv = collector_for(csv_path.parent, subject, data, specs, eval_seed) if save_adv else None
        evaluate_subject(subject, data, specs, n_test=n_test, eval_seed=eval_seed, batch_size=batch_size,
                         skip=skip if adv is None else {k for k in skip if adv.covers(k[3])}, on_row=on_row,
                         on_adversarials=adv and adv.on_run, quiet=quiet)
        if adv is not None:
            adv.save()
    return merge_rows(csv_path, [], row_key, ROW_FIELDS, keep=keep, prepare=prepare)


# ---------------------------------------------------------------- loading what to evaluate

def subject_from_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Subject:
    """A finished run directory; ``load_run`` verifies the weights' sha256 against meta.json."""
    model, meta = load_run(run_dir, device)
    return Subject(model, str(meta.get("defense", Path(run_dir).parent.name)), meta.get("seed", ""),
                   str(meta.get("dataset", "")), meta["files"]["model.safetensors"]["sha256"],
                   meta.get("metrics", {}).get("train_acc"), str(run_dir), meta)


def subject_from_factory(factory: str, weights: str | Path, spec, dataset: str, *, name: str | None = None,
                         device: str | torch.device = "cpu") -> Subject:
    """A user-brought model: ``module:factory`` (called with no arguments or with a ModelSpec)
    returning an nn.Module that takes [0, 1] images, plus a safetensors weights file."""
    fn = load_object(factory, "model factory")
    if not callable(fn):
        raise BenchError(f"model factory {factory!r} is not callable")
    try:
        takes_spec = len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        takes_spec = False
    model = fn(spec) if takes_spec else fn()
    if not isinstance(model, nn.Module):
        raise BenchError(f"model factory {factory!r} returned {type(model).__name__}, not an nn.Module")
    load_weights(model, Path(weights))
    return Subject(model.to(device).eval(), name or factory.rpartition(":")[2], "", dataset,
                   sha256_file(Path(weights)), None, f"{factory} {weights}")


def eval_set_for(cfg: dict[str, Any], n_test: int | None, *, data_dir: str | None = None,
                 device: str | torch.device = "cpu", expect_fingerprint: str | None = None) -> EvalSet:
    """The preset's test subset (the same examples the runs were tested on), first ``n_test``."""
    d = cfg["data"]
    test = load_dataset(d["dataset"], "test", data_dir=data_dir, device=device)
    test = test.subset(d.get("test_subset"), seed=int(d.get("subset_seed", 0)))
    if expect_fingerprint and test.fingerprint() != expect_fingerprint:
        raise BenchError(f"the {d['dataset']} test data found now differ from those recorded when the run "
                         "was trained (test_fingerprint in meta.json); evaluate with the same data files")
    n = min(n_test or len(test), len(test))
    return EvalSet(to_float(test.images[:n]), test.labels[:n], test.num_classes, d["dataset"])

