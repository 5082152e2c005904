"""Command-line interface: ``great-bench`` and ``python -m bench`` (same CLI).

Each subcommand lives in its own module with a ``register(subparsers)`` function; this
file only collects them and turns ``BenchError`` (and a full disk) into one clear message and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.atomic import NO_SPACE, no_space_error
from core.errors import BenchError

# One module per group of subcommands; each registers its parsers.
COMMAND_MODULES = (
    "bench.commands.train",
    "bench.commands.evaluate",
    "bench.commands.distill",
    "bench.commands.multitask",
    "bench.commands.export",
    "bench.commands.verify",
    "bench.commands.verdicts",
    "bench.commands.tune",
    "bench.commands.crosscheck",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="great-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"great-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        # a write outside core.atomic (a figure, a checkpoint): the same clear message
        print(f"great-bench {args.command}: error: {no_space_error(exc.filename or 'a file', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"great-bench {args.command}: interrupted; finished epochs are checkpointed "
              "(rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
