"""``multitask``: the multi-task track (paper Table 4): equal, uncertainty, GradNorm, GREAT."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.common import common_args
from bench.multitask.track import run_multitask
from bench.pipeline import default_results_dir, default_runs_root, resolve_config


def cmd_multitask(args: argparse.Namespace) -> int:
    s = resolve_config(args.preset, args.overrides, device=args.device)
    out = default_runs_root(s, args.out)
    results = default_results_dir(s, args.results)
    paths = run_multitask(s, out=out, results=results, data_dir=args.data_dir, force=args.force, quiet=args.quiet)
    print(Path(paths["md"]).read_text())
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("multitask", help="multi-task track: equal / uncertainty / GradNorm / GREAT (Table 4)")
    common_args(p)
    p.add_argument("--out", default=None, help="runs root (default runs/<preset>)")
    p.add_argument("--results", default=None, help="report folder (default results/<preset>)")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.set_defaults(func=cmd_multitask)
