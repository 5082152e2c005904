"""``verify``: check every published number of a results folder against its rows' masks, and
every worst-case cell against its saved adversarial examples (argument parsing over ``bench.publish.verify``)."""
from __future__ import annotations

import argparse

from bench.publish.verify import run_verify


def cmd_verify(args: argparse.Namespace) -> int:
    return run_verify(args.results, data_dir=args.data_dir, device=args.device, exports=args.export)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="recompute every published number (robustness.csv, worst_case.csv, tables, "
                                      "exported JSON) from the per-example masks, and every worst-case accuracy "
                                      "from the saved adversarial examples (evaluate --save-adv) with one forward "
                                      "pass; non-zero exit on a disagreement")
    p.add_argument("results", help="results folder with robustness.csv (and adversarial/) (results/<preset>)")
    p.add_argument("--export", action="append", default=[], metavar="DIR",
                   help="a folder written by `great-bench export --format robustbench` from these results: "
                        "its accuracy fields are checked too (repeatable)")
    p.add_argument("--data-dir", default=None, help="folder with dataset files (default: ~/.cache/great-bench/data)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_verify)
