"""``evaluate`` (attack runs or a user's model, tidy CSV rows) and ``report`` (tables, curves,
saliency maps, gradient-masking checks): argument parsing over ``bench.pipeline``."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bench.commands.common import common_args
from bench.config.presets import apply_overrides
from core.errors import BenchError
from bench.config.folder_settings import settings_for, write_folder_settings
from bench.config.settings import apply_options, parse
from bench.config.eval_settings import sweep_specs
from bench.pipeline import default_results_dir, evaluate_model, evaluate_runs, report, resolve_config


def cmd_evaluate(args: argparse.Namespace) -> int:
    s = resolve_config(args.preset, args.overrides, device=args.device)
    given = {"n_test": args.n, "seed": args.seed, "batch_size": args.batch_size}
    if args.save_adv:
        given["save_adv"] = True
    settings = replace(s.eval, **{k: v for k, v in given.items() if v is not None})
    for k in ("n_test", "batch_size"):
        v = getattr(settings, k)
        if v is not None and v <= 0:
            raise BenchError(f"--{k.replace('_test', '').replace('_', '-')} must be positive, got {v}")
    # --attack strings are in pixel units; the preset's sweep is in pixels once parsed and
    # carries the units the preset wrote it in
    specs = sweep_specs(args.attack, "pixel") if args.attack else sweep_specs(settings.sweep, settings.epsilon_units)
    out = Path(args.out) if args.out else default_results_dir(s, args.results) / "robustness.csv"
    if bool(args.model) != bool(args.weights):
        raise BenchError("--model and --weights go together: --model module:factory --weights file.safetensors")
    if not args.model and not args.runs:
        raise BenchError("nothing to evaluate: give run directories or --model module:factory --weights FILE")
    if args.runs:
        evaluate_runs([Path(r) for r in args.runs], specs, out, settings, data_dir=args.data_dir,
                      device=args.device, force=args.force, quiet=args.quiet)
    if args.model:
        evaluate_model(s, args.model, args.weights, specs, out, settings, name=args.name, data_dir=args.data_dir,
                       device=args.device, force=args.force, quiet=args.quiet)
    write_folder_settings(out.parent, s, {k: getattr(settings, k) for k in given})
    print(f"rows in {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.preset is None and args.results is not None:
        # the folder says what made it (settings.json, else its name); --set still applies
        recorded = settings_for(args.results)
        s = parse(apply_options(apply_overrides(recorded.source, list(args.overrides)), device=args.device))
    else:
        s = resolve_config(args.preset or "quick", args.overrides, device=args.device)
    results = default_results_dir(s, args.results)
    csv_path = Path(args.csv) if args.csv else results / "robustness.csv"
    report(csv_path, results, s.eval, runs=[Path(r) for r in args.runs], data_dir=args.data_dir,
           device=args.device, against=args.against, quiet=args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("evaluate", help="attack finished runs (or --model/--weights) with a sweep; tidy CSV rows")
    common_args(p)
    p.add_argument("runs", nargs="*", help="finished run directories (runs/<preset>/<dataset>/<defense>/seed<k>)")
    p.add_argument("--attack", action="append", default=[], metavar="SPEC",
                   help="attack spec in pixel units, e.g. 'ifgsm:eps=0.05|0.1,mode=worst' (repeatable; default: "
                        "the preset's sweep, in its eval.epsilon_units)")
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
    p.add_argument("--save-adv", action="store_true",
                   help="save the adversarial examples behind every worst-case cell into <results>/adversarial/ "
                        "(safetensors; default: eval.save_adv) for `great-bench verify`")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="tables, accuracy-vs-epsilon curves, masking checks (+ saliency with --runs)")
    common_args(p, preset_default=None)
    p.add_argument("--results", default=None, help="folder to write (default results/<preset>); without --preset "
                                                   "its settings.json (written by run and evaluate) gives the settings")
    p.add_argument("--csv", default=None, help="rows to read (default <results>/robustness.csv)")
    p.add_argument("--runs", nargs="*", default=[], help="run directories: saliency maps, and only their rows")
    p.add_argument("--against", default=None, metavar="NAME",
                   help="reference defense for the paired comparison (default: great, when present)")
    p.set_defaults(func=cmd_report)
