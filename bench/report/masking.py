"""Gradient-masking checks per defense (Athalye, Carlini & Wagner, ICML 2018, section 3.1).

Robustness that comes from broken gradients rather than a robust decision rule shows
tell-tale signs in an ordinary attack sweep. Each check reads the tidy rows of the
harness (including the per-example correctness masks) and returns pass / flag with the
numbers behind it, or ``n/a`` when the sweep has no rows for it:

- ``iterative_vs_single``: an untargeted iterative attack (iFGSM, PGD) is at least as
  strong as untargeted FGSM at the same epsilon (accuracy not higher by more than ``tol``).
- ``monotone_in_eps``: untargeted accuracy does not rise with epsilon, counted per sample:
  the fraction of examples broken at some epsilon that are classified correctly again at
  a larger one (same attack) stays under ``flip_tol``, and no mean rise above ``tol``.

Both use untargeted rows only: a targeted attack optimises the hit on its target, not the
loss on the true label, so its true-label accuracy need not follow these orderings (the
paper's Table 1 has targeted iFGSM weaker than targeted FGSM for every defense).
- ``large_eps``: an iterative white-box attack at a very large epsilon (>= ``large_eps``)
  leaves accuracy near zero (<= ``near_zero``): a big enough perturbation can replace the image.
- ``black_box_vs_white_box``: a black-box attack (Square) is not stronger than the white-box
  attacks at the same epsilon; compared on the same examples against the per-example
  union of all white-box attacks.
- ``l2_contains_linf``: an L2 ball of radius r contains the Linf ball of radius e whenever
  e * sqrt(d) <= r (d = input dimension), so an L2 attack at r must break every example a
  Linf attack broke at such an e. Examples the Linf attack broke but the L2 attack left
  correct are a failed L2 attack, whatever the reason (masked gradients, a badly scaled
  objective): the L2 column of that model is an overestimate. When the sweep has a
  combined minimum-norm entry (``l2min``, the table's L2 column) only it is checked: a
  single attack it combines may miss examples the other one finds.
- ``min_norm_vs_fixed_radius``: the minimum-norm curve (``l2min``, or CW/FMN alone) is as
  strong as a fixed-radius L2 attack (APGD) at each radius both ran: the fraction of examples
  the minimum-norm attack left correct but the fixed-radius one broke stays under ``tol``.
  A minimum-norm attack that stops early reports distances that are too large for the
  examples far from the boundary, so its curve overstates robustness at the larger radii.
- ``transfer_vs_white_box``: examples made by PGD on the undefended model of the same data
  and seed (``eval.transfer_source``, ``bench.eval.transfer``) do not break more of a defense's
  examples than its strongest untargeted white-box attack at the same norm and epsilon
  (Athalye et al. 2018; Carlini et al. 2019, "On evaluating adversarial robustness"): if a
  transfer attack wins, the white-box attacks followed broken gradients. Without a source run
  the check says "no source" rather than passing.

Given the models and the evaluation images, ``masking_checks`` adds AutoAttack's sanity
flags on the model itself (``bench.eval.sanity``: determinism, zero input gradients,
probabilities instead of logits, and the batch-size check), in the same result rows.

The GREAT paper itself notes that GREAT alone obfuscates gradients (section 3, Table 1).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

from bench.eval.schema import ATTACK, common_masks, row_kind, unpack_mask
from attacks.registry import ATTACKS
from bench.data import DATASETS
from bench.config.eval_settings import EvalSettings
from bench.eval.sanity import SANITY_CHECKS, SanityThresholds, sanity_checks


@dataclass(frozen=True)
class Thresholds:
    tol: float = 0.02        # accuracy slack (fraction) for the comparisons
    flip_tol: float = 0.05   # fraction of samples allowed to flip back to correct
    large_eps: float = 0.5   # what counts as a very large Linf epsilon
    near_zero: float = 0.05  # accuracy that counts as "near zero"


@dataclass(frozen=True)
class CheckResult:
    defense: str
    seed: str
    checkpoint_sha256: str
    check: str
    status: str       # pass | flag | n/a
    value: float | str
    threshold: float | str
    detail: str


def _mask(row: dict[str, Any], n: int | None = None) -> np.ndarray:
    m = unpack_mask(str(row["correct_mask"]), int(row["n"]))
    return m if n is None else m[:n]


def _eps(row) -> float:
    return float(row["epsilon"])


def _label(row) -> str:
    return f"{row['attack']}/{row['mode']}@{_eps(row):g}"


def _white_box(row) -> bool:
    info = ATTACKS.get(row["attack"]) if row["attack"] in ATTACKS else None
    return info is not None and not info.black_box and not info.transfer and row["attack"] != "none"


def _own_white_box(row) -> bool:
    """A white-box attack's own result: not a cascade row, whose mask already holds the breaks
    of every attack before it (Square and transfer among them), so that a check comparing it
    with one of those could never fail (issue 27)."""
    return _white_box(row) and row_kind(row) == ATTACK


def _transfer(row) -> bool:
    return row["attack"] in ATTACKS and ATTACKS.get(row["attack"]).transfer


def _iterative(row) -> bool:
    return row["attack"] in ATTACKS and ATTACKS.get(row["attack"]).iterative and _white_box(row)


def iterative_vs_single(rows: list[dict], th: Thresholds) -> tuple[str, float | str, str]:
    worst, detail = None, []
    for single in (r for r in rows if r["attack"] == "fgsm" and r["mode"] == "untargeted"):
        for it in rows:
            if not (_iterative(it) and not ATTACKS.get(it["attack"]).min_norm and it["mode"] == single["mode"]
                    and it["norm"] == single["norm"] and abs(_eps(it) - _eps(single)) < 1e-9):
                continue
            n = min(int(it["n"]), int(single["n"]))
            gap = float(_mask(it, n).mean() - _mask(single, n).mean())
            if worst is None or gap > worst:
                worst = gap
            if gap > th.tol:
                detail.append(f"{_label(it)} {_mask(it, n).mean():.3f} > fgsm {_mask(single, n).mean():.3f}")
    if worst is None:
        return "n/a", "", "no FGSM and iterative rows at the same epsilon and mode"
    status = "flag" if worst > th.tol else "pass"
    return status, round(worst, 4), "; ".join(detail) or f"largest (iterative - FGSM) accuracy gap {worst:+.3f}"


def monotone_in_eps(rows: list[dict], th: Thresholds) -> tuple[str, float | str, str]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["attack"] != "none" and r["mode"] == "untargeted":
            # Same attack settings except epsilon (iFGSM's step eps/k scales with it).
            groups.setdefault((r["attack"], r["mode"], r["norm"], str(r["steps"]), str(r["restarts"]),
                               str(r["params"])), []).append(r)
    worst_flip, worst_rise, detail, seen = 0.0, 0.0, [], False
    for key, rs in groups.items():
        rs = sorted(rs, key=_eps)
        if len({_eps(r) for r in rs}) < 2:
            continue
        seen = True
        n = min(int(r["n"]) for r in rs)
        masks = np.stack([_mask(r, n) for r in rs])              # (eps, examples)
        broken_before = np.logical_or.accumulate(~masks, axis=0)  # broken at this or a smaller eps
        flips = (masks[1:] & broken_before[:-1]).any(axis=0)      # correct again after being broken
        flip = float(flips.mean())
        means = masks.mean(axis=1)
        rise = float(np.max(np.diff(means))) if len(means) > 1 else 0.0
        worst_flip, worst_rise = max(worst_flip, flip), max(worst_rise, rise)
        if flip > th.flip_tol or rise > th.tol:
            detail.append(f"{key[0]}/{key[1]}: {flip:.3f} of samples flip back, mean rises by {rise:+.3f}")
    if not seen:
        return "n/a", "", "no attack was run at two or more epsilons"
    status = "flag" if (worst_flip > th.flip_tol or worst_rise > th.tol) else "pass"
    return status, round(worst_flip, 4), "; ".join(detail) or (
        f"at most {worst_flip:.3f} of samples flip back; largest mean rise {worst_rise:+.3f}")


def large_eps(rows: list[dict], th: Thresholds) -> tuple[str, float | str, str]:
    cand = [r for r in rows if _iterative(r) and r["norm"] == "Linf" and r["mode"] == "untargeted"
            and _eps(r) >= th.large_eps - 1e-9]
    if not cand:
        return "n/a", "", f"no untargeted iterative Linf attack at epsilon >= {th.large_eps:g}"
    best = min(cand, key=lambda r: float(r["accuracy"]))
    acc = float(best["accuracy"])
    return ("flag" if acc > th.near_zero else "pass"), round(acc, 4), f"{_label(best)} accuracy {acc:.3f}"


def black_box_vs_white_box(rows: list[dict], th: Thresholds) -> tuple[str, float | str, str]:
    worst, detail = None, []
    for bb in (r for r in rows if r["attack"] in ATTACKS and ATTACKS.get(r["attack"]).black_box
               and r["mode"] == "untargeted"):
        white = [r for r in rows if _own_white_box(r) and r["mode"] == "untargeted" and r["norm"] == bb["norm"]
                 and abs(_eps(r) - _eps(bb)) < 1e-9 and not ATTACKS.get(r["attack"]).min_norm]
        if not white:
            continue
        (bb_mask, *white_masks), n = common_masks([bb, *white])
        wb = np.logical_and.reduce(white_masks).mean()  # robust to every white-box attack
        gap = float(wb - bb_mask.mean())
        if worst is None or gap > worst:
            worst = gap
        if gap > th.tol:
            detail.append(f"{_label(bb)} {bb_mask.mean():.3f} < white-box {wb:.3f} on {n} examples")
    if worst is None:
        return "n/a", "", "no black-box row with white-box rows at the same epsilon"
    return ("flag" if worst > th.tol else "pass"), round(worst, 4), "; ".join(detail) or (
        f"white-box minus black-box accuracy {worst:+.3f}")


TRANSFER_CHECK = "transfer_vs_white_box"


def transfer_vs_white_box(rows: list[dict], th: Thresholds, *, source: str, is_source: bool = False,
                          source_present: bool = True) -> tuple[str, float | str, str]:
    """Transfer accuracy against the strongest untargeted white-box row at the same norm and
    epsilon, on the examples both ran on (value: white-box minus transfer accuracy). ``source``
    names the transfer source; ``is_source``: these are its own rows; ``source_present``: a
    run of it for this model's dataset and seed is among the rows."""
    worst, detail = None, []
    for tr in (r for r in rows if _transfer(r) and r["mode"] == "untargeted"):
        strongest = None  # (transfer accuracy, white-box accuracy, n, row) on the examples both ran on
        for wb in (r for r in rows if _own_white_box(r) and r["mode"] == "untargeted" and r["norm"] == tr["norm"]
                   and abs(_eps(r) - _eps(tr)) < 1e-9 and not ATTACKS.get(r["attack"]).min_norm):
            n = min(int(tr["n"]), int(wb["n"]))
            t_acc, w_acc = float(_mask(tr, n).mean()), float(_mask(wb, n).mean())
            if strongest is None or w_acc < strongest[1]:
                strongest = (t_acc, w_acc, n, wb)
        if strongest is None:
            continue
        t_acc, w_acc, n, wb = strongest
        text = f"{_label(tr)} {100 * t_acc:.1f}% vs white-box {_label(wb)} {100 * w_acc:.1f}% on n={n}"
        if worst is None or w_acc - t_acc > worst[0]:
            worst = (w_acc - t_acc, text)
        if w_acc - t_acc > th.tol:
            detail.append(text)
    if worst is not None:
        return ("flag" if worst[0] > th.tol else "pass"), round(worst[0], 4), "; ".join(detail) or worst[1]
    if any(_transfer(r) for r in rows):
        return "n/a", "", "no untargeted white-box row at the transfer attack's norm and epsilon"
    if is_source:
        return "n/a", "", f"the transfer source ({source}) itself: its own examples would be white-box"
    if not source_present:
        return "no source", "", f"no transfer source ({source}) in this preset: no transfer attack was run"
    return "n/a", "", "no transfer row for this model (the sweep has no transfer attack)"


