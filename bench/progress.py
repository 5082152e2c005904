"""Progress bars: tqdm on a terminal, silent when output is not a terminal or --quiet."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T], *, quiet: bool = False, **kw) -> Iterable[T]:
    if quiet or not sys.stderr.isatty():
        return it
    return tqdm(it, dynamic_ncols=True, **kw)
