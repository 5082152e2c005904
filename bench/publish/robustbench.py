"""Export to RobustBench's model-info format: one JSON per model that a leaderboard reads.

RobustBench (Croce et al. 2021) keeps one file per model under
``model_info/<dataset>/<threat model>/<id>.json`` with the fields ``link``, ``name``,
``authors``, ``additional_data``, ``number_forward_passes``, ``dataset``, ``venue``,
``architecture``, ``eps`` (a string: ``"8/255"``, or a decimal such as ``"0.5"``),
``clean_acc``, ``reported``, ``autoattack_acc``, ``external``, ``footnote`` and
``unreliable``; accuracies are percentage strings with two decimals. great-bench fills them
from its tidy rows:

- one file per trained model, i.e. per defense *and seed*: a leaderboard entry is one set of
  weights that anyone can re-attack (``checkpoint_sha256`` names it); the mean over seeds is
  the accuracy of no model. The across-seeds mean and interval go into the extra fields.
- ``autoattack_acc``: only where standard AutoAttack (100 APGD steps, 5000 Square queries)
  ran at the threat model's epsilon on the dataset's full test set, as RobustBench requires;
  otherwise the field is left out (RobustBench's reader, ``list_available_models``, converts
  every accuracy field it finds with ``float()``, and ranks by ``external`` first), and the
  footnote says what ran instead; the number on fewer images is in the ``great_bench`` extras.
- ``external``: great-bench's per-example worst case over all its attacks at that epsilon
  (``bench.report.worst_case``), on the examples every attack ran on (its n is in the extras). A
  model with no attack at the threat model's epsilon is refused: no robust accuracy to list.
- ``unreliable``: a gradient-masking check (``bench.report.masking``) flagged the model.
- ``reported``: empty (great-bench re-trains the methods; it is not the paper's number).
- ``great_bench``: an extra object RobustBench ignores, with n and the 95% interval of every
  accuracy, the seed, the across-seeds summary, the paired test against the reference
  defense (``bench.report.compare``), the masking flags and, when saved, the adversarial examples
  file (path and sha256) that ``great-bench verify`` checks the numbers with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.eval.adversarial_store import existing_adversarial_path
from attacks.registry import ATTACKS
from bench.eval.schema import ATTACK, CASCADE, row_kind
from bench.report import results as frames
from core.atomic import write_text
from bench.checkpoint import sha256_file
from bench.data import DATASETS
from core.errors import BenchError
from bench.report.masking import as_rows, masking_checks
from bench.config.folder_settings import settings_for
from bench.csv_files import read_rows
from bench.defense_cards import paper_of
from bench.report.tables import worst_case_column
from bench.report.worst_case import WORST

# RobustBench's fields, in its files' order; ``great_bench`` follows.
FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
          "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "external", "footnote", "unreliable")
# Fields ``--info`` may set per defense (what the rows cannot know).
INFO_FIELDS = ("link", "name", "authors", "venue", "architecture", "additional_data", "reported", "footnote")


def eps_text(eps: float) -> str:
    """RobustBench's epsilon string: the shorter exact form of 'k/255' (when 255 eps is a whole
    number k: 8/255) and the decimal ('0.1', '0.5'; Fashion-MNIST's 0.1 is 25.5/255)."""
    dec = f"{eps:g}" if float(f"{eps:g}") == eps else repr(float(eps))
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-9 * max(1.0, k):
        frac = f"{round(k)}/255"
        return frac if len(frac) < len(dec) else dec
    return dec


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def pct(acc: float) -> str:
    """An accuracy fraction as RobustBench writes it: percent with two decimals ('51.06')."""
    return f"{100 * acc:.2f}"


def _is_standard_autoattack(r: pd.Series) -> bool:
    """Standard settings, and AutoAttack's own result: a cascade row (kind ``cascade``) is the
    worst case over the attacks before it and AutoAttack, never AutoAttack's number (issue 27)."""
    info = ATTACKS.get("autoattack")
    params = json.loads(r["params"] or "{}")
    return (row_kind(r) == ATTACK and int(r["steps"]) == info.default_steps and int(params.get("queries", info.extras["queries"]))
            == info.extras["queries"] and int(r["restarts"]) == 1)


def _interval(r: pd.Series) -> dict[str, Any]:
    return {"accuracy_pct": round(100 * float(r["accuracy"]), 4), "n": int(r["n"]),
            "ci_low_pct": round(100 * float(r["ci_low"]), 4), "ci_high_pct": round(100 * float(r["ci_high"]), 4)}


def _flags(results: Path, rows: list[dict]) -> pd.DataFrame:
    """The masking checks the report wrote (masking.csv, with the sanity flags), else the
    row-only checks computed now."""
    checks = read_rows(results / "masking.csv") or as_rows(masking_checks(rows))
    df = pd.DataFrame(checks, columns=["defense", "seed", "checkpoint_sha256", "check", "status", "value",
                                       "threshold", "detail"])
    return df.astype({"seed": str})


def _evidence(results: Path, dataset: str, defense: str, seed: str, sha: str, eval_seed: int) -> dict[str, str] | None:
    """The saved adversarial examples behind the numbers (``great-bench verify``): the file of the
    evaluation seed the numbers came from, if any."""
    path = existing_adversarial_path(results, dataset, defense, seed, sha, eval_seed)
    if path is None:
        return None
    return {"path": path.relative_to(results).as_posix(), "sha256": sha256_file(path)}


def _load_info(path: str | Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"--info {path}: not a readable JSON file ({exc})") from None
    if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
        raise BenchError(f"--info {path}: expected {{\"DEFENSE\": {{\"name\": ..., \"authors\": ...}}, ...}}")
    for defense, fields in info.items():
        bad = sorted(set(fields) - set(INFO_FIELDS))
        if bad:
            raise BenchError(f"--info {path}: {defense}: unknown fields {bad}; valid: {', '.join(INFO_FIELDS)}")
    return info


@dataclass(frozen=True)
class ExportedModel:
    """One model of the export: its identity and the rows its file reads (one evaluation seed,
    the clean row's): the clean row, the worst case at the threat model, and its AutoAttack rows."""

    dataset: str
    defense: str
    seed_text: str
    sha256: str
    clean: pd.Series
    worst: pd.Series
    autoattack: pd.DataFrame


def select_models(df: pd.DataFrame, results: Path, *, epsilon: float, norm: str) -> list[ExportedModel]:
    """Every (dataset, defense, seed, checkpoint) of the rows, with the rows its file reads. A
    model with no clean row, or no attack at the threat model's epsilon, is refused."""
    attacks = df[df["attack"] != WORST]
    out = []
    for (dataset, defense, seed, sha), g in df.groupby(["dataset", "defense", "seed", "checkpoint_sha256"],
                                                      sort=False, dropna=False):
        seed_text = "" if pd.isna(seed) else str(int(seed))
        clean = g[(g["attack"] == "none")].sort_values("n")
        if clean.empty:
            raise BenchError(f"{defense} seed {seed_text}: no clean row (attack 'none') in {results}; "
                             "the export needs the clean accuracy")
        clean = clean.iloc[-1]
        # every number of one file from one evaluation (seed): the clean row's, whose examples file it names
        at = (g["norm"] == norm) & ((g["epsilon"] - epsilon).abs() < 1e-9) & (g["eval_seed"] == clean["eval_seed"])
        worst = g[at & (g["attack"] == WORST)]
        if worst.empty:
            ran = sorted({float(e) for e in g.loc[(g["norm"] == norm) & (g["attack"] == WORST), "epsilon"]})
            raise BenchError(f"{defense} seed {seed_text or '-'}: no attack ran at {norm} eps {eps_text(epsilon)} in "
                             f"{results}, so there is no robust accuracy to export for that threat model; "
                             f"{norm} epsilons with attack rows: {', '.join(f'{e:g}' for e in ran) or 'none'} "
                             "(pass --epsilon, or --norm)")
        autoattack = attacks[(attacks["checkpoint_sha256"] == sha) & (attacks["defense"] == defense)
                             & (attacks["eval_seed"] == clean["eval_seed"])
                             & (attacks["norm"] == norm) & ((attacks["epsilon"] - epsilon).abs() < 1e-9)
                             & (attacks["attack"] == "autoattack")]
        out.append(ExportedModel(dataset, defense, seed_text, sha, clean, worst.iloc[0], autoattack))
    return out


def autoattack_accuracy(m: ExportedModel, *, epsilon: float, norm: str) -> tuple[str | None, pd.Series | None, str]:
    """(``autoattack_acc`` or None when it is left out, the standard AutoAttack row behind the
    extras or None, the footnote's sentence on it or "")."""
    aa = m.autoattack
    full = DATASETS.get(m.dataset).test_size if m.dataset in DATASETS else None
    aa_std = aa[aa.apply(_is_standard_autoattack, axis=1)] if not aa.empty else aa
    best = None if aa_std.empty else aa_std.sort_values("n").iloc[-1]
    aa_full = aa_std[aa_std["n"] >= full] if full else aa_std.iloc[0:0]
    if not aa_full.empty:
        return pct(aa_full.sort_values("n").iloc[-1]["accuracy"]), best, ""
    # left out of the file: RobustBench reads every field it finds as a number
    if aa.empty:
        return None, best, f"autoattack_acc is left out: standard AutoAttack did not run at {norm} eps {eps_text(epsilon)}."
    if aa_std.empty and (aa.apply(row_kind, axis=1) == CASCADE).all():
        return None, best, ("autoattack_acc is left out: AutoAttack ran as a cascade, on the examples the attacks "
                            "before it left correct, so its number is a worst case over those attacks and "
                            "AutoAttack, not AutoAttack's own accuracy.")
    if aa_std.empty:
        return None, best, "autoattack_acc is left out: the AutoAttack run used non-standard settings."
    n = int(aa_std["n"].max())
    total = f"{full:,}" if full else "an unknown number of"
    return None, best, (f"autoattack_acc is left out: standard AutoAttack ran on {n:,} of the {total} {m.dataset} "
                        f"test images (RobustBench needs the full test set); on those {n} it gives "
                        f"{pct(best['accuracy'])}%.")


def format_model_info(m: ExportedModel, *, base: str, preset: str, architecture: str, epsilon: float, norm: str,
                      flagged: list[str], paired: pd.DataFrame, seeds_row: pd.DataFrame, worst_col: str,
                      evidence: dict[str, str] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """One model-info object: RobustBench's fields (``extra`` from ``--info`` overriding), then
    the ``great_bench`` extras."""
    aa_acc, aa_row, aa_note = autoattack_accuracy(m, epsilon=epsilon, norm=norm)
    w, clean, seed_text = m.worst, m.clean, m.seed_text
    notes = [f"Trained and evaluated by great-bench ({'preset ' + preset + ', ' if preset else ''}"
             f"seed {seed_text or 'n/a'}{', variant of ' + base if base != m.defense else ''}); "
             "not the authors' checkpoint."]
    notes += [aa_note] if aa_note else []
    notes.append(f"external: great-bench's per-example worst case over {_count(int(w['n_attacks']), 'attack')} "
                 f"({w['attacks']}) on {int(w['n'])} test images.")
    if flagged:
        notes.append(f"unreliable: gradient-masking checks flagged {', '.join(flagged)}.")
    paper = paper_of(base, m.defense)
    obj: dict[str, Any] = {
        "link": paper.link, "name": paper.name, "authors": paper.authors, "additional_data": False,
        "number_forward_passes": 1, "dataset": m.dataset, "venue": paper.venue, "architecture": architecture,
        "eps": eps_text(epsilon), "clean_acc": pct(clean["accuracy"]), "reported": "",
        "autoattack_acc": aa_acc, "external": pct(w["accuracy"]), "footnote": " ".join(notes),
        "unreliable": bool(flagged),
    }
    if aa_acc is None:
        del obj["autoattack_acc"]
    obj.update(extra)
    obj["great_bench"] = {
        "defense": m.defense, "base_defense": base, "seed": None if not seed_text else int(seed_text),
        "checkpoint_sha256": m.sha256, "source": clean["source"], "eval_seed": int(clean["eval_seed"]),
        "threat_model": {"norm": norm, "epsilon": epsilon},
        "clean": _interval(clean),
        "external": {**_interval(w), "attacks": w["attacks"]},
        "autoattack": None if aa_row is None else _interval(aa_row),
        "across_seeds": None if seeds_row.empty else {
            "column": worst_col, "seeds": int(seeds_row.iloc[0]["seeds"]),
            **{k: round(float(seeds_row.iloc[0][k]), 4) for k in ("mean_pct", "std_pct", "ci_low_pct",
                                                                     "ci_high_pct")}},
        "paired_test": [
            {"column": worst_col, "against": p["against"], "against_seed": str(p["against_seed"]), "n": int(p["n"]),
             "diff_pct": round(float(p["diff_pct"]), 4), "ci_low_pct": round(float(p["ci_low_pct"]), 4),
             "ci_high_pct": round(float(p["ci_high_pct"]), 4), "p_value": float(p["p_value"]),
             "verdict": p["verdict"]} for _, p in paired.iterrows()],
        "masking_flags": flagged,
        "adversarial_examples": evidence,
        "versions": {k: clean[k] for k in ("torch", "torchattacks", "foolbox", "great_bench") if k in clean},
    }
    return obj


def model_infos(results: str | Path, *, epsilon: float, norm: str = "Linf", architecture: str = "",
                base_defense: dict[str, str] | None = None, preset: str = "", cw_radius: float = 1.0,
                table_epsilon: float | None = None, info: str | Path | None = None,
                against: str | None = None) -> dict[Path, dict[str, Any]]:
    """The model-info objects, keyed by their relative path ``<dataset>/<norm>/<defense>_seed<k>.json``.

    ``epsilon`` and ``norm`` are the threat model (the preset's eval.epsilon, Linf; or its
    cw_radius, L2); ``table_epsilon`` / ``cw_radius`` the report's table (for the paired
    comparison and the across-seeds summary of the worst-case column).
    """
    results = Path(results)
    df = frames.load(results)
    base_defense = base_defense or {}
    extra = _load_info(info)
    table_eps = table_epsilon if table_epsilon is not None else (df.attrs.get("epsilon") or epsilon)
    worst_col = worst_case_column(norm, epsilon).name
    summary = frames.table(df, epsilon=table_eps, cw_radius=cw_radius)
    try:
        comp = frames.compare(df, against=against, epsilon=table_eps, cw_radius=cw_radius)
    except BenchError:
        if against is not None:
            raise
        comp = pd.DataFrame(columns=["defense", "seed", "column"])
    flags = _flags(results, frames.to_rows(df))
    out: dict[Path, dict[str, Any]] = {}
    for m in select_models(df, results, epsilon=epsilon, norm=norm):
        mine = flags[(flags["defense"] == m.defense) & (flags["seed"] == m.seed_text)
                     & (flags["checkpoint_sha256"] == m.sha256)]
        out[model_info_path(m, norm)] = format_model_info(
            m, base=base_defense.get(m.defense, m.defense), preset=preset, architecture=architecture,
            epsilon=epsilon, norm=norm, flagged=sorted(mine.loc[mine["status"] == "flag", "check"]),
            paired=comp[(comp["defense"] == m.defense) & (comp["seed"].astype(str) == m.seed_text)
                        & (comp["column"] == worst_col)],
            seeds_row=summary[(summary["dataset"] == m.dataset) & (summary["defense"] == m.defense)
                              & (summary["column"] == worst_col)],
            worst_col=worst_col, extra=extra.get(str(m.defense), {}),
            evidence=_evidence(results, m.dataset, m.defense, m.seed_text, m.sha256, int(m.clean["eval_seed"])))
    if not out:
        raise BenchError(f"no models in {results}")
    return out


def model_info_path(m: ExportedModel, norm: str) -> Path:
    name = f"{m.defense}_seed{m.seed_text}" if m.seed_text else str(m.defense)
    return Path(m.dataset) / norm / f"{name.replace(':', '_').replace('/', '_')}.json"


def write_model_infos(infos: dict[Path, dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write every file atomically (each one whole or not at all), after all were built."""
    written = []
    for rel, obj in infos.items():
        path = Path(out_dir) / rel
        write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        written.append(path)
    return written


def export_robustbench(results: str | Path, out_dir: str | Path, *, preset: str | None = None, norm: str = "Linf",
                       epsilon: float | None = None, info: str | Path | None = None, against: str | None = None,
                       quiet: bool = False) -> list[Path]:
    """``great-bench export --format robustbench``: the settings that wrote ``results`` (``--preset``,
    else its settings.json, else the preset named like the folder, ``bench.config.folder_settings``) give the threat model's epsilon (eval.epsilon
    for Linf, eval.cw_radius for L2) and the architecture; then one file per model."""
    results = Path(results)
    s = settings_for(results, preset)
    if norm not in ("Linf", "L2"):
        raise BenchError(f"--norm {norm!r}: RobustBench's threat models are Linf and L2")
    settings = s.eval
    eps = epsilon if epsilon is not None else (settings.epsilon if norm == "Linf" else settings.cw_radius)
    infos = model_infos(results, epsilon=float(eps), norm=norm, architecture=s.model.name,
                        base_defense={d: s.base_defense(d) for d in s.defenses_to_train()}, preset=s.preset,
                        cw_radius=settings.cw_radius, table_epsilon=settings.epsilon, info=info, against=against)
    written = write_model_infos(infos, out_dir)
    if not quiet:
        for p in written:
            print(f"wrote {p}")
    return written
