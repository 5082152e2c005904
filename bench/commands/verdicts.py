"""``verdicts``: the paper's claims side by side across results folders (argument parsing
over ``bench.verdict_matrix``)."""
from __future__ import annotations

import argparse

from bench.atomic import write_text
from bench.verdict_matrix import parse_columns, verdict_matrix


def cmd_verdicts(args: argparse.Namespace) -> int:
    text = verdict_matrix(parse_columns(args.columns))
    if args.out:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verdicts", help="each claim's verdict side by side across results folders "
                                        "(networks, epsilons), from their verdicts.csv")
    p.add_argument("columns", nargs="+", metavar="LABEL=FOLDER",
                   help="a column label and a results folder holding verdicts.csv, e.g. "
                        "'small-cnn, pixel 0.1=results/study'")
    p.add_argument("--out", default=None, help="markdown file to write (default: print)")
    p.set_defaults(func=cmd_verdicts)
