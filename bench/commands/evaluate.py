"""``evaluate`` (attack runs or a user's model, tidy CSV rows) and ``report`` (tables, curves,
saliency maps, gradient-masking checks). ``run`` chains training, these two and the report."""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.errors import BenchError


@dataclass
class EvalSettings:
    """The ``[eval]`` section of a preset, checked."""

    epsilon: float = 0.1
    n_test: int | None = None
    seed: int = 0
    batch_size: int = 500
    sweep: list[str] = field(default_factory=list)
    cw_radius: float = 1.0
    large_epsilon: float = 0.5
    saliency_images: int = 4
    tol: float = 0.02
    flip_tol: float = 0.05
    near_zero: float = 0.05


def paper_sweep(eps: float) -> list[str]:
    """Tables 1-2 of the paper: no attack, FGSM and iFGSM (k = 10) in all three modes."""
    return ["none", f"fgsm:eps={eps},mode=untargeted|random|worst", f"ifgsm:eps={eps},mode=untargeted|random|worst"]


def eval_settings(cfg: dict[str, Any]) -> EvalSettings:
    from bench.config import check_epsilon, positive_int

    ev = dict(cfg.get("eval", {}))
    known = set(EvalSettings.__dataclass_fields__)
    unknown = sorted(set(ev) - known)
    if unknown:
        raise BenchError(f"[eval] has unknown key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    s = EvalSettings(**ev)
    check_epsilon(s.epsilon, "eval.epsilon")
    check_epsilon(s.large_epsilon, "eval.large_epsilon")
    if s.n_test is not None:
        positive_int(s.n_test, "eval.n_test")
    positive_int(s.batch_size, "eval.batch_size")
    positive_int(s.saliency_images, "eval.saliency_images")
    if isinstance(s.seed, bool) or not isinstance(s.seed, int) or s.seed < 0:
        raise BenchError(f"eval.seed = {s.seed!r} is invalid: expected a non-negative integer")
    for k in ("cw_radius", "tol", "flip_tol", "near_zero"):
        v = getattr(s, k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise BenchError(f"eval.{k} = {v!r} is invalid: expected a number >= 0")
    if not isinstance(s.sweep, list) or not all(isinstance(a, str) for a in s.sweep):
        raise BenchError("eval.sweep must be a list of attack strings such as 'ifgsm:eps=0.1,mode=worst'")
    s.sweep = s.sweep or paper_sweep(s.epsilon)
    return s


def sweep_specs(attacks: Sequence[str]):
    from attacks.specs import sweep

    specs = sweep(attacks)
    if not specs:
        raise BenchError("the sweep is empty; give at least one attack")
    return specs


def evaluate_runs(run_dirs: Sequence[Path], specs, csv_path: Path, settings: EvalSettings, *,
                  data_dir: str | None = None, device=None, force: bool = False, quiet: bool = False):
    """Evaluate finished run directories (each on the test data it was trained with)."""
    from attacks.evaluate import eval_set_for, evaluate, subject_from_run
    from bench.train import resolve_device

    dev = resolve_device(device)
    subjects = [subject_from_run(r, dev) for r in run_dirs]  # fails early on a bad run or sha256
    rows: list[dict] = []
    for subject in subjects:
        data = eval_set_for(subject.meta["config"], settings.n_test, data_dir=data_dir, device=dev,
                            expect_fingerprint=subject.meta.get("test_fingerprint"))
        rows = evaluate([subject], data, specs, csv_path, n_test=settings.n_test, eval_seed=settings.seed,
                        batch_size=settings.batch_size, force=force, quiet=quiet)
        if not quiet:
            print(f"evaluated {subject.defense} seed {subject.seed} ({subject.source})")
    return rows, subjects


def write_report(rows: Sequence[dict], results: Path, settings: EvalSettings, *, subjects=(), data=None,
                 quiet: bool = False) -> list[Path]:
    """table.md/.tex/.csv, acc_vs_eps.png/.pdf, masking.csv and (given models) saliency.png."""
    import csv
    import io

    from bench.atomic import write_text
    from bench.masking import Thresholds, as_rows, masking_checks
    from bench.plots import plot_acc_vs_eps
    from bench.report import build_tables, masking_markdown, to_csv, to_latex, to_markdown

    if not rows:
        raise BenchError("no evaluation rows to report; run `great-bench evaluate` first")
    results.mkdir(parents=True, exist_ok=True)
    tables = build_tables(rows, settings.epsilon, settings.cw_radius)
    checks = as_rows(masking_checks(rows, Thresholds(settings.tol, settings.flip_tol, settings.large_epsilon,
                                                     settings.near_zero)))
    write_text(results / "table.md", to_markdown(tables) + "\n" + masking_markdown(checks))
    write_text(results / "table.tex", to_latex(tables))
    write_text(results / "table.csv", to_csv(tables))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(checks[0]) if checks else ["defense"], lineterminator="\n")
    w.writeheader()
    w.writerows(checks)
    write_text(results / "masking.csv", buf.getvalue())
    plot_acc_vs_eps(rows, results / "acc_vs_eps.png", results / "acc_vs_eps.pdf")
    written = [results / f for f in ("table.md", "table.tex", "table.csv", "masking.csv", "acc_vs_eps.png",
                                     "acc_vs_eps.pdf")]
    if subjects and data is not None:
        from bench.saliency import plot_saliency

        first: dict[str, Any] = {}
        for s in subjects:  # one model per defense (the first seed)
            first.setdefault(s.defense, s.model)
        idx = _one_per_class(data.y, settings.saliency_images)
        plot_saliency(list(first.items()), data.x[idx], data.y[idx], results / "saliency.png")
        written.append(results / "saliency.png")
    if not quiet:
        for p in written:
            print(f"wrote {p}")
    return written


def _one_per_class(y, k: int):
    """The first test example of each of the first k classes met: fixed, varied images."""
    import torch

    seen: dict[int, int] = {}
    for i, c in enumerate(y.tolist()):
        if c not in seen:
            seen[c] = i
        if len(seen) == k:
            break
    return torch.tensor(list(seen.values()), device=y.device)


def current_rows(rows: Sequence[dict], subjects, specs) -> list[dict]:
    """Rows of these checkpoints and this sweep (the CSV may also cache older ones)."""
    shas = {s.sha256 for s in subjects}
    keys = {s.key() for s in specs}
    return [r for r in rows if r["checkpoint_sha256"] in shas and r["spec"] in keys]


# ---------------------------------------------------------------- commands

def _results_dir(args, cfg) -> Path:
    return Path(args.results) if getattr(args, "results", None) else Path("results") / str(cfg.get("preset", "custom"))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bench.commands.train import resolve_config

    cfg = resolve_config(args)
    settings = eval_settings(cfg)
    if args.n is not None:
        settings.n_test = args.n
    if args.seed is not None:
        settings.seed = args.seed
    if args.batch_size is not None:
        settings.batch_size = args.batch_size
    for k in ("n_test", "batch_size"):
        v = getattr(settings, k)
        if v is not None and v <= 0:
            raise BenchError(f"--{k.replace('_test', '').replace('_', '-')} must be positive, got {v}")
    specs = sweep_specs(args.attack or settings.sweep)
    out = Path(args.out) if args.out else _results_dir(args, cfg) / "robustness.csv"
    if bool(args.model) != bool(args.weights):
        raise BenchError("--model and --weights go together: --model module:factory --weights file.safetensors")
    if not args.model and not args.runs:
        raise BenchError("nothing to evaluate: give run directories or --model module:factory --weights FILE")
    if args.runs:
        evaluate_runs([Path(r) for r in args.runs], specs, out, settings, data_dir=args.data_dir,
                      device=args.device, force=args.force, quiet=args.quiet)
    if args.model:
        from attacks.evaluate import eval_set_for, evaluate, subject_from_factory
        from bench.train import model_spec_for, resolve_device

        dev = resolve_device(args.device)
        data = eval_set_for(cfg, settings.n_test, data_dir=args.data_dir, device=dev)
        from bench.data import load_dataset

        test = load_dataset(cfg["data"]["dataset"], "test", data_dir=args.data_dir, device=dev)
        subject = subject_from_factory(args.model, args.weights, model_spec_for(cfg, test), cfg["data"]["dataset"],
                                       name=args.name, device=dev)
        evaluate([subject], data, specs, out, n_test=settings.n_test, eval_seed=settings.seed,
                 batch_size=settings.batch_size, force=args.force, quiet=args.quiet)
    print(f"rows in {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from attacks.evaluate import eval_set_for, read_rows, subject_from_run
    from bench.commands.train import resolve_config
    from bench.train import resolve_device

    cfg = resolve_config(args)
    settings = eval_settings(cfg)
    results = _results_dir(args, cfg)
    csv_path = Path(args.csv) if args.csv else results / "robustness.csv"
    if not csv_path.is_file():
        raise BenchError(f"{csv_path} does not exist; run `great-bench evaluate` first (or pass --csv)")
    rows = read_rows(csv_path)
    subjects, data = [], None
    if args.runs:
        dev = resolve_device(args.device)
        subjects = [subject_from_run(r, dev) for r in args.runs]
        shas = {s.sha256 for s in subjects}
        rows = [r for r in rows if r["checkpoint_sha256"] in shas]
        data = eval_set_for(subjects[0].meta["config"], settings.n_test, data_dir=args.data_dir, device=dev)
    write_report(rows, results, settings, subjects=subjects, data=data, quiet=args.quiet)
    return 0


def run_pipeline(cfg: dict, runs: Sequence[Path], args: argparse.Namespace, train_seconds: float) -> None:
    """``great-bench run``: evaluate the preset's sweep on every run, then write the report."""
    from attacks.evaluate import eval_set_for, read_rows, write_rows

    settings = eval_settings(cfg)
    specs = sweep_specs(settings.sweep)
    results = _results_dir(args, cfg)
    csv_path = results / "robustness.csv"
    t0 = time.time()
    _, subjects = evaluate_runs(runs, specs, csv_path, settings, data_dir=args.data_dir,
                                device=cfg["train"].get("device"), quiet=args.quiet)
    t1 = time.time()
    # The results folder of `run` shows exactly this sweep on these checkpoints: rows cached
    # from older checkpoints or sweeps are dropped from its CSV (``evaluate`` keeps them).
    rows = current_rows(read_rows(csv_path), subjects, specs)
    write_rows(csv_path, rows)
    data = eval_set_for(subjects[0].meta["config"], settings.n_test, data_dir=args.data_dir,
                        device=next(subjects[0].model.parameters()).device)
    write_report(rows, results, settings, subjects=subjects, data=data, quiet=args.quiet)
    t2 = time.time()
    print(f"time: train {train_seconds:.1f} s, attack {t1 - t0:.1f} s, report {t2 - t1:.1f} s "
          f"(total {train_seconds + t2 - t0:.1f} s); results in {results}")


def register(sub: argparse._SubParsersAction) -> None:
    from bench.cli import common_args

    p = sub.add_parser("evaluate", help="attack finished runs (or --model/--weights) with a sweep; tidy CSV rows")
    common_args(p)
    p.add_argument("runs", nargs="*", help="finished run directories (runs/<preset>/<dataset>/<defense>/seed<k>)")
    p.add_argument("--attack", action="append", default=[], metavar="SPEC",
                   help="attack spec, e.g. 'ifgsm:eps=0.05|0.1,mode=worst' (repeatable; default: the preset's sweep)")
    p.add_argument("--model", default=None, help="user model factory module:function returning an nn.Module "
                                                 "that takes [0, 1] images")
    p.add_argument("--weights", default=None, help="safetensors weights for --model")
    p.add_argument("--name", default=None, help="defense name for --model rows (default: the factory name)")
    p.add_argument("--n", type=int, default=None, help="number of test examples (default: eval.n_test)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (targets, random starts)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default=None, help="CSV file (default results/<preset>/robustness.csv)")
    p.add_argument("--results", default=None, help="results folder (default results/<preset>)")
    p.add_argument("--force", action="store_true", help="recompute rows that already exist")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="tables, accuracy-vs-epsilon curves, masking checks (+ saliency with --runs)")
    common_args(p)
    p.add_argument("--results", default=None, help="folder to write (default results/<preset>)")
    p.add_argument("--csv", default=None, help="rows to read (default <results>/robustness.csv)")
    p.add_argument("--runs", nargs="*", default=[], help="run directories: saliency maps, and only their rows")
    p.set_defaults(func=cmd_report)
