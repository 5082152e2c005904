"""``list``, ``train`` and ``run`` (the main job)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.config import apply_overrides, load_preset, preset_names, validate
from bench.errors import BenchError


def resolve_config(args: argparse.Namespace) -> dict:
    cfg = apply_overrides(load_preset(args.preset), args.overrides)
    if getattr(args, "epochs", None) is not None:
        cfg["train"]["epochs"] = args.epochs
    if getattr(args, "seed", None) is not None:
        cfg["train"]["seeds"] = [args.seed]
    if args.device is not None:
        cfg["train"]["device"] = args.device
    return validate(cfg)


def default_out(args: argparse.Namespace, cfg: dict) -> Path:
    return Path(args.out) if args.out else Path("runs") / str(cfg.get("preset", "custom"))


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
    from bench.train import train_defense

    cfg = resolve_config(args)
    if args.epochs is not None and args.epochs <= 0:
        raise BenchError(f"--epochs must be positive, got {args.epochs}")
    run_dir = train_defense(cfg, args.defense, cfg["train"]["seeds"][0], default_out(args, cfg),
                            data_dir=args.data_dir, resume=args.resume, force=args.force, quiet=args.quiet)
    print(f"finished: {run_dir}")
    return 0


def train_all(cfg: dict, out: Path, args: argparse.Namespace) -> list[Path]:
    """Every defense x seed of a preset; finished runs are skipped, interrupted ones resumed."""
    from bench.train import run_dir_for, train_defense
    from bench.checkpoint import STATE_FILE

    runs = []
    for seed in cfg["train"]["seeds"]:
        for defense in cfg["train"]["defenses"]:
            partial = (run_dir_for(out, cfg, defense, seed) / STATE_FILE).is_file()
            runs.append(train_defense(cfg, defense, seed, out, data_dir=args.data_dir, resume=partial,
                                      skip_finished=True, quiet=args.quiet))
    return runs


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from bench.commands.evaluate import run_pipeline

    cfg = resolve_config(args)
    out = default_out(args, cfg)
    t0 = time.time()
    runs = train_all(cfg, out, args)
    print(f"trained {len(runs)} runs under {out}")
    run_pipeline(cfg, runs, args, time.time() - t0)  # evaluate the preset's sweep, write the report
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
