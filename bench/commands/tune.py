"""``tune``: a defense's hyper-parameters searched by Ray Tune on the validation split
(argument parsing over ``bench.tune``)."""
from __future__ import annotations

import argparse

from bench.commands.common import common_args, variant_args
from bench.tune import TuneRequest, tune


def cmd_tune(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"data.val_subset={args.val_subset}"] if args.val_subset is not None else [])
    if args.device:
        overrides.append(f"train.device={args.device!r}")
    req = TuneRequest(args.name, args.preset, args.defense, tuple(args.space), args.trials, args.min_clean,
                      tuple(overrides), tuple(args.variants), args.epochs, args.grace_epochs, args.seed)
    tune(req, results=args.results, out=args.out, data_dir=args.data_dir, quiet=args.quiet, address=args.address)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="tune a defense's hyper-parameters on the validation split (Ray Tune, ASHA)",
                       description=__doc__.replace("``", "").splitlines()[0] + " "
                       "Objective: robust accuracy under PGD-10 at eval.epsilon on data.val_subset, "
                       "trials under --min-clean rank last. Writes results/NAME/tuning.csv and best.toml; "
                       "rerunning the same command resumes (finished trials are kept).")
    common_args(p)
    variant_args(p)
    p.add_argument("--defense", required=True, help="the defense or variant to tune (see `great-bench list`)")
    p.add_argument("--space", action="append", default=[], metavar="KEY=log:LO:HI|lin:LO:HI|list:A,B",
                   help="a hyper-parameter's search range (repeatable), e.g. alpha_max=log:0.01:1")
    p.add_argument("--trials", type=int, required=True, help="trial budget (number of configs sampled)")
    p.add_argument("--name", required=True, help="study name: results/NAME/ and runs/tune/NAME/")
    p.add_argument("--min-clean", type=float, default=0.0, help="floor on validation clean accuracy (0-1)")
    p.add_argument("--val-subset", type=int, default=None, help="shortcut for --set data.val_subset=N")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: train.epochs)")
    p.add_argument("--grace-epochs", type=int, default=1, help="ASHA's grace period in epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of every trial's training")
    p.add_argument("--results", default="results", help="results root")
    p.add_argument("--out", default="runs", help="runs root (Ray writes its trial folders to OUT/tune/NAME)")
    p.add_argument("--address", default=None, help="a Ray cluster's address (default: a local instance)")
    p.set_defaults(func=cmd_tune)
