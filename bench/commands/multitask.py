"""``multitask``: the multi-task track (paper Table 4): equal, uncertainty, GradNorm, GREAT."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_multitask(args: argparse.Namespace) -> int:
    from bench.pipeline import resolve_config
    from bench.multitask.track import run_multitask

    cfg = resolve_config(args.preset, args.overrides, device=args.device)
    preset = str(cfg.get("preset", "custom"))
    out = Path(args.out) if args.out else Path("runs") / preset
    results = Path(args.results) if args.results else Path("results") / preset
    paths = run_multitask(cfg, out=out, results=results, data_dir=args.data_dir, force=args.force, quiet=args.quiet)
    print(Path(paths["md"]).read_text())
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bench.cli import common_args

    p = sub.add_parser("multitask", help="multi-task track: equal / uncertainty / GradNorm / GREAT (Table 4)")
    common_args(p)
    p.add_argument("--out", default=None, help="runs root (default runs/<preset>)")
    p.add_argument("--results", default=None, help="report folder (default results/<preset>)")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.set_defaults(func=cmd_multitask)
