"""``crosscheck``: try to break a sweep's Linf worst case with attacks that share no code with it
(argument parsing over ``bench.crosscheck``)."""
from __future__ import annotations

import argparse

from bench.crosscheck import N, RESTARTS, STEPS, run_crosscheck


def cmd_crosscheck(args: argparse.Namespace) -> int:
    out = run_crosscheck(args.results, args.runs, args.epsilon, n=args.n, steps=args.steps, restarts=args.restarts,
                         data_dir=args.data_dir, device=args.device, quiet=args.quiet)
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crosscheck", help="attack each run's Linf worst case with foolbox's PGD and a margin-loss "
                                          "PGD (no code shared with the sweep) and count the examples they break "
                                          "that the worst case left robust (RESULTS/crosscheck.csv)")
    p.add_argument("results", help="results folder with robustness.csv (results/<preset>)")
    p.add_argument("--runs", nargs="+", required=True, help="run directories (runs/<preset>/<dataset>/<defense>/seed<S>)")
    p.add_argument("--epsilon", type=float, action="append", required=True,
                   help="Linf radius in pixels at which the rows hold a worst case (repeatable)")
    p.add_argument("--n", type=int, default=N, help=f"first n test examples (default {N}, AutoAttack's n in the studies)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"steps of each independent attack (default {STEPS})")
    p.add_argument("--restarts", type=int, default=RESTARTS, help=f"random restarts of each (default {RESTARTS})")
    p.add_argument("--data-dir", default=None, help="folder with dataset files (default: ~/.cache/great-bench/data)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no line per model and epsilon")
    p.set_defaults(func=cmd_crosscheck)
