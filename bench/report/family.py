"""A pre-registered verdict family: one committed file, one Holm correction (issue 30).

The per-folder verdicts of ``bench.report.claims`` take their family from what a folder measured, so
its size changes with the folder (16 comparisons for one study, 6 for another) and so can a
verdict. A family file (``bench/families/*.toml``) fixes the family before a study runs: the
claims, each comparison (two defenses, a table column, the claimed sign), the networks (each
with its results folder) and the epsilons. Its members are every comparison x network x
epsilon, and that count is the family size whatever the results hold:

- a member the results cannot measure (a defense, a column or an epsilon missing, fewer than
  two common seeds) is reported "not measured" and enters Holm with p = 1, so it can never
  hold and the others are corrected for the whole pre-registered family;
- anything the results hold beyond the family (other defenses, attacks, epsilons) is ignored.

Each comparison is measured as in ``bench.report.claims`` (paired across seeds, on the table built at
the member's epsilon from the folder's robustness.csv) and labelled by the same rule
(``bench.stats.claim_verdict`` on the Holm-adjusted p). A claim's verdict per network and
epsilon, and over the whole family, is ``bench.report.claims.claim_label`` of its members.

File format (TOML; unknown keys, defenses, columns, claims and networks are refused with the
nearest valid name)::

    name = "study-3"
    dataset = "fashion-mnist"
    alpha = 0.05                                    # optional
    cw_radius = 1.0                                 # optional: the L2 columns' radius (pixels)
    [networks]
    small-resnet = "results/study-3"                # a model of `great-bench list` -> its results folder
    [trained_as]                                    # optional: the row name that stands for a defense
    great = "great-tuned"
    [[epsilons]]
    value = 0.1
    units = "normalized"                            # bench.config.epsilon_units: converted like eval epsilons
    [[claims]]
    name = "GREACE alone is robust"                 # a claim of bench.report.claims.CLAIMS
    comparisons = [{first = "greace", second = "baseline", column = "Non-targeted iFGSM", sign = "+"}, ...]

A claim's comparisons must be exactly those ``bench.report.claims`` defines for it: the file freezes
them, and if the code's claim changes after the file was committed the file no longer loads.
"""
from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from bench.report.claims import (ALPHA, CLAIMS, NOT_MEASURED, Claim, Comparison, MEASURES, Sources, claim_label,
                          format_difference, format_p)
from bench.config.checks import check_keys
from bench.data import DATASETS
from bench.config.epsilon_units import check_units, to_pixels
from core.errors import BenchError
from bench.models import MODELS
from core.registry import suggest
from bench.report.tables import COLUMNS, WORST_CASE, build_tables
from bench.defense_cards import display
from bench.csv_files import read_rows
from bench.stats import claim_verdict, holm
from defenses import DEFENSES

FAMILY_DIR = Path(__file__).parents[1] / "families"
REPO_ROOT = FAMILY_DIR.parents[1]  # where a family's results folders are named from
KEYS = ("name", "description", "dataset", "alpha", "cw_radius", "networks", "trained_as", "epsilons", "claims")
WORST = {f"{WORST_CASE} {norm}": norm for norm in ("Linf", "L2")}  # their table names carry the radius
COLUMN_NAMES = tuple(c.name for c in COLUMNS if c.attack != "train") + tuple(WORST)
SIGNS = {"+": +1, "-": -1}
FIELDS = ["claim", "network", "epsilon", "epsilon_units", "epsilon_pixel", "first", "second", "column", "sign",
          "seeds", "n", "diff", "ci_low", "ci_high", "p_value", "p_holm", "verdict", "cell_verdict",
          "claim_verdict", "unit"]


@dataclass(frozen=True)
class Epsilon:
    value: float     # as written in the file
    units: str       # "pixel" or "normalized"
    pixel: float     # the same radius in pixels (bench.config.epsilon_units.to_pixels)

    @property
    def label(self) -> str:
        return f"{self.value:g} {self.units}" + (f" ({self.pixel:g} pixel)" if self.units != "pixel" else "")


@dataclass(frozen=True)
class Member:
    """One hypothesis of the family: a claim's comparison on one network at one epsilon."""

    claim: str
    network: str
    epsilon: Epsilon
    comparison: Comparison


@dataclass(frozen=True)
class Family:
    name: str
    path: Path
    dataset: str
    networks: dict[str, Path]
    epsilons: tuple[Epsilon, ...]
    claims: tuple[Claim, ...]
    trained_as: dict[str, str]
    alpha: float = ALPHA
    cw_radius: float = 1.0
    description: str = ""

    def members(self) -> list[Member]:
        """Every comparison x network x epsilon, in the file's order: the family."""
        return [Member(claim.name, net, eps, c) for claim in self.claims for c in claim.comparisons
                for net in self.networks for eps in self.epsilons]

    @property
    def size(self) -> int:
        return len(self.members())

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def commit(self) -> str:
        """The git commit that last changed the file ('' outside git or uncommitted)."""
        try:
            out = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", self.path.name], cwd=self.path.parent,
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""


