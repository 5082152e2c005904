"""Tidy CSV rows: the one writer (and reader) of every CSV the benchmark produces.

``merge_rows`` is how several writers share one file: under a file lock (``filelock``,
a lock file beside the CSV that works across processes and, on a shared file system,
machines) it re-reads the file, merges the new rows by key and rewrites it atomically
(``core/atomic.py``). Every writer therefore keeps every row of every other writer, and
a crash mid-write leaves the previous file intact.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from filelock import FileLock

from core.atomic import write_text
from core.errors import BenchError

Row = dict[str, Any]
LOCK_TIMEOUT_S = 600.0


def csv_text(rows: Iterable[Row], fields: Sequence[str] | None = None) -> str:
    """Rows as CSV text; ``fields`` fixes the columns (default: every key, first seen first)."""
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV as dicts; a row with fewer or more fields than the header is refused.

    A row cut mid-line (a crashed writer, a full disk) would otherwise come back with its
    last fields empty and be written back that way, losing them for good; the message
    names the file and line and how to recover instead.
    """
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        rows = []
        for record in reader:
            if not record:  # a blank line, as DictReader skips it
                continue
            if len(record) != len(header):
                raise BenchError(
                    f"{path}, line {reader.line_num}: {len(record)} fields where the header has {len(header)} "
                    "(a row cut off by a crash or a full disk?); nothing was changed. Remove or repair that "
                    "line (or restore the file from a copy) and rerun: rows missing from the file are recomputed")
            rows.append(dict(zip(header, record)))
        return rows


def write_rows(path: str | Path, rows: Iterable[Row], fields: Sequence[str] | None = None) -> None:
    """Replace ``path`` with ``rows`` (atomic)."""
    write_text(path, csv_text(rows, fields))


def lock_for(path: str | Path) -> FileLock:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT_S)


def merge_rows(path: str | Path, rows: Iterable[Row], key: Callable[[Row], Any], fields: Sequence[str] | None = None,
               *, keep: Callable[[Row], bool] | None = None,
               prepare: Callable[[list[dict[str, str]]], list[Row]] | None = None) -> list[Row]:
    """Merge ``rows`` into the CSV at ``path`` under its lock; return the merged rows.

    A new row replaces an existing one with the same ``key``; existing rows for which
    ``keep`` returns False are dropped (superseded); ``prepare`` sees the file's rows as
    read and returns them (upgraded to the current columns) or refuses the file.
    """
    with lock_for(path):
        existing = read_rows(path)
        if prepare is not None:
            existing = prepare(existing)
        table: dict[Any, Row] = {key(r): r for r in existing if keep is None or keep(r)}
        for r in rows:
            table[key(r)] = r
        merged = list(table.values())
        write_rows(path, merged, fields)
    return merged
