"""``export``: results in another benchmark's format (argument parsing over ``bench.publish.robustbench``)."""
from __future__ import annotations

import argparse

from bench.publish.robustbench import export_robustbench

FORMATS = {"robustbench": export_robustbench}


def cmd_export(args: argparse.Namespace) -> int:
    FORMATS[args.format](args.results, args.out, preset=args.preset, norm=args.norm, epsilon=args.epsilon,
                         info=args.info, against=args.against, quiet=args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write results in a leaderboard's format (RobustBench model-info JSON)")
    p.add_argument("results", help="results folder holding robustness.csv (results/<preset>)")
    p.add_argument("out", help="folder to write <dataset>/<norm>/<defense>_seed<k>.json into")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="output format")
    p.add_argument("--preset", default=None,
                   help="preset that wrote the results (default: the folder's settings.json, else its name)")
    p.add_argument("--norm", default="Linf", choices=["Linf", "L2"], help="threat model (default Linf)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="threat-model epsilon (default: eval.epsilon for Linf, eval.cw_radius for L2)")
    p.add_argument("--info", default=None, metavar="FILE.json",
                   help='per-defense fields the rows cannot know: {"mine": {"name": ..., "authors": ..., '
                        '"venue": ..., "link": ..., "architecture": ...}}')
    p.add_argument("--against", default=None, metavar="NAME",
                   help="reference defense of the paired test in the extra fields (default: great, when present)")
    p.add_argument("--quiet", action="store_true", help="do not list the files written")
    p.set_defaults(func=cmd_export)
