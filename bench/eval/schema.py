"""The schema of robustness.csv: its columns, what identifies a row, and old files' upgrade.

One row per (dataset, defense, seed, attack, norm, epsilon, mode) on a set of examples
(DESIGN.md, "Results are tidy rows"). ``correct_mask`` keeps per-example correctness, so the
worst case, the paired tests and the masking checks work from the CSV alone. Files written
before a column existed are upgraded on read (``upgrade_rows``); anything else that does not
match this schema is refused rather than rewritten.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.errors import BenchError
from bench.csv_files import write_rows as _write_rows
from bench.run import versions
from bench.stats import wilson

# Column order of robustness.csv (one row per dataset, defense, seed, attack, norm, epsilon, mode).
ROW_FIELDS = [
    "dataset", "defense", "seed", "attack", "norm", "epsilon", "mode", "accuracy", "ci_low", "ci_high",
    "target_hit_rate", "n", "n_clean_correct", "clean_accuracy", "train_accuracy", "steps", "step_size",
    "restarts", "params", "spec", "eval_seed", "batch_size", "seconds", "max_perturbation", "checkpoint_sha256",
    "data_fingerprint", "source", "transfer_from", "torch", "torchattacks", "foolbox", "great_bench", "correct_mask",
    "cascade_after", "n_attacked", "epsilon_units", "kind", "components",
]
# Added after the first results were written: older CSVs without them are filled in on read
# (the interval from n and accuracy; the foolbox version as unknown, ""; no cascade, and the
# number of examples attacked as unknown, ""; transfer_from as "": no transfer rows existed
# then). ``transfer_from`` names the model a transfer row's examples were made on
# (``bench.eval.transfer``): "<defense> seed <k> <sha256 prefix>", "" on other rows.
# ``epsilon_units`` is the units the preset wrote the epsilon in ("pixel" or "normalized",
# ``bench.config.epsilon_units``); ``epsilon`` is pixels either way. Older rows are "pixel": every
# preset was, before the column existed.
INTERVAL_FIELDS = ("ci_low", "ci_high")
# ``kind`` says what a row's mask is (issue 27), so that masking, export and report read it
# instead of inferring it: ``ATTACK`` (the attack's own per-example result) or ``CASCADE`` (the
# worst case over ``cascade_after`` and this attack, run on their survivors). ``components``
# names the parts a composed attack ran itself and the row that stood in for the others
# (standard AutoAttack after a standard APGD-CE+T row); "" otherwise. Older rows get their
# kind from the spec (``cascade=1``) and no components.
LATER_FIELDS = (*INTERVAL_FIELDS, "foolbox", "cascade_after", "n_attacked", "transfer_from", "epsilon_units",
                "kind", "components")
ATTACK, CASCADE, WORST_CASE = "attack", "cascade", "worst case"  # the last: bench.report.worst_case's rows


def spec_kind(spec_key: str) -> str:
    """The kind of a row made by this spec key: a cascade spec's row is a worst case."""
    return CASCADE if "cascade=1" in spec_key.split(",") else ATTACK


def row_kind(row: dict[str, Any]) -> str:
    """A row's kind: its own ``kind``, or (rows built before it existed) from its spec."""
    return row.get("kind") or spec_kind(str(row.get("spec", "")))


def transfer_label(defense: str, seed: Any, sha256: str) -> str:
    """``transfer_from`` of a transfer row: the model its examples were made on."""
    return f"{defense} seed {seed} {sha256[:12]}"


def transfer_defense(label: str) -> str:
    """The defense named in a ``transfer_from`` label ("" for a row that is not a transfer)."""
    return label.rsplit(" seed ", 1)[0] if label else ""


def pack_mask(correct: torch.Tensor) -> str:
    """Per-example correctness as hex (bit i = example i): lets the masking checks count
    samples that flip back to correct at a larger epsilon, from the CSV alone."""
    return np.packbits(correct.cpu().numpy().astype(np.uint8)).tobytes().hex()


def unpack_mask(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def common_masks(rows: Sequence[dict[str, Any]]) -> tuple[list[np.ndarray], int]:
    """The rows' per-example masks on the examples common to all of them (the first min(n):
    every row's examples are a prefix of the same evaluation set), and that n."""
    n = min(int(r["n"]) for r in rows)
    return [unpack_mask(str(r["correct_mask"]), int(r["n"]))[:n] for r in rows], n


def robust_on_all(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, int]:
    """Per common example, whether every row left it correct (the worst case over them), and n."""
    masks, n = common_masks(rows)
    return np.logical_and.reduce(masks), n


@functools.lru_cache(maxsize=1)
def row_versions() -> dict[str, str]:
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


def subject_row_key(subject: Any, spec_key: str, n: int, eval_seed: int, fingerprint: str) -> tuple[str, ...]:
    """``row_key`` of the row a model (an ``bench.eval.subjects.Subject``) would get for this spec."""
    return row_key({"defense": subject.defense, "seed": subject.seed, "checkpoint_sha256": subject.sha256,
                    "spec": spec_key, "n": n, "eval_seed": eval_seed, "data_fingerprint": fingerprint})


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Replace a robustness CSV with ``rows`` (atomic; ``merge_rows`` is the shared-file way)."""
    _write_rows(path, rows, ROW_FIELDS)



def upgrade_rows(csv_path: str | Path, existing: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows as read from ``csv_path``, upgraded to the current columns (``merge_rows``' prepare).

    Rows written before the later columns existed get them filled in (the interval from n
    and accuracy, the foolbox version and examples attacked as unknown, no cascade, no
    transfer source, the epsilon asked in pixel units); a file with other columns is refused.
    """
    if existing and set(ROW_FIELDS) - set(LATER_FIELDS) <= set(existing[0]) < set(ROW_FIELDS):
        existing = [with_interval({"foolbox": "", "cascade_after": "", "n_attacked": "", "transfer_from": "",
                                   "epsilon_units": "pixel", "components": "", **r,
                                   "kind": r.get("kind") or spec_kind(str(r.get("spec", "")))})
                    for r in existing]
    if existing and set(existing[0]) != set(ROW_FIELDS):
        raise BenchError(f"{csv_path} has different columns than this version writes; "
                         "move it away or pass another output path")
    return existing
