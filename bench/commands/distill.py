"""``distill``: the knowledge-distillation track (paper Table 3)."""
from __future__ import annotations

import argparse

from bench.commands.common import common_args
from bench.distill.track import run_track
from bench.pipeline import default_results_dir, default_runs_root, resolve_config


def cmd_distill(args: argparse.Namespace) -> int:
    s = resolve_config(args.preset, args.overrides, device=args.device)
    runs_root = default_runs_root(s, args.out)
    results = default_results_dir(s, args.results)
    run_track(s, runs_root=runs_root, results_dir=results, data_dir=args.data_dir, teacher_dir=args.teacher,
              quiet=args.quiet)
    print(f"wrote {results / 'distillation.csv'} and {results / 'distillation.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("distill", help="knowledge distillation: baseline, kd, great, sobolev in dense and "
                                       "sparse regimes (paper Table 3)")
    common_args(p)
    p.add_argument("--teacher", default=None, metavar="RUN_DIR",
                   help="use this finished teacher run (model.safetensors + meta.json) instead of training one")
    p.add_argument("--out", default=None, help="runs root (default runs/<preset>); the teacher is cached there")
    p.add_argument("--results", default=None, help="report folder (default results/<preset>)")
    p.set_defaults(func=cmd_distill)