def _table(raw: Any, where: str) -> dict:
    if not isinstance(raw, dict):
        raise BenchError(f"{where} must be a table")
    return raw


def _name_in(name: Any, valid, what: str, where: str) -> str:
    if not isinstance(name, str) or name not in valid:
        hint = suggest(str(name), valid)
        raise BenchError(f"{where} = {name!r} is not a known {what}{hint}; valid: {', '.join(valid)}")
    return name


def _epsilons(raw: Any, dataset: str, where: str) -> tuple[Epsilon, ...]:
    if not isinstance(raw, list) or not raw:
        raise BenchError(f"{where} must be a non-empty list of {{value = 0.1, units = \"normalized\"}}")
    out: list[Epsilon] = []
    for i, e in enumerate(raw):
        w = f"{where}[{i}]"
        check_keys(_table(e, w), ("value", "units"), w)
        v = e.get("value")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise BenchError(f"{w}.value = {v!r} is invalid: a radius > 0")
        units = check_units(e.get("units", "pixel"), f"{w}.units")
        eps = Epsilon(float(v), units, to_pixels(float(v), units, dataset))
        if any(abs(o.pixel - eps.pixel) < 1e-9 for o in out):
            raise BenchError(f"{w} = {eps.label} repeats an epsilon of the family (the same pixel radius)")
        out.append(eps)
    return tuple(out)


def _claims(raw: Any, where: str) -> tuple[Claim, ...]:
    if not isinstance(raw, list) or not raw:
        raise BenchError(f"{where} must be a non-empty list of [[claims]] tables (name, comparisons)")
    known = {c.name: c for c in CLAIMS}
    out: list[Claim] = []
    for i, c in enumerate(raw):
        w = f"{where}[{i}]"
        check_keys(_table(c, w), ("name", "comparisons"), w)
        name = _name_in(c.get("name"), list(known), "claim of bench/report/claims.py", f"{w}.name")
        if name in (o.name for o in out):
            raise BenchError(f"{w}.name = {name!r}: the claim is listed twice")
        paper = known[name]
        if any(x.track != "robustness" for x in paper.comparisons):
            raise BenchError(f"{w}.name = {name!r} is a {paper.comparisons[0].track} claim; a family file holds "
                             "robustness claims (its comparisons are measured on robustness.csv)")
        comps = c.get("comparisons")
        if not isinstance(comps, list) or not comps:
            raise BenchError(f"{w}.comparisons must be a non-empty list of "
                             "{first = ..., second = ..., column = ..., sign = \"+\"}")
        mine = []
        for j, x in enumerate(comps):
            wx = f"{w}.comparisons[{j}]"
            check_keys(_table(x, wx), ("first", "second", "column", "sign"), wx)
            first = _name_in(x.get("first"), DEFENSES.names(), "defense", f"{wx}.first")
            second = _name_in(x.get("second"), DEFENSES.names(), "defense", f"{wx}.second")
            column = _name_in(x.get("column"), COLUMN_NAMES, "table column (attack)", f"{wx}.column")
            sign = SIGNS.get(x.get("sign")) if isinstance(x.get("sign"), str) else None
            if sign is None:
                raise BenchError(f"{wx}.sign = {x.get('sign')!r} is invalid: \"+\" (first above second) or \"-\"")
            mine.append(Comparison("robustness", first, second, column, sign))
        if len(set(mine)) < len(mine):
            raise BenchError(f"{w}: a comparison is listed twice")
        if set(mine) != set(paper.comparisons):
            want = "; ".join(f"{x.first} {'>' if x.sign > 0 else '<'} {x.second} on {x.column}"
                             for x in paper.comparisons)
            raise BenchError(f"{w} ({name!r}) lists other comparisons than bench/report/claims.py defines for it: {want}. "
                             "A family freezes a claim as the code states it; change both or neither")
        out.append(Claim(name, paper.paper, tuple(mine)))
    return tuple(out)


