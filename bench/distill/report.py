"""The distillation track's view of its rows: the paper's Table 3 layout with intervals, the
paper's claim tested seed by seed, and the students' robustness.

Accuracy cells are "mean ± std [95% interval]" over training seeds (``bench.stats.aggregate``:
the seed spread and the test-sampling error of n images). The claim (paper Table 3: GREAT is
the best student in the sparse regime) is checked as GREAT minus each other method, paired by
seed (every method starts from the same seed's weights and batches), with the t-interval of
the per-seed differences and the test-sampling error of n test images added in quadrature
(``bench.stats.unpaired_across_seeds``).
"""
from __future__ import annotations

from typing import Any

from bench.distill.settings import REGIMES
from bench.stats import aggregate, mean_std, paired_seed_difference, unpaired_across_seeds

CLAIM_METHOD = "great"


def accuracy_cell(accs: list[float], ns: list[int] | None) -> str:
    """'84.12 ± 0.81 [82.0, 86.2]' (%); without n (rows of older versions) no interval."""
    if not accs:
        return "-"
    if ns is None:
        mean, std = mean_std([100 * a for a in accs])
        return f"{mean:.2f} ± {std:.2f}" if len(accs) > 1 else f"{mean:.2f}"
    s = aggregate(accs, ns)
    spread = f" ± {100 * s.std:.2f}" if s.seeds > 1 else ""
    return f"{100 * s.mean:.2f}{spread} [{100 * s.ci_low:.1f}, {100 * s.ci_high:.1f}]"


def difference_cell(first: dict[int, float], second: dict[int, float], n: int | None = None) -> str:
    """'+1.20 [-0.8, +3.2] (cannot tell)' in points, paired by seed. Given the test-set size
    n, the interval adds the test-sampling error of n examples to the seeds' paired t
    (``bench.stats.unpaired_across_seeds``); rows of older versions (no n) get the t alone."""
    if n:
        r = unpaired_across_seeds(first, second, n)
        mean, lo, hi, seeds = 100 * r.mean, 100 * r.ci_low, 100 * r.ci_high, r.seeds
    else:
        d = paired_seed_difference({k: 100 * v for k, v in first.items()}, {k: 100 * v for k, v in second.items()})
        mean, lo, hi, seeds = d.mean, d.ci_low, d.ci_high, d.seeds
    if seeds < 2:
        return f"{mean:+.2f} (one seed: no interval)"
    word = "higher" if lo > 0 else "lower" if hi < 0 else "cannot tell"
    return f"{mean:+.2f} [{lo:+.1f}, {hi:+.1f}] ({word}, {seeds} seeds)"


def table3_markdown(rows: list[dict[str, Any]], preset: str | None = None) -> str:
    """Table 3's layout (methods x pair x regime, test accuracy %), the claim, then robustness."""
    key = lambda r: (r["dataset"], r["student"], r["teacher"])
    pairs = list(dict.fromkeys(key(r) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({int(r["seed"]) for r in rows})
    sel = lambda p, m, g: [r for r in rows if key(r) == p and r["method"] == m and r["regime"] == g]
    col = lambda p, m, g, c: [float(r[c]) for r in sel(p, m, g)]

    def ns(p, m, g, c) -> list[int] | None:
        """The per-run example counts, or None for rows written before the count was recorded."""
        vals = [r.get(c) for r in sel(p, m, g)]
        return [int(v) for v in vals] if vals and all(v not in (None, "") for v in vals) else None

    by_seed = lambda p, m, g: {int(r["seed"]): float(r["test_acc"]) for r in sel(p, m, g)}
    pct = lambda p, g: next(f"{100 * float(r['fraction']):g}%" for r in rows if key(r) == p and r["regime"] == g)
    out = [f"# Knowledge distillation (paper Table 3){f' -- preset `{preset}`' if preset else ''}", "",
           f"Test accuracy (%), mean ± std over seeds {seeds} [95% interval: seed spread and test sampling]; "
           "dense = all of the preset's training set, sparse = one fixed subset shared by every method.", ""]
    head = ["Method"] + [f"{s}(S)+{t}(T) [{d}] {pct(p, g)}" for p in pairs for (d, s, t) in [p] for g in REGIMES]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    teacher_n = lambda p, g: (ns(p, methods[0], g, "n_test") or [])[:1] or None
    out.append("| Teacher | " + " | ".join(accuracy_cell(col(p, methods[0], g, "teacher_acc")[:1], teacher_n(p, g))
                                          for p in pairs for g in REGIMES) + " |")
    for m in methods:
        out.append(f"| {m} | " + " | ".join(accuracy_cell(col(p, m, g, "test_acc"), ns(p, m, g, "n_test"))
                                            for p in pairs for g in REGIMES) + " |")
    if CLAIM_METHOD in methods and len(methods) > 1:
        out += ["", "## The paper's claim: GREAT is the best student in the sparse regime (Table 3)", "",
                "GREAT minus each method, test accuracy points, paired by seed: mean [95% interval: the t-interval "
                "of the per-seed differences and the test-sampling error of the test images, added in quadrature]; "
                "'higher' or 'lower' when the interval excludes 0 (uncorrected; the Holm-corrected verdict is in "
                "verdicts.md when the study's report is written).", ""]
        head = ["GREAT minus"] + [f"{s}(S)+{t}(T) {g}" for p in pairs for (d, s, t) in [p] for g in REGIMES]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in methods:
            if m != CLAIM_METHOD:
                out.append(f"| {m} | " + " | ".join(difference_cell(by_seed(p, CLAIM_METHOD, g), by_seed(p, m, g),
                                                                    min(ns(p, m, g, "n_test") or [0]))
                                                    for p in pairs for g in REGIMES) + " |")
    eps = rows[0]["epsilon"] if rows else None
    n_eval = rows[0]["n_eval"] if rows else None
    out += ["", f"## Robustness of the students (beyond the paper): accuracy (%) on {n_eval} test images, "
                f"untargeted, epsilon {eps}", "",
            "iFGSM = BIM with 10 steps of epsilon/10 (torchattacks), students in eval mode.", ""]
    for p in pairs:
        out += [f"### {p[1]}(S)+{p[2]}(T) [{p[0]}]", "", "| Method | Regime | Clean | FGSM | iFGSM | Train s |",
                "|---|---|---|---|---|---|"]
        for g in REGIMES:
            for m in methods:
                secs = col(p, m, g, "seconds")
                n = ns(p, m, g, "n_eval")
                out.append(f"| {m} | {g} | {accuracy_cell(col(p, m, g, 'clean_acc'), n)} | "
                           f"{accuracy_cell(col(p, m, g, 'fgsm_acc'), n)} | "
                           f"{accuracy_cell(col(p, m, g, 'ifgsm_acc'), n)} | {sum(secs) / max(1, len(secs)):.1f} |")
        out.append("")
    return "\n".join(out) + "\n"