def _input_dim(dataset: str) -> int | None:
    if dataset not in DATASETS:
        return None
    spec = DATASETS.get(dataset)
    return spec.channels * spec.size * spec.size


def _largest_miss(pairs: Iterable[tuple[dict, dict]], th: Thresholds, describe) -> tuple[float | None, list[str]]:
    """Over (judged, other) row pairs: the largest fraction of examples the judged attack left
    correct but the other broke (per example, on the examples both ran on), and a line from
    ``describe(judged, other, missed, n)`` for each pair above ``tol``."""
    worst, detail = None, []
    for judged, other in pairs:
        n = min(int(judged["n"]), int(other["n"]))
        missed = float((_mask(judged, n) & ~_mask(other, n)).mean())
        worst = missed if worst is None else max(worst, missed)
        if missed > th.tol:
            detail.append(describe(judged, other, missed, n))
    return worst, detail


def l2_contains_linf(rows: list[dict], th: Thresholds) -> tuple[str, float | str, str]:
    l2_rows = [r for r in rows if _white_box(r) and r["norm"] == "L2" and r["mode"] == "untargeted"]
    combined = [r for r in l2_rows if ATTACKS.get(r["attack"]).combines]

    def inner(l2: dict) -> list[dict]:  # Linf rows whose ball lies inside this L2 ball
        d = _input_dim(str(l2.get("dataset", "")))
        return [] if d is None else [r for r in rows if _white_box(r) and r["norm"] == "Linf" and
                                     r["mode"] == "untargeted" and _eps(r) > 0 and _eps(r) * d ** 0.5 <= _eps(l2) + 1e-9]

    worst, detail = _largest_miss(
        ((l2, linf) for l2 in combined or l2_rows for linf in inner(l2)), th,
        lambda l2, linf, missed, n: (f"{_label(l2)} missed {missed:.3f} of examples that {_label(linf)} broke "
                                     f"(Linf ball inside the L2 ball, n={n})"))
    if worst is None:
        return "n/a", "", "no untargeted L2 row with an Linf row whose ball it contains"
    return ("flag" if worst > th.tol else "pass"), round(worst, 4), "; ".join(detail[:2]) or (
        f"L2 attack missed at most {worst:.3f} of the examples an inner Linf attack broke")


