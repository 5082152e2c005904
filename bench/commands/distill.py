"""``distill``: the knowledge-distillation track (paper Table 3)."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_distill(args: argparse.Namespace) -> int:
    from bench.pipeline import resolve_config
    from bench.distill.track import run_track

    cfg = resolve_config(args.preset, args.overrides, device=args.device)
    preset = str(cfg.get("preset", "custom"))
    runs_root = Path(args.out) if args.out else Path("runs") / preset
    results = Path(args.results) if args.results else Path("results") / preset
    run_track(cfg, runs_root=runs_root, results_dir=results, data_dir=args.data_dir, teacher_dir=args.teacher,
              quiet=args.quiet)
    print(f"wrote {results / 'distillation.csv'} and {results / 'distillation.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bench.cli import common_args

    p = sub.add_parser("distill", help="knowledge distillation: baseline, kd, great, sobolev in dense and "
                                       "sparse regimes (paper Table 3)")
    common_args(p)
    p.add_argument("--teacher", default=None, metavar="RUN_DIR",
                   help="use this finished teacher run (model.safetensors + meta.json) instead of training one")
    p.add_argument("--out", default=None, help="runs root (default runs/<preset>); the teacher is cached there")
    p.add_argument("--results", default=None, help="report folder (default results/<preset>)")
    p.set_defaults(func=cmd_distill)
