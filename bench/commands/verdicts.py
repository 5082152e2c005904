"""``verdicts``: the paper's claims side by side across results folders (argument parsing
over ``bench.report.verdict_matrix``), or judged over a pre-registered family (``--family``,
``bench.report.family``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.atomic import write_text
from core.errors import BenchError
from bench.report.family import FIELDS, family_markdown, family_verdicts, load_family, parse_folders
from bench.csv_files import csv_text
from bench.report.verdict_matrix import parse_columns, verdict_matrix


def _family(args: argparse.Namespace) -> str:
    family = load_family(args.family)
    folders = parse_folders(args.columns, family)
    rows = family_verdicts(family, folders)
    text = family_markdown(family, rows, folders)
    if args.out:  # the markdown and, beside it, one CSV row per member
        out = Path(args.out)
        write_text(out.with_suffix(".csv"), csv_text(rows, FIELDS))
        print(f"wrote {out.with_suffix('.csv')}")
    return text


def cmd_verdicts(args: argparse.Namespace) -> int:
    if args.family:
        text = _family(args)
    else:
        if not args.columns:
            raise BenchError("give LABEL=FOLDER columns, or --family FILE (bench/families/)")
        text = verdict_matrix(parse_columns(args.columns))
    if args.out:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verdicts", help="each claim's verdict side by side across results folders "
                                        "(networks, epsilons), from their verdicts.csv; or over a "
                                        "pre-registered family (--family)")
    p.add_argument("columns", nargs="*", metavar="LABEL=FOLDER",
                   help="a column label and a results folder holding verdicts.csv, e.g. "
                        "'small-cnn, pixel 0.1=results/study'; with --family: NETWORK=FOLDER overrides "
                        "of the family's results folders")
    p.add_argument("--family", default=None, metavar="FILE",
                   help="a pre-registered family file (bench/families/*.toml): its claims, comparisons, "
                        "networks and epsilons, judged with one Holm correction over all of them")
    p.add_argument("--out", default=None, help="markdown file to write (default: print); with --family "
                                               "also FILE.csv, one row per member of the family")
    p.set_defaults(func=cmd_verdicts)