def min_norm_vs_fixed_radius(rows: list[dict], th: Thresholds) -> tuple[str, float | str, str]:
    l2 = [r for r in rows if _white_box(r) and r["norm"] == "L2" and r["mode"] == "untargeted" and _eps(r) > 0]
    min_norm = [r for r in l2 if ATTACKS.get(r["attack"]).min_norm]
    combined = [r for r in min_norm if ATTACKS.get(r["attack"]).combines]
    worst, detail = _largest_miss(
        ((mn, fixed) for mn in combined or min_norm for fixed in l2
         if not ATTACKS.get(fixed["attack"]).min_norm and abs(_eps(fixed) - _eps(mn)) < 1e-9), th,
        lambda mn, fixed, missed, n: (f"{_label(mn)} {_mask(mn, n).mean():.3f}: {missed:.3f} of examples it left "
                                      f"correct broken by {_label(fixed)} (n={n})"))
    if worst is None:
        return "n/a", "", "no minimum-norm L2 row with a fixed-radius L2 row at the same radius"
    return ("flag" if worst > th.tol else "pass"), round(worst, 4), "; ".join(detail[:3]) or (
        f"the fixed-radius attack broke at most {worst:.3f} of the examples the minimum-norm attack left correct")


CHECKS = {
    "iterative_vs_single": (iterative_vs_single, "tol"),
    "monotone_in_eps": (monotone_in_eps, "flip_tol"),
    "large_eps": (large_eps, "near_zero"),
    "black_box_vs_white_box": (black_box_vs_white_box, "tol"),
    "l2_contains_linf": (l2_contains_linf, "tol"),
    "min_norm_vs_fixed_radius": (min_norm_vs_fixed_radius, "tol"),
}


