"""Saved adversarial examples: per model and worst-case cell (norm, epsilon), the adversarial
image that broke each broken example, so anyone can check a claimed accuracy with one
forward pass (``bench.publish.verify``) instead of rerunning the attacks.

The harness hands every attack run it computes to ``SubjectAdversarials.on_run`` (the
attacked example indices, the adversarial images, their predictions and perturbation
norms). A run serves the cells of the sweep entries that use it: its own (norm, epsilon),
or, for a minimum-norm run (CW, FMN, and the parts of ``l2min``), every radius of the
entries sharing it, where an example counts as broken at radius eps iff its minimal
adversarial lies within eps (as in ``bench.eval.evaluate``). Per cell the first adversarial
that broke an example is kept; the worst case over attacks is then "clean-correct and in no
cell list", the same as the AND of the correctness masks (``bench.report.worst_case``).

One safetensors file per model and evaluation seed (never a pickle), ``<results>/adversarial/
<dataset>/<defense>/seed<k>.eval<e>.safetensors`` (files named ``seed<k>.safetensors``, from
before the name carried the evaluation seed, are still read): ``images`` (float32, each adversarial once, shared by the cells that
use it), per cell ``cell<i>/index`` (example index in the evaluation set), ``cell<i>/image``
(row of ``images``) and ``cell<i>/attack`` (index into the ``attacks`` list of the
metadata); metadata: the checkpoint's sha256, the run directory, the evaluation seed and
data fingerprint, the cells and the sweep entries the file covers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from attacks.perturbation import within_radius
from attacks.registry import ATTACKS, component_specs
from attacks.specs import AttackSpec
from core.atomic import atomic_path
from core.errors import BenchError

FORMAT = "great-bench-adversarial/1"
FOLDER = "adversarial"


def adversarial_path(results: Path, dataset: str, defense: str, seed: Any, sha256: str, eval_seed: Any) -> Path:
    """Where a model's examples at one evaluation seed go: by defense, seed and evaluation seed
    (a user's model: by checkpoint), so that evaluating at another seed keeps the first file."""
    return _legacy_path(results, dataset, defense, seed, sha256).with_suffix(f".eval{eval_seed}.safetensors")


def _legacy_path(results: Path, dataset: str, defense: str, seed: Any, sha256: str) -> Path:
    """The name files had before it carried the evaluation seed (``seed<k>.safetensors``)."""
    name = f"seed{seed}" if str(seed) != "" else sha256[:16]
    return Path(results) / FOLDER / dataset / str(defense).replace("/", "_").replace(":", "_") / f"{name}.safetensors"


def existing_adversarial_path(results: Path, dataset: str, defense: str, seed: Any, sha256: str,
                              eval_seed: Any) -> Path | None:
    """The file holding this checkpoint's examples at this evaluation seed: today's name, else
    the older name when that file was made for the same checkpoint and evaluation seed."""
    path = adversarial_path(results, dataset, defense, seed, sha256, eval_seed)
    if path.is_file():
        return path
    old = _legacy_path(results, dataset, defense, seed, sha256)
    if old.is_file():
        meta = read_adversarials(old).meta
        if (meta["checkpoint_sha256"], meta["eval_seed"]) == (sha256, str(eval_seed)):
            return old
    return None


class SubjectAdversarials:
    """Collects one model's adversarial examples during its evaluation, then writes them."""

    def __init__(self, path: Path, *, subject, specs: Sequence[AttackSpec], labels: torch.Tensor, eval_seed: int,
                 data_fingerprint: str):
        self.path, self.labels = Path(path), labels
        self.results = self.path.parents[3]  # <results>/adversarial/<dataset>/<defense>/<file>
        self.meta = {"format": FORMAT, "dataset": str(subject.dataset), "defense": str(subject.defense),
                     "seed": str(subject.seed), "checkpoint_sha256": subject.sha256, "source": str(subject.source),
                     "eval_seed": str(eval_seed), "data_fingerprint": data_fingerprint, "n": str(len(labels))}
        # which cells each attack run serves, and which runs each sweep entry needs (a run key
        # names its examples too: n is part of it)
        self.cells_of: dict[str, list[tuple[str, float]]] = {}
        self.runs_of: dict[str, list[str]] = {}
        for t in specs:
            if t.name == "none" or t.eps <= 0:
                continue
            parts = component_specs(t) if ATTACKS.get(t.name).combines else [t]
            self.runs_of[t.key()] = [p.run_key() for p in parts]
            for rk in self.runs_of[t.key()]:
                cells = self.cells_of.setdefault(rk, [])
                if (t.norm, float(t.eps)) not in cells:
                    cells.append((t.norm, float(t.eps)))
        self.images: list[torch.Tensor] = []
        self.image_row: dict[tuple[str, int], int] = {}  # (run, example) -> its row of ``images``
        self.cells: dict[tuple[str, float], dict[int, tuple[int, int]]] = {}  # example -> (row, attack)
        self.attacks: list[str] = []
        self.runs_seen: set[str] = set()  # run keys this evaluation ran
        self.complete_specs: set[str] = set()  # sweep entries whose examples the file holds in full (covered_specs)
        self._merge_existing()

    def _attack_id(self, name: str) -> int:
        if name not in self.attacks:
            self.attacks.append(name)
        return self.attacks.index(name)

    def _merge_existing(self) -> None:
        """Keep what an earlier evaluation of the same checkpoint saved (its rows are skipped now)."""
        found = existing_adversarial_path(self.results, self.meta["dataset"], self.meta["defense"],
                                          self.meta["seed"], self.meta["checkpoint_sha256"], self.meta["eval_seed"])
        if found is None:
            return
        saved = read_adversarials(found)
        if (saved.meta["checkpoint_sha256"], saved.meta["eval_seed"]) != (self.meta["checkpoint_sha256"],
                                                                           self.meta["eval_seed"]):
            return  # another checkpoint or seed: superseded
        for (norm, eps), (index, image, attack) in saved.cells.items():
            cell = self.cells.setdefault((norm, eps), {})
            for ex, row, a in zip(index.tolist(), image.tolist(), attack.tolist()):
                key = ("saved", row)
                if key not in self.image_row:
                    self.image_row[key] = len(self.images)
                    self.images.append(saved.images[row])
                cell.setdefault(ex, (self.image_row[key], self._attack_id(saved.attacks[a])))
        self.complete_specs = set(saved.complete_specs)

    def covers(self, spec_key: str) -> bool:
        """Whether the file already holds this sweep entry's adversarials, or it has none to
        hold (no attack, epsilon 0): then its row may be skipped."""
        return spec_key not in self.runs_of or spec_key in self.complete_specs

    def on_run(self, spec: AttackSpec, index: torch.Tensor, adv: torch.Tensor, preds: torch.Tensor,
               norms: torch.Tensor) -> None:
        """One attack run on the examples ``index``: its adversarial images, predictions and norms."""
        rk = spec.run_key()
        self.runs_seen.add(rk)
        index, preds, norms = index.cpu(), preds.cpu(), norms.cpu()
        broken = preds != self.labels[index]
        min_norm = ATTACKS.get(spec.name).min_norm
        attack = self._attack_id(f"{spec.name}/{spec.mode}")
        adv = adv.detach().float().cpu()
        for norm, eps in self.cells_of.get(rk, []):
            hit = broken & within_radius(norms, eps) if min_norm else broken
            cell = self.cells.setdefault((norm, eps), {})
            for j in hit.nonzero().squeeze(1).tolist():
                ex = int(index[j])
                if ex in cell:
                    continue
                if (rk, ex) not in self.image_row:
                    self.image_row[(rk, ex)] = len(self.images)
                    self.images.append(adv[j])
                cell[ex] = (self.image_row[(rk, ex)], attack)

    def save(self) -> Path:
        """Write the file atomically: every cell of the sweep, broken examples only (an existing
        file is left as it is when no attack ran: every row was already computed and saved)."""
        found = existing_adversarial_path(self.results, self.meta["dataset"], self.meta["defense"],
                                          self.meta["seed"], self.meta["checkpoint_sha256"], self.meta["eval_seed"])
        if not self.runs_seen and found is not None:
            return found
        complete = self.complete_specs | {k for k, runs in self.runs_of.items() if all(r in self.runs_seen for r in runs)}
        cells = sorted(set(self.cells) | {c for cs in self.cells_of.values() for c in cs})
        shape = tuple(self.images[0].shape) if self.images else (0,)
        tensors = {"images": torch.stack(self.images) if self.images else torch.zeros((0, *shape))}
        listing = []
        for i, (norm, eps) in enumerate(cells):
            entries = sorted(self.cells.get((norm, eps), {}).items())
            tensors[f"cell{i}/index"] = torch.tensor([e for e, _ in entries], dtype=torch.int64)
            tensors[f"cell{i}/image"] = torch.tensor([r for _, (r, _) in entries], dtype=torch.int64)
            tensors[f"cell{i}/attack"] = torch.tensor([a for _, (_, a) in entries], dtype=torch.int64)
            listing.append({"name": f"cell{i}", "norm": norm, "epsilon": eps})
        meta = {**self.meta, "cells": json.dumps(listing), "attacks": json.dumps(self.attacks),
                "covered_specs": json.dumps(sorted(complete))}
        with atomic_path(self.path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        return self.path


class SavedAdversarials:
    """A file read back: ``cells[(norm, eps)] = (index, image row, attack id)`` tensors."""

    def __init__(self, path: Path, meta: dict[str, str], images: torch.Tensor,
                 cells: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        self.path, self.meta, self.images, self.cells = path, meta, images, cells
        self.attacks: list[str] = json.loads(meta["attacks"])
        self.complete_specs: list[str] = json.loads(meta["covered_specs"])


def read_adversarials(path: str | Path) -> SavedAdversarials:
    """Read a file written by ``SubjectAdversarials.save`` (safetensors: no code runs on load)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise BenchError(f"{path} is not a readable safetensors file: {exc}") from None
    if meta.get("format") != FORMAT:
        raise BenchError(f"{path} is not a great-bench adversarial-examples file (format {meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    cells = {}
    for c in json.loads(meta["cells"]):
        cells[(c["norm"], float(c["epsilon"]))] = tuple(tensors[f"{c['name']}/{k}"] for k in ("index", "image",
                                                                                                 "attack"))
    return SavedAdversarials(path, meta, tensors["images"], cells)


def collector_for(results: Path, subject, data, specs: Sequence[AttackSpec], eval_seed: int) -> SubjectAdversarials:
    """The collector of one model evaluated on ``data`` (an ``bench.eval.subjects.EvalSet``)."""
    path = adversarial_path(results, subject.dataset, subject.defense, subject.seed, subject.sha256, eval_seed)
    return SubjectAdversarials(path, subject=subject, specs=specs, labels=data.y.cpu(), eval_seed=eval_seed,
                               data_fingerprint=data.fingerprint())
