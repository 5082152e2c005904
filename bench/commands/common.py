"""Options shared by every command that reads a preset."""
from __future__ import annotations

import argparse


def common_args(p: argparse.ArgumentParser, *, preset_default: str | None = "quick") -> None:
    p.add_argument("--preset", default=preset_default, help="preset name or .toml path (see `great-bench list`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset value, e.g. --set train.epochs=3 (repeatable); unknown keys are refused")
    p.add_argument("--data-dir", default=None, help="folder with dataset files (default: ~/.cache/great-bench/data)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def variant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", dest="variants", action="append", default=[], metavar="NAME=DEFENSE[:K=V,...]",
                   help="declare a named variant, e.g. great-a01=great:alpha_max=0.1 (repeatable); "
                        "it trains into its own run directory and is its own row in every table")


def seed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: train.epochs)")
    p.add_argument("--seed", type=int, default=None, help="train this one seed (default: train.seeds)")