def masking_checks(rows: Iterable[dict], thresholds: Thresholds = Thresholds(), *, subjects=(), data=None,
                   sanity: SanityThresholds = SanityThresholds(), n_sanity: int = 100,
                   transfer_source: str = EvalSettings.transfer_source) -> list[CheckResult]:
    """All checks for every (defense, seed, checkpoint) in the rows; given ``subjects``
    (``bench.eval.subjects.Subject``) and ``data`` (an ``EvalSet``), also the sanity flags of
    ``bench.eval.sanity`` on the first ``n_sanity`` images (``n/a`` for a model not given).
    ``transfer_source``: the defense whose run makes the transfer examples."""
    by_model: dict[tuple[str, str, str], list[dict]] = {}
    sourced: set[tuple[str, str]] = set()  # (dataset, seed) with a transfer source among the rows
    for r in rows:
        by_model.setdefault((str(r["defense"]), str(r["seed"]), str(r["checkpoint_sha256"])), []).append(r)
        if str(r["defense"]) == transfer_source or r.get("transfer_from"):
            sourced.add((str(r.get("dataset", "")), str(r["seed"])))
    models = {(str(s.defense), str(s.seed), str(s.sha256)): s for s in subjects} if data is not None else {}
    for key in models:
        by_model.setdefault(key, [])
    out = []
    for (defense, seed, sha), rs in by_model.items():
        for name, (fn, th_name) in CHECKS.items():
            status, value, detail = fn(rs, thresholds)
            out.append(CheckResult(defense, seed, sha, name, status, value, getattr(thresholds, th_name), detail))
        dataset = str(rs[0].get("dataset", "")) if rs else str(models[defense, seed, sha].dataset)
        status, value, detail = transfer_vs_white_box(rs, thresholds, source=transfer_source,
                                                      is_source=defense == transfer_source,
                                                      source_present=(dataset, seed) in sourced)
        out.append(CheckResult(defense, seed, sha, TRANSFER_CHECK, status, value, thresholds.tol, detail))
        if models:
            subject = models.get((defense, seed, sha))
            if subject is None:
                flags = {k: ("n/a", "", "", "model not given") for k in SANITY_CHECKS}
            else:
                n = min(n_sanity, len(data))
                flags = sanity_checks(subject.model, data.x[:n], data.y[:n], sanity)
            out += [CheckResult(defense, seed, sha, k, *v) for k, v in flags.items()]
    return out


def as_rows(results: Iterable[CheckResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
