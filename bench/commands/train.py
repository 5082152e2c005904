"""``list``, ``train`` and ``run`` (the main job): argument parsing over ``bench.pipeline``."""
from __future__ import annotations

import argparse

from bench.commands.common import common_args, seed_args, variant_args
from bench.defense_track import train_defense
from bench.executors import EXECUTORS
from bench.listing import lines
from bench.pipeline import benchmark, default_runs_root, resolve_config


def cmd_list(args: argparse.Namespace) -> int:
    s = (resolve_config(args.preset or "quick", args.overrides, variants=args.variants)
         if args.preset or args.overrides or args.variants else None)
    print("\n".join(lines(s)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    s = resolve_config(args.preset, args.overrides, epochs=args.epochs, seed=args.seed, device=args.device,
                       variants=args.variants, defense=args.defense)
    run_dir = train_defense(s, args.defense, s.train.seeds[0], default_runs_root(s, args.out),
                            data_dir=args.data_dir, resume=args.resume, force=args.force, quiet=args.quiet)
    print(f"finished: {run_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    s = resolve_config(args.preset, args.overrides, epochs=args.epochs, seed=args.seed, seeds=args.seeds,
                       device=args.device, variants=args.variants)
    benchmark(s, out=args.out, results=args.results, data_dir=args.data_dir, quiet=args.quiet,
              executor=args.executor, ray_address=args.ray_address, cpus_per_task=args.ray_cpus_per_task)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="registered defenses, models, datasets (with their std: epsilon units), presets, "
                                        "attacks (+ a preset's epsilon units and variants)")
    common_args(p, preset_default=None)
    variant_args(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train one defense (or variant) of a preset")
    common_args(p)
    variant_args(p)
    p.add_argument("--defense", required=True, help="registered name, variant name or package.module:Class")
    seed_args(p)
    p.add_argument("--out", default=None, help="output root (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the main job: train every defense and variant of a preset, evaluate, report")
    common_args(p)
    variant_args(p)
    seed_args(p)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="train these seeds (default: train.seeds)")
    p.add_argument("--out", default=None, help="runs root (default runs/<preset>)")
    p.add_argument("--results", default=None, help="report folder (default results/<preset>)")
    p.add_argument("--executor", default="local", choices=EXECUTORS.names(),
                   help="where the (defense, seed) jobs run: in this process (default) or as Ray tasks")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="Ray cluster to join (e.g. auto, or host:6379); default: a local Ray instance")
    p.add_argument("--ray-cpus-per-task", type=int, default=1, metavar="N",
                   help="CPUs (and torch threads) per Ray task when the cluster has no GPUs (default 1)")
    p.set_defaults(func=cmd_run)