def load_family(path: str | Path) -> Family:
    """The family file at ``path``, checked (module docstring: the format)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"family file {path} not found; the committed ones are in bench/families/")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"family file {path} is not valid TOML: {exc}") from None
    check_keys(raw, KEYS, "", "keys of a family file")
    for key in ("name", "dataset", "networks", "epsilons", "claims"):
        if key not in raw:
            raise BenchError(f"family file {path} lacks {key!r} (it needs name, dataset, networks, epsilons and claims)")
    dataset = _name_in(raw["dataset"], DATASETS.names(), "dataset", "dataset")
    nets = _table(raw["networks"], "[networks]")
    if not nets:
        raise BenchError("[networks] is empty: name each network and its results folder, small-resnet = \"results/study-3\"")
    networks = {}
    for net, folder in nets.items():
        _name_in(net, MODELS.names(), "model", "[networks] key")
        if not isinstance(folder, str) or not folder:
            raise BenchError(f"networks.{net} = {folder!r} is invalid: the results folder holding its robustness.csv")
        networks[net] = Path(folder)
    trained_as = {}
    for d, row_name in _table(raw.get("trained_as", {}), "[trained_as]").items():
        _name_in(d, DEFENSES.names(), "defense", "[trained_as] key")
        if not isinstance(row_name, str) or not row_name:
            raise BenchError(f"trained_as.{d} = {row_name!r} is invalid: the defense or variant name of its rows")
        trained_as[d] = row_name
    alpha = raw.get("alpha", ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise BenchError(f"alpha = {alpha!r} is invalid: the family-wise error rate, in (0, 1)")
    cw = raw.get("cw_radius", 1.0)
    if isinstance(cw, bool) or not isinstance(cw, (int, float)) or not cw > 0:
        raise BenchError(f"cw_radius = {cw!r} is invalid: the L2 columns' radius in pixels, > 0")
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise BenchError(f"name = {raw['name']!r} is invalid: a non-empty string")
    return Family(raw["name"], path, dataset, networks, _epsilons(raw["epsilons"], dataset, "epsilons"),
                  _claims(raw["claims"], "claims"), trained_as, float(alpha), float(cw),
                  str(raw.get("description", "")))


def families_reading(results: Path, family_dir: Path = FAMILY_DIR) -> list[tuple[Family, dict[str, Path]]]:
    """The family files in ``family_dir`` one of whose networks reads the folder ``results``
    (a family's folders are named from the repository root), each with every network's folder:
    ``results`` for the networks that name it, the file's own folder for the others. A report
    written into ``results`` writes their verdicts too, so a study's folder carries its
    pre-registered verdicts and not only the per-folder ones."""
    here = results.resolve()
    found = []
    for path in sorted(family_dir.glob("*.toml")):
        family = load_family(path)
        folders = {net: REPO_ROOT / f for net, f in family.networks.items()}  # an absolute f stays itself
        if any(f.resolve() == here for f in folders.values()):
            found.append((family, {net: results if f.resolve() == here else f for net, f in folders.items()}))
    return found


def shown(path: Path) -> str:
    """``path`` as a reader should see it: from the repository root when it lies inside it (the
    same on every machine), else as given."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def parse_folders(pairs: list[str], family: Family) -> dict[str, Path]:
    """``NETWORK=FOLDER`` overrides of the family's results folders (the networks stay the file's)."""
    out = dict(family.networks)
    for text in pairs:
        net, sep, folder = text.partition("=")
        if not sep or not folder:
            raise BenchError(f"{text!r}: expected NETWORK=FOLDER, e.g. small-resnet=results/study-3")
        _name_in(net, list(family.networks), f"network of family {family.name!r}", "NETWORK")
        out[net] = Path(folder)
    return out


def _rows(folder: Path) -> list[dict]:
    csv = folder / "robustness.csv"
    if not csv.is_file():
        raise BenchError(f"{csv} not found: a family's network points at the results folder of its study "
                         "(robustness.csv); give another with NETWORK=FOLDER")
    return read_rows(csv)


def _measure(family: Family, rows: list[dict], eps: Epsilon, c: Comparison):
    """(AcrossSeeds, unit) of one comparison at one epsilon, or None when it cannot be measured."""
    first, second = family.trained_as.get(c.first, c.first), family.trained_as.get(c.second, c.second)
    column = f"{c.column} {eps.pixel:g}" if c.column in WORST else c.column
    mine = [r for r in rows if r["dataset"] == family.dataset and r["defense"] in (first, second)]
    if not mine:
        return None
    tables = build_tables(mine, eps.pixel, family.cw_radius)
    got = [(r, unit) for dataset, r, unit in MEASURES.get("robustness")(
        Sources(tables, [], []), Comparison("robustness", first, second, column, c.sign)) if dataset == family.dataset]
    return got[0] if got else None


def family_verdicts(family: Family, folders: dict[str, Path] | None = None) -> list[dict]:
    """One row (``FIELDS``) per member of the family, whatever the results hold: measured ones
    with their Holm p over the whole family (unmeasured ones counted with p = 1), unmeasured
    ones "not measured"; each with its claim's verdict on that network and epsilon
    (``cell_verdict``) and over the whole family (``claim_verdict``)."""
    folders = folders or family.networks
    rows_of = {net: _rows(folders[net]) for net in family.networks}
    nan = float("nan")
    out = []
    for m in family.members():
        got = _measure(family, rows_of[m.network], m.epsilon, m.comparison)
        c = m.comparison
        row = {"claim": m.claim, "network": m.network, "epsilon": m.epsilon.label, "epsilon_units": m.epsilon.units,
               "epsilon_pixel": m.epsilon.pixel, "first": c.first, "second": c.second, "column": c.column,
               "sign": c.sign, "seeds": 0, "n": 0, "diff": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
               "unit": "points"}
        if got is not None:
            r, unit = got
            scale = 100.0 if unit == "points" else 1.0
            row.update(seeds=r.seeds, n=r.n, diff=scale * r.mean, ci_low=scale * r.ci_low,
                       ci_high=scale * r.ci_high, p_value=r.p_value, unit=unit)
        out.append(row)
    # Holm over the whole pre-registered family: an unmeasured member counts, with p = 1
    adjusted = holm([1.0 if math.isnan(r["p_value"]) else r["p_value"] for r in out])
    for r, adj in zip(out, adjusted):
        measured = not math.isnan(r["p_value"])
        r["p_holm"] = adj if measured else nan
        r["verdict"] = claim_verdict(r["diff"], adj, r["sign"], family.alpha) if measured else NOT_MEASURED
    for r in out:
        r["cell_verdict"] = claim_label([x["verdict"] for x in out if (x["claim"], x["network"], x["epsilon"])
                                         == (r["claim"], r["network"], r["epsilon"])])
        r["claim_verdict"] = claim_label([x["verdict"] for x in out if x["claim"] == r["claim"]])
    return [{k: r[k] for k in FIELDS} for r in out]


def family_markdown(family: Family, rows: list[dict], folders: dict[str, Path] | None = None, *,
                    commit: bool = True) -> str:
    """The report: where the family is defined and its size, each claim's verdict over the family,
    a claim x (network, epsilon) matrix and every member's numbers. ``commit=False`` leaves out
    the git commit that last changed the file (a stored study notebook must read the same in a
    shallow clone); its sha256 still identifies the file."""
    folders = folders or family.networks
    n_measured = sum(r["verdict"] != NOT_MEASURED for r in rows)
    n_comp = sum(len(c.comparisons) for c in family.claims)
    where = f"`{shown(family.path)}`"
    if commit:
        made = family.commit()
        where += f", committed in {made}" if made else " (not committed)"
    out = [f"**Pre-registered verdict family `{family.name}`** (defined in {where}; sha256 "
           f"{family.sha256()[:12]}). **Family size: {family.size} comparisons** = {n_comp} comparisons of "
           f"{len(family.claims)} claims x {len(family.networks)} network(s) x {len(family.epsilons)} epsilon(s). "
           f"One Holm correction over all {family.size} (family-wise error rate {family.alpha:g}); "
           f"{n_measured} measured, {family.size - n_measured} not measured (counted with p = 1: they never hold). "
           f"A comparison holds when its Holm-adjusted p < {family.alpha:g} with the claimed sign, does not hold with "
           f"the opposite sign, cannot tell otherwise; a claim holds when all its comparisons hold, does not hold "
           f"when any does not, is partly measured when some could not be measured. Results: "
           + ", ".join(f"{net} `{folders[net]}`" for net in family.networks) + ".", ""]
    for claim in family.claims:
        label = next(r["claim_verdict"] for r in rows if r["claim"] == claim.name)
        out.append(f"- **{claim.name}: {label}** ({claim.paper})")
    cells = [(net, eps.label) for net in family.networks for eps in family.epsilons]
    out += ["", "| Claim | " + " | ".join(f"{net}, eps {e}" for net, e in cells) + " |",
            "|---|" + "---|" * len(cells)]
    for claim in family.claims:
        out.append(f"| {claim.name} | " + " | ".join(
            next(r["cell_verdict"] for r in rows if (r["claim"], r["network"], r["epsilon"]) == (claim.name, net, e))
            for net, e in cells) + " |")
    out += ["", "| Claim | Comparison | Column | Network | Epsilon | Difference [95% interval] | p | Holm p | Verdict |",
            "|---|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        sign = ">" if r["sign"] > 0 else "<"
        unit = f" {r['unit']}" if r["verdict"] != NOT_MEASURED else ""
        out.append(f"| {r['claim']} | {display(r['first'])} {sign} {display(r['second'])} | {r['column']} | "
                   f"{r['network']} | {r['epsilon']} | {format_difference(r)}{unit} | {format_p(r['p_value'])} | "
                   f"{format_p(r['p_holm'])} | {r['verdict']} |")
    return "\n".join(out) + "\n"
