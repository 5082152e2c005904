"""``list``, ``train`` and ``run`` (the main job)."""
from __future__ import annotations

import argparse

from bench.config import preset_names


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import DATASETS
    from bench.models import MODELS
    from defenses import DEFENSES

    print("defenses:", ", ".join(DEFENSES.names()))
    print("models:  ", ", ".join(MODELS.names()))
    print("datasets:", ", ".join(DATASETS.names()))
    print("presets: ", ", ".join(preset_names()))
    try:
        from attacks.registry import ATTACKS
        print("attacks: ", ", ".join(ATTACKS.names()))
    except ImportError:
        pass
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.pipeline import default_runs_root, resolve_config
    from bench.train import train_defense

    cfg = resolve_config(args.preset, args.overrides, epochs=args.epochs, seed=args.seed, device=args.device)
    run_dir = train_defense(cfg, args.defense, cfg["train"]["seeds"][0], default_runs_root(cfg, args.out),
                            data_dir=args.data_dir, resume=args.resume, force=args.force, quiet=args.quiet)
    print(f"finished: {run_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.pipeline import benchmark, resolve_config

    cfg = resolve_config(args.preset, args.overrides, device=args.device)
    benchmark(cfg, out=args.out, results=args.results, data_dir=args.data_dir, quiet=args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bench.cli import common_args

    p = sub.add_parser("list", help="registered defenses, models, datasets, presets, attacks")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train one defense of a preset")
    common_args(p)
    p.add_argument("--defense", required=True, help="registered name or package.module:Class")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="output root (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the main job: train every defense of a preset, evaluate, report")
    common_args(p)
    p.add_argument("--out", default=None, help="runs root (default runs/<preset>)")
    p.add_argument("--results", default=None, help="report folder (default results/<preset>)")
    p.set_defaults(func=cmd_run)
