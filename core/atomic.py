"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash (or kill -9) mid-write leaves the previous file intact, never a half-written one.
A full disk (or quota) is a ``BenchError`` naming the file, with the previous file intact:
the command line prints it without a traceback and exits 2.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import BenchError

# What a full disk or an exhausted quota raise.
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def no_space_error(path: str | os.PathLike, exc: OSError) -> BenchError:
    """The message of a write that ran out of space."""
    return BenchError(f"no space left on the device while writing {path} ({exc.strerror or exc}); the file as it "
                      "was before is intact (nothing was half-written). Free some space (or point --results / "
                      "--out elsewhere) and rerun: finished work is kept and skipped")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space_error(path, exc) from None
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file 0600; results are meant to be shared like any file the
        # user writes, so give it the permissions the umask grants a new file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space_error(path, exc) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
