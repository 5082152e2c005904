"""Every view of the tidy rows, written into one results folder.

``write_report`` turns robustness rows into the paper-layout tables (Markdown, LaTeX, CSV),
the worst case over attacks per (norm, epsilon), the paired comparison with a reference
defense, the accuracy-vs-epsilon curves, the gradient-masking checks and (given the models)
the saliency maps. It reads rows only; it never attacks or trains.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from core.atomic import write_text
from bench.report.claims import FIELDS as VERDICT_FIELDS, Sources, verdicts, verdicts_markdown
from bench.report.compare import across_seeds, compare, comparison_markdown, default_reference
from core.errors import BenchError
from bench.config.eval_settings import EvalSettings
from bench.report.family import FAMILY_DIR, FIELDS as FAMILY_FIELDS, Family, families_reading, family_markdown, \
    family_verdicts, shown
from bench.report.html import render
from bench.report.masking import Thresholds, as_rows, masking_checks
from bench.report.plots import plot_acc_vs_eps
from bench.report.tables import build_tables, masking_markdown, to_csv, to_latex, to_markdown
from bench.csv_files import read_rows, write_rows
from bench.saliency import plot_saliency
from bench.eval.sanity import SANITY_CHECKS, SanityThresholds
from bench.report.worst_case import WORST_FIELDS, worst_case_rows


def earlier_sanity_flags(path: Path, checkpoints: set[str]) -> list[dict[str, Any]]:
    """The sanity flags an earlier report computed on these exact checkpoints (same sha256).
    They are properties of the model, not of the rows, so a report re-made from the CSV alone
    (no ``--runs``: the run folders may be gone) keeps them instead of dropping them."""
    if not path.is_file():
        return []
    return [r for r in read_rows(path) if r.get("check") in SANITY_CHECKS and r.get("checkpoint_sha256") in checkpoints]


def write_report(rows: Sequence[dict], results: Path, settings: EvalSettings, *, subjects=(), data=None,
                 against: str | None = None, quiet: bool = False, family_dir: Path = FAMILY_DIR) -> list[Path]:
    """table.md/.tex/.csv, worst_case.csv, comparison.md/.csv (each defense against ``against``,
    default GREAT when present), verdicts.md/.csv (the paper's claims, ``bench.report.claims``),
    verdicts-FAMILY.md/.csv for each pre-registered family in ``family_dir`` that names this
    folder (``bench.report.family``), acc_vs_eps.png/.pdf, masking.csv, (given models)
    saliency.png, and index.html: all of them on one self-contained page (``bench.report.html``)."""
    if not rows:
        raise BenchError("no evaluation rows to report; run `great-bench evaluate` first")
    results.mkdir(parents=True, exist_ok=True)
    rows = in_subject_order(rows, subjects)
    tables = build_tables(rows, settings.epsilon, settings.cw_radius)
    reference = default_reference(tables, against)
    comparison = compare(tables, reference) if reference else None
    seeds = across_seeds(comparison) if comparison is not None else None
    comparison_md = comparison_markdown(comparison, tables, seeds) if comparison is not None else ""
    checks = report_checks(rows, results, settings, subjects=subjects, data=data)
    # The paper's claims under one rule, Holm-corrected (bench/report/claims.py); the tracks' rows
    # are read from this folder when their commands wrote them here.
    claim_rows = verdicts(Sources.in_folder(tables, results))
    verdicts_md = verdicts_markdown(claim_rows)
    # A study with a pre-registered family is judged by it (one Holm over the committed file's
    # members); the per-folder verdicts then only describe, and say so.
    families = []
    for family, folders in families_reading(results, family_dir):
        waiting = [str(f) for f in folders.values() if not (f / "robustness.csv").is_file()]
        if waiting:  # another network's study has not written rows yet: nothing to judge it on
            if not quiet:
                print(f"family {family.name}: no robustness.csv yet in {', '.join(waiting)}; "
                      f"verdicts-{family.name}.md not written (`great-bench verdicts --family {shown(family.path)}`)")
            continue
        families.append((family, family_verdicts(family, folders)))
    if families and verdicts_md:
        verdicts_md = pre_registered_pointer(families, len(claim_rows)) + "\n\n" + verdicts_md
    write_text(results / "table.md", to_markdown(tables) + "\n" + (comparison_md + "\n" if comparison_md else "")
               + (verdicts_md + "\n" if verdicts_md else "") + masking_markdown(checks))
    write_text(results / "table.tex", to_latex(tables))
    write_text(results / "table.csv", to_csv(tables))
    worst = worst_case_rows(rows)
    write_rows(results / "worst_case.csv", worst, WORST_FIELDS)
    write_rows(results / "masking.csv", checks, list(checks[0]) if checks else ["defense"])
    plot_acc_vs_eps(rows, results / "acc_vs_eps.png", results / "acc_vs_eps.pdf")
    written = [results / f for f in ("table.md", "table.tex", "table.csv", "worst_case.csv", "masking.csv",
                                     "acc_vs_eps.png", "acc_vs_eps.pdf")]
    if claim_rows:
        write_text(results / "verdicts.md", verdicts_md)
        write_rows(results / "verdicts.csv", claim_rows, VERDICT_FIELDS)
        written += [results / "verdicts.md", results / "verdicts.csv"]
    for family, family_rows in families:
        md = results / f"verdicts-{family.name}.md"
        # no git commit in a results file (another clone has another); the sha256 names the file
        write_text(md, family_markdown(family, family_rows, commit=False))
        write_rows(md.with_suffix(".csv"), family_rows, FAMILY_FIELDS)
        written += [md, md.with_suffix(".csv")]
    if comparison is not None:
        written += write_comparison(results, comparison, comparison_md, seeds)
    if subjects and data is not None:
        written.append(write_saliency(results, subjects, data, settings.saliency_images))
    # Last: the page embeds the figures written above (and the tracks' tables when present).
    write_text(results / "index.html", render(
        f"great-bench results: {results.name}", tables, comparison=comparison, seeds=seeds, checks=checks,
        worst=worst, rows=rows, subjects=subjects,
        figures=[("Accuracy vs epsilon", results / "acc_vs_eps.png"), ("Saliency maps", results / "saliency.png")],
        tracks=[*((f"The paper's claims: the pre-registered family `{f.name}` (one Holm over {f.size})",
                   results / f"verdicts-{f.name}.md") for f, _ in families),
                ("The paper's claims: verdicts (Holm over the claims' comparisons)", results / "verdicts.md"),
                ("Knowledge distillation (paper Table 3)", results / "distillation.md"),
                ("Multi-task learning (paper Table 4)", results / "multitask.md"),
                ("Multi-task weights per epoch", results / "multitask_weights.png")],
        verdicts=summary_rows(families) if families else claim_rows, headline=results / "acc_vs_eps.png",
        rule=(f"Holm over the pre-registered family `{families[0][0].name}` of {families[0][0].size} comparisons"
              if families else None)))
    written.append(results / "index.html")
    if not quiet:
        for p in written:
            print(f"wrote {p}")
    return written


def pre_registered_pointer(families: list[tuple[Family, list[dict]]], n_folder: int) -> str:
    """The line that puts the per-folder verdicts below the study's pre-registered ones."""
    named = "; ".join(f"`verdicts-{f.name}.md` (`{f.name}`, defined in `{shown(f.path)}`: one Holm correction over "
                      f"{f.size} comparisons)" for f, _ in families)
    return (f"*This folder's study has a pre-registered verdict family; its verdicts are in {named}. The verdicts "
            f"below take the per-folder family ({n_folder} comparisons) and only describe.*")


def summary_rows(families: list[tuple[Family, list[dict]]]) -> list[dict]:
    """The pre-registered family's members in the shape the page's summary reads: the first
    family (a folder is named by one study's family in practice)."""
    _, rows = families[0]
    return [{**r, "dataset": f"{r['network']}, {r['epsilon']}"} for r in rows]


def in_subject_order(rows: Sequence[dict], subjects) -> Sequence[dict]:
    """Tables list defenses in order of first appearance: with the models given, that is their
    order (the preset's), not the CSV's, where a re-evaluated run comes last."""
    if not subjects:
        return rows
    rank = {str(d): i for i, d in enumerate(dict.fromkeys(s.defense for s in subjects))}
    return sorted(rows, key=lambda r: rank.get(str(r["defense"]), len(rank)))


def report_checks(rows: Sequence[dict], results: Path, settings: EvalSettings, *, subjects=(),
                  data=None) -> list[dict[str, Any]]:
    """masking.csv's rows: the gradient-masking checks, with the sanity flags of the models when
    they are given, else those an earlier report computed on the same checkpoints."""
    checks = as_rows(masking_checks(rows, Thresholds(settings.tol, settings.flip_tol, settings.large_epsilon,
                                                     settings.near_zero), subjects=subjects, data=data,
                                    sanity=SanityThresholds(epsilon=settings.epsilon),
                                    transfer_source=settings.transfer_source))
    if not subjects:
        checks += earlier_sanity_flags(results / "masking.csv", {str(r["checkpoint_sha256"]) for r in rows})
        # each model's carried flags beside its other checks, as when the models are given
        order: dict[tuple, int] = {}
        for c in checks:
            order.setdefault((str(c["defense"]), str(c["seed"]), str(c["checkpoint_sha256"])), len(order))
        checks.sort(key=lambda c: order[(str(c["defense"]), str(c["seed"]), str(c["checkpoint_sha256"]))])
    return checks


def write_comparison(results: Path, comparison, comparison_md: str, seeds) -> list[Path]:
    """comparison.md/.csv and, when any defense has two seeds or more, comparison_seeds.csv."""
    write_text(results / "comparison.md", comparison_md)
    write_text(results / "comparison.csv", comparison.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    written = [results / "comparison.md", results / "comparison.csv"]
    if not seeds.empty:
        write_text(results / "comparison_seeds.csv", seeds.to_csv(index=False, float_format="%.6g",
                                                                  lineterminator="\n"))
        written.append(results / "comparison_seeds.csv")
    return written


def write_saliency(results: Path, subjects, data, images: int) -> Path:
    """saliency.png: one model per defense (the first seed) on one image of each of ``images`` classes."""
    first: dict[str, Any] = {}
    for s in subjects:
        first.setdefault(s.defense, s.model)
    idx = _one_per_class(data.y, images)
    plot_saliency(list(first.items()), data.x[idx], data.y[idx], results / "saliency.png")
    return results / "saliency.png"


def _one_per_class(y, k: int):
    """The first test example of each of the first k classes met: fixed, varied images."""
    seen: dict[int, int] = {}
    for i, c in enumerate(y.tolist()):
        if c not in seen:
            seen[c] = i
        if len(seen) == k:
            break
    return torch.tensor(list(seen.values()), device=y.device)
